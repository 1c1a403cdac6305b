#!/usr/bin/env bash
# `make demo`: Kopter on a local AWS (moto), until Ctrl-C.
#
# Starts a fresh moto on 127.0.0.1:$MOTO_PORT, then runs `kopter-demo`
# (tools/demo), which serves price-list files, bootstraps, onboards the
# demo tenants, creates their estate and CloudTrail files, runs the five
# services, ticks the schedule, waits until the queues are empty, prints
# the report and waits for Ctrl-C; then it drains the services and this
# script stops moto. Service logs: .run/*.log.
#
#   DEMO_MODE=separate (default)  five service processes
#   DEMO_MODE=all-in-one          one `kopter` process with every service
#   scripts/demo.sh --no-wait     print the report, stop everything, exit
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/debug
export MOTO_PORT="${MOTO_PORT:-5055}"
# moto takes any credentials; never hand it (or the services) real ones.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
RUN=.run
mkdir -p "$RUN"
marker="$RUN/moto-$MOTO_PORT.demo"

if scripts/moto.sh status >/dev/null 2>&1; then
  if [[ -f $marker ]]; then
    echo "stopping the moto a previous demo left on port $MOTO_PORT"
    scripts/moto.sh stop
  else
    echo "moto already runs on 127.0.0.1:$MOTO_PORT and the demo needs a fresh one:" >&2
    echo "  MOTO_PORT=$MOTO_PORT make moto-stop   (or choose another MOTO_PORT)" >&2
    exit 1
  fi
fi

# Another program (another checkout's moto) on the port would answer in
# place of ours: refuse rather than fill someone else's moto.
if python3 -c 'import socket,sys; sys.exit(socket.socket().connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$MOTO_PORT"; then
  echo "port $MOTO_PORT is in use by another program; choose another MOTO_PORT" >&2
  exit 1
fi

cleanup() {
  trap - EXIT
  scripts/moto.sh stop
  rm -f "$marker"
}
trap cleanup EXIT
# Ctrl-C (and SIGHUP when the terminal closes) reaches kopter-demo too; it
# drains the services and returns, then the EXIT trap stops moto.
trap ':' INT TERM HUP

scripts/moto.sh start
touch "$marker"
status=0
"$BIN/kopter-demo" --endpoint "http://127.0.0.1:$MOTO_PORT" \
  --mode "${DEMO_MODE:-separate}" --run-dir "$RUN" "$@" || status=$?
exit "$status"
