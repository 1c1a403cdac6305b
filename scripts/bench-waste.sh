#!/usr/bin/env bash
# Benchmark of the aggregator's waste rules: N resources (default 100,000)
# with a year of state history each, in memory — the rules alone, the
# service's whole in-memory path (rules, pricing from each finding's since,
# sums), and a naive hour-by-hour baseline on a sample, side by side in the
# same process; memory per resource; CloudWatch calls per 1,000 instances
# a day.
#
#   scripts/bench-waste.sh [resources]
#
# Built like scripts/bench-aggregator.sh: the crates in the hot loop at
# opt-level 3 over the debug build of the AWS SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for pkg in aggregator kopter-schema kopter-store kopter-runtime chrono; do
  args+=(--config "profile.dev.package.$pkg.opt-level=3"
         --config "profile.dev.package.$pkg.debug-assertions=false"
         --config "profile.dev.package.$pkg.overflow-checks=false")
done
exec cargo run "${args[@]}" --quiet -p aggregator --example bench_waste -- "${1:-100000}"
