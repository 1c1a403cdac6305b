#!/usr/bin/env bash
# The api against its own OpenAPI document, fuzzed by schemathesis: a
# running api (dev issuer on) over a bootstrapped environment on moto, an
# admin token from `kopterctl token`, then every operation of
# /openapi.json with generated parameters and bodies. Fails on any 5xx or
# any response that does not match the document. Run by `make test` after
# the binaries are built; schemathesis lives in .venv/schemathesis, pinned
# in dev/schemathesis-{requirements,constraints}.txt.
#   SCHEMATHESIS_EXAMPLES  examples per operation (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${MOTO_ENDPOINT:-} ]] || exec scripts/with-moto.sh "$0" "$@"
BIN=${CARGO_TARGET_DIR:-target}/debug
for b in api kopterctl; do
  [[ -x $BIN/$b ]] || { echo "build first: $BIN/$b is missing (cargo build --workspace --bins)" >&2; exit 1; }
done

venv=.venv/schemathesis
source scripts/venv.sh
ensure_venv "$venv" dev/schemathesis-requirements.txt dev/schemathesis-constraints.txt

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
telemetry=$(free_port)
run=.run/schemathesis-$$
mkdir -p "$run"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN
export KOPTER_CONFIG=/nonexistent/kopter.toml
export KOPTER_ENV="st$$"
export KOPTER_AWS__ENDPOINT_URL="$MOTO_ENDPOINT"
export KOPTER_AWS__REGION=us-east-1
export KOPTER_API__LISTEN="127.0.0.1:$port"
export KOPTER_API__PUBLIC_URL="http://127.0.0.1:$port"
export KOPTER_API__DEV_ISSUER=true
export KOPTER_API__DEV_ISSUER_KEY_FILE="$run/dev-issuer.jwk"
export KOPTER_TELEMETRY__LISTEN="127.0.0.1:$telemetry"
# The fuzzer is one tenant sending hundreds of requests a second.
export KOPTER_API__RATE_LIMIT_PER_SECOND=100000 KOPTER_API__RATE_LIMIT_BURST=100000
"$BIN/kopterctl" bootstrap >/dev/null
# The api refuses tokens of tenants that were not created.
"$BIN/kopterctl" tenants create acme >/dev/null
"$BIN/api" >"$run/api.log" 2>&1 &
api_pid=$!
stop() { kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 100); do
  if python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$telemetry/readyz" 2>/dev/null; then break; fi
  kill -0 "$api_pid" 2>/dev/null || { echo "the api exited; log:" >&2; cat "$run/api.log" >&2; exit 1; }
  sleep 0.2
done
token=$("$BIN/kopterctl" token --tenant acme --role admin --ttl 1h)
status=0
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" --seed 20261129 \
  --report junit --report-dir "$run" || status=$?
if [[ $status != 0 ]]; then echo "api log: $run/api.log" >&2; fi
exit $status
