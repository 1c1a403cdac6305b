#!/usr/bin/env bash
# Benchmark of the aggregator's pricing engine: 1M instance-hours priced in
# memory, side by side with a naive per-hour lookup baseline in the same
# process (same data; the totals are checked to agree).
#
#   scripts/bench-aggregator.sh [instances] [hours]     (default 1000 1000)
#
# The aggregator crate (engine and example) is built at opt-level 3 on top
# of the ordinary debug build of its dependencies (the AWS SDK), so the
# benchmark needs no release build of the SDK; both rows are measured in
# the same build, so the ratio is fair.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_PROFILE_DEV_PACKAGE_AGGREGATOR_OPT_LEVEL=3
export CARGO_PROFILE_DEV_PACKAGE_AGGREGATOR_DEBUG_ASSERTIONS=false
exec cargo run --quiet -p aggregator --example bench_engine -- "${1:-1000}" "${2:-1000}"
