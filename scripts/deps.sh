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
# The stamp holds a hash of the pins, not a time: a fresh checkout or a git
# worktree has files newer than any stamp, which must not mean "reinstall".
# .venv may be a symlink to another checkout's venv (worktrees share one):
# `python3 -m venv` cannot create over a symlink, so an existing venv is
# only brought up to the pins (pip leaves satisfied pins alone, offline).
stamp=.venv/.installed
pins=$(cat dev/requirements.txt dev/constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$pins" ]]; then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r dev/requirements.txt -c dev/constraints.txt
  echo "$pins" >"$stamp"
fi
