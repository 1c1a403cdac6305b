#!/usr/bin/env bash
# Issue 20's benchmark: one organization discovery of N accounts (default
# 5,000) against a local stand-in for AWS Organizations (ListAccounts in
# the real JSON 1.1 wire format, 20 accounts a page), moto for STS and
# SNS and AWS's DynamoDB Local for DynamoDB; three runs (first discovery, nothing changed, two
# joined + one suspended), each beside a naive baseline (per account a
# GetItem and a PutItem) in the same process: ListAccounts calls,
# DynamoDB reads and writes, SNS publishes, wall time, peak RSS, ratios.
# Fails if discovery makes more ListAccounts calls than ceil(N/20) or
# writes anything when nothing changed. Figures: docs/benchmarks.md.
#
#   MOTO_PORT=5055 scripts/bench-org.sh [accounts]
#
# Built with the workspace's feature set (`--workspace`, like `make
# test`), so it reuses the test build instead of recompiling the SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${MOTO_ENDPOINT:-} ]] || exec scripts/with-moto.sh "$0" "$@"
cargo build --quiet --workspace --example bench_org
# DynamoDB on AWS's DynamoDB Local (moto's slows as tables grow);
# KOPTER_BENCH_DYNAMODB=moto keeps moto's.
if [[ ${KOPTER_BENCH_DYNAMODB:-local} == local ]]; then
  export DYNAMODB_LOCAL_PORT="${DYNAMODB_LOCAL_PORT:-8055}"
  [[ ${DYNAMODB_ENDPOINT:-} == "http://127.0.0.1:$DYNAMODB_LOCAL_PORT" ]] ||
    exec scripts/dynamodb-local.sh with "$0" "$@"
else
  unset DYNAMODB_ENDPOINT
fi
"${CARGO_TARGET_DIR:-target}/debug/examples/bench_org" "${1:-5000}"
