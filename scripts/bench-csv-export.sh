#!/usr/bin/env bash
# Peak memory of the api's CSV export (issue 15): N /v1/cost points
# streamed through the api's export path, beside the same CSV collected in
# one buffer (baseline), each in its own process; prints peak RSS and ratios.
#
#   scripts/bench-csv-export.sh [rows]     (default 1000000)
#
# The same opt-level 3 package set as scripts/bench-api.sh (so the two share
# one build); the AWS SDK, not called, stays a debug build. Memory, not
# speed, is what this measures.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for pkg in api kopter-dev-issuer kopter-schema kopter-runtime jsonwebtoken aws-lc-rs aws-lc-sys serde_json governor axum utoipa-axum tokio hyper; do
  args+=(--config "profile.dev.package.$pkg.opt-level=3"
         --config "profile.dev.package.$pkg.debug-assertions=false"
         --config "profile.dev.package.$pkg.overflow-checks=false")
done
exec cargo run "${args[@]}" --quiet -p api --example bench_csv_export -- "${1:-1000000}"
