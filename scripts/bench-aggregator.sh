#!/usr/bin/env bash
# Benchmark of the aggregator's pricing engine: 1M instance-hours priced in
# memory, side by side with a naive per-hour lookup baseline in the same
# process (same data; the totals are checked to agree).
#
#   scripts/bench-aggregator.sh [instances] [hours]     (default 1000 1000)
#
# What runs in the hot loop — the aggregator and the workspace crates and
# chrono it calls — is built at opt-level 3, as in a release build; the AWS
# SDK (not called by the engine) stays the ordinary debug build, so the
# benchmark needs no release build of the SDK. Both rows are measured in
# the same binary, so the ratio is fair.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for pkg in aggregator pricing describer kopter-schema kopter-runtime chrono; do
  args+=(--config "profile.dev.package.$pkg.opt-level=3"
         --config "profile.dev.package.$pkg.debug-assertions=false"
         --config "profile.dev.package.$pkg.overflow-checks=false")
done
exec cargo run "${args[@]}" --quiet -p aggregator --example bench_engine -- "${1:-1000}" "${2:-1000}"
