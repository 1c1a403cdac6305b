#!/usr/bin/env bash
# The stores' integration tests a second time, with DynamoDB served by
# AWS's own DynamoDB Local (stricter than moto: key sizes, expression
# validation, transaction rules, index key types) and every other service
# by moto. Starts both when they are not running and stops what it
# started. Run by `make test`; extra arguments go to each `cargo test`.
#
# The subset: every test binary whose subject is a store — the five
# services' moto tests (rows, conditional writes, queries, indexes, TTL
# attributes written by the services' own code) and the accounts store
# with the bootstrap that creates the tables (tests/tests/bootstrap_accounts.rs),
# and the api's audit searches (audit_moto: keys-only indexes, rows fetched
# with BatchGetItem).
# Left out: the worker/process/monitoring/demo/kopterctl tests, whose
# subject is SQS, processes or output, not DynamoDB, and which would
# double the run's time for no new DynamoDB coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
# moto once for every run below (with-moto.sh sets MOTO_ENDPOINT).
[[ -n ${MOTO_ENDPOINT:-} ]] || exec scripts/with-moto.sh "$0" "$@"
export DYNAMODB_LOCAL_PORT="${DYNAMODB_LOCAL_PORT:-8055}"
[[ ${DYNAMODB_ENDPOINT:-} == "http://127.0.0.1:$DYNAMODB_LOCAL_PORT" ]] ||
  exec scripts/dynamodb-local.sh with "$0" "$@"
CARGO="${CARGO:-cargo}"
# One invocation over the workspace: `cargo test -p X` per package would
# resolve features per package and rebuild the AWS SDK crates each time;
# `--workspace --test NAME…` reuses the workspace build of `make test`.
echo "== DynamoDB Local at $DYNAMODB_ENDPOINT: the stores' moto tests"
"$CARGO" test --workspace \
  --test describe_moto --test refresh_moto --test aggregate_moto \
  --test notify_moto --test ingest_moto --test bootstrap_accounts \
  --test consumed_capacity --test audit_moto "$@"
