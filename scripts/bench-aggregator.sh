#!/usr/bin/env bash
# Benchmark of the aggregator's pricing engine: 1M instance-hours priced in
# memory, side by side with a naive per-hour lookup baseline in the same
# process (same data; the totals are checked to agree).
#
#   scripts/bench-aggregator.sh [instances] [hours]     (default 1000 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --profile bench-fast -p aggregator --example bench_engine -- "${1:-1000}" "${2:-1000}"
