#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh Debian machine
# that has the Rust toolchain: python3 with venv support, then the project
# venv with the pinned moto server. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  if [[ $(id -u) != 0 ]]; then echo "please install: ${need_apt[*]} (apt-get)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
stamp=.venv/.installed
if [[ ! -f $stamp || dev/requirements.txt -nt $stamp || dev/constraints.txt -nt $stamp ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r dev/requirements.txt -c dev/constraints.txt
  touch "$stamp"
fi
