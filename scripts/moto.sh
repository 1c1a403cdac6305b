#!/usr/bin/env bash
# Start/stop the pinned moto server on 127.0.0.1 for tests and the demo.
#   scripts/moto.sh start|stop|status
# State lives in .run/: moto.pid, moto.log for the default port 5055,
# moto-<port>.pid, moto-<port>.log for another MOTO_PORT (so a second moto,
# e.g. `MOTO_PORT=5066 make demo`, never takes the first one's pid file).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${MOTO_PORT:-5055}"
RUN=.run
if [[ $PORT == 5055 ]]; then NAME=moto; else NAME="moto-$PORT"; fi
PID="$RUN/$NAME.pid"
LOG="$RUN/$NAME.log"
mkdir -p "$RUN"

alive() { [[ -f "$PID" ]] && kill -0 "$(cat "$PID")" 2>/dev/null; }

wait_ready() {
  .venv/bin/python - "$PORT" <<'PY'
import sys, time, urllib.request
port = sys.argv[1]
deadline = time.time() + 60
while time.time() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(f"moto did not answer on 127.0.0.1:{port} within 60 s")
PY
}

case "${1:-}" in
  start)
    if alive; then echo "moto already running (pid $(cat "$PID")) on 127.0.0.1:$PORT"; exit 0; fi
    [[ -x .venv/bin/moto_server ]] || { echo "no .venv/bin/moto_server: run 'make venv' first" >&2; exit 1; }
    nohup .venv/bin/moto_server -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
    echo $! >"$PID"
    if ! wait_ready; then echo "moto failed to start; last log lines:" >&2; tail -20 "$LOG" >&2; exit 1; fi
    echo "moto running (pid $(cat "$PID")) on http://127.0.0.1:$PORT, log $LOG"
    ;;
  stop)
    if alive; then
      kill "$(cat "$PID")"
      for _ in $(seq 50); do alive || break; sleep 0.1; done
      alive && kill -9 "$(cat "$PID")" 2>/dev/null || true
      echo "moto stopped"
    fi
    rm -f "$PID"
    ;;
  status)
    if alive; then echo "running (pid $(cat "$PID")) on 127.0.0.1:$PORT"; else echo "stopped"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
