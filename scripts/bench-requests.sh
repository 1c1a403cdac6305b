#!/usr/bin/env bash
# Issue 23's benchmark: the AWS requests Kopter makes per watched account,
# by service and operation, with DynamoDB request units, USD per watched
# account per month at us-east-1 request prices, the floor the design
# cannot go below and the ratio to it, CPU and peak RSS per service.
# The five services run as processes on moto through the fault proxy (no
# faults), so every call is seen (tools/demo/tests/request_cost.rs).
#   KOPTER_BENCH_ACCOUNTS  sizes to run, comma-separated (default 10,40)
#   KOPTER_BENCH_HOURS     simulated hours per size (default 3)
# Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-moto.sh cargo test --workspace --test request_cost -- \
  --ignored --nocapture requests_per_watched_account
