#!/usr/bin/env bash
# Benchmark of the api's per-request overhead, in process on one core:
# GET /v1/prices with a bearer token (ES256 verify + claims + rate limit),
# a page of 100 rows from the in-memory fake, JSON encode — side by side
# with the same route's work without auth (baseline) in the same run.
#
#   scripts/bench-api.sh [requests]     (default 20000)
#
# The api, the crypto and the JSON crates run at opt-level 3, as in a
# release build; the AWS SDK (not called) stays a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for pkg in api kopter-dev-issuer kopter-schema kopter-runtime jsonwebtoken aws-lc-rs aws-lc-sys serde_json governor axum utoipa-axum tokio hyper; do
  args+=(--config "profile.dev.package.$pkg.opt-level=3"
         --config "profile.dev.package.$pkg.debug-assertions=false"
         --config "profile.dev.package.$pkg.overflow-checks=false")
done
exec cargo run "${args[@]}" --quiet -p api --example bench_api -- "${1:-20000}"
