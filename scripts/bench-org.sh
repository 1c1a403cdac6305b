#!/usr/bin/env bash
# Issue 20's benchmark: one organization discovery of N accounts (default
# 5,000) against a local stand-in for AWS Organizations (ListAccounts in
# the real JSON 1.1 wire format, 20 accounts a page) and moto for STS,
# DynamoDB and SNS; three runs (first discovery, nothing changed, two
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
exec "${CARGO_TARGET_DIR:-target}/debug/examples/bench_org" "${1:-5000}"
