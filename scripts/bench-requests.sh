#!/usr/bin/env bash
# Issue 23's benchmark: the AWS requests Kopter makes per watched account,
# by service and operation, with DynamoDB request units, USD per watched
# account per month at us-east-1 request prices, the floor the design
# cannot go below and the ratio to it, CPU and peak RSS per service.
# The five services run as processes on moto through the fault proxy (no
# faults), so every call is seen (tools/demo/tests/request_cost.rs).
# DynamoDB is AWS's DynamoDB Local (behind a proxy of its own): its units
# are exact (ConsumedCapacity), and it keeps its pace as tables grow.
#   KOPTER_BENCH_ACCOUNTS  sizes to run, comma-separated (default 10,40)
#   KOPTER_BENCH_HOURS     simulated hours per size (default 3)
#   KOPTER_BENCH_RESOURCES resources per account, about (default 12: the
#                          demo estate; larger ones repeat its instances)
#   KOPTER_BENCH_FILES_PER_HOUR  CloudTrail files per account-hour (default
#                          1; the hour's records split among them)
#   KOPTER_BENCH_DYNAMODB  `local` (default) or `moto` (units estimated
#                          from the bytes on the wire)
#   KOPTER_BENCH_RELEASE   1: build the services and the api in release (the
#                          profile their images ship) and run those, so
#                          CPU per account-hour is a deployment's (the
#                          requests and units do not depend on it)
# Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${MOTO_ENDPOINT:-} ]] || exec scripts/with-moto.sh "$0" "$@"
if [[ ${KOPTER_BENCH_RELEASE:-0} == 1 && -z ${KOPTER_BENCH_BIN_DIR:-} ]]; then
  cargo build --release --bin describer --bin pricing --bin aggregator \
    --bin trail-ingest --bin notifier --bin api
  dir="${CARGO_TARGET_DIR:-target}"
  [[ $dir == /* ]] || dir="$PWD/$dir"
  export KOPTER_BENCH_BIN_DIR="$dir/release"
fi
run() {
  cargo test --workspace --test request_cost -- \
    --ignored --nocapture requests_per_watched_account "$@"
}
case "${KOPTER_BENCH_DYNAMODB:-local}" in
  moto) unset DYNAMODB_ENDPOINT; run "$@" ;;
  local)
    export DYNAMODB_LOCAL_PORT="${DYNAMODB_LOCAL_PORT:-8055}"
    [[ ${DYNAMODB_ENDPOINT:-} == "http://127.0.0.1:$DYNAMODB_LOCAL_PORT" ]] ||
      exec scripts/dynamodb-local.sh with "$0" "$@"
    run "$@"
    ;;
  *) echo "KOPTER_BENCH_DYNAMODB must be local or moto" >&2; exit 2 ;;
esac
