#!/usr/bin/env bash
# `make demo`: Kopter on a local AWS (moto), until Ctrl-C.
# Starts moto, bootstraps the `demo` environment, onboards demo tenants,
# runs every service binary, prints the state, then waits. Ctrl-C stops
# the services (SIGTERM drain) and moto. Logs: .run/*.log
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/debug
RUN=.run
mkdir -p "$RUN"

export MOTO_PORT="${MOTO_PORT:-5055}"
export KOPTER_ENV=demo
export KOPTER_AWS__ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export KOPTER_CONFIG=/nonexistent/kopter.toml

pids=()
moto_started=0
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping services..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $moto_started == 1 ]]; then scripts/moto.sh stop; fi
  echo "demo stopped"
}
trap cleanup INT TERM EXIT

if ! scripts/moto.sh status >/dev/null 2>&1; then
  scripts/moto.sh start
  moto_started=1
fi

echo "== bootstrap"
"$BIN/kopterctl" bootstrap | tail -1

echo "== onboard demo tenants"
onboard() { # tenant account
  "$BIN/kopterctl" onboard --tenant "$1" --account "$2" \
    --role-arn "arn:aws:iam::$2:role/KopterAccess" --regions us-east-1,eu-west-1,ap-southeast-2 \
    >"$RUN/onboard-$1-$2.txt" 2>&1 \
    && head -1 "$RUN/onboard-$1-$2.txt" \
    || sed 's/^/  /' "$RUN/onboard-$1-$2.txt"
}
onboard acme 111111111111
onboard acme 222222222222
onboard globex 333333333333

echo "== start services"
port=9101
for svc in describer pricing aggregator trail-ingest notifier; do
  KOPTER_TELEMETRY__LISTEN="127.0.0.1:$port" KOPTER_TELEMETRY__LOG_FORMAT=json \
    "$BIN/$svc" >"$RUN/$svc.log" 2>&1 &
  pids+=($!)
  echo "  $svc (pid $!) metrics http://127.0.0.1:$port/metrics  log $RUN/$svc.log"
  port=$((port + 1))
done

.venv/bin/python - <<'PY'
import sys, time, urllib.request
ports = range(9101, 9106)
deadline = time.time() + 60
pending = set(ports)
while pending and time.time() < deadline:
    for p in list(pending):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/readyz", timeout=2)
            pending.discard(p)
        except Exception:
            pass
    time.sleep(0.3)
if pending:
    sys.exit(f"services on ports {sorted(pending)} did not become ready; see .run/*.log")
print("  all services ready")
PY

echo "== accounts"
"$BIN/kopterctl" accounts list
echo "== queues"
"$BIN/kopterctl" queues
echo
echo "Kopter is running (environment 'demo' on moto at $KOPTER_AWS__ENDPOINT_URL)."
echo "Try:  KOPTER_ENV=demo KOPTER_AWS__ENDPOINT_URL=$KOPTER_AWS__ENDPOINT_URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing $BIN/kopterctl queues"
echo "Press Ctrl-C to stop."
while true; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then echo "a service exited; see $RUN/*.log" >&2; exit 1; fi
  done
  sleep 2
done
