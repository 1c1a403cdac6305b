#!/usr/bin/env bash
# Run a command with moto up (started here and stopped afterwards unless
# it was already running) and the environment the tests and tools expect.
set -euo pipefail
cd "$(dirname "$0")/.."
started=0
if ! scripts/moto.sh status >/dev/null 2>&1; then
  scripts/moto.sh start
  started=1
fi
stop() { if [[ $started == 1 ]]; then scripts/moto.sh stop; fi; }
trap stop EXIT
export MOTO_ENDPOINT="http://127.0.0.1:${MOTO_PORT:-5055}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
"$@"
