#!/usr/bin/env bash
# Validates compose.yaml with Debian's docker-compose (`docker-compose
# config`; no Docker engine needed). Installs the package when missing and
# running as root (CI), as scripts/deps.sh does for python3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null; then
  if [[ $(id -u) != 0 ]]; then echo "please install: docker-compose (apt-get)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
docker-compose -f compose.yaml config -q
docker-compose -f compose.yaml --profile monitoring --profile localstack config --services | sort | tr '\n' ' '
echo
echo "compose.yaml: valid ($(docker-compose version --short))"
