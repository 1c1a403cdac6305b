#!/usr/bin/env bash
# `make clean`'s last step: offer to remove the Cargo build directory.
#
# It is the biggest thing the project leaves on disk (a debug build of the
# workspace and its tests: about 15–25 GB) and the slowest to get back
# (the first build takes 10–20 minutes on 2 cores), so it is never removed
# without a yes: asked on a terminal, or CLEAN_TARGET=1. Without a
# terminal (CI, scripts) it only says how to remove it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CARGO_TARGET_DIR:-target}
if [[ ! -d $dir ]]; then
  exit 0
fi
size=$(du -sh "$dir" 2>/dev/null | cut -f1)
if [[ ${CLEAN_TARGET:-} == 1 ]]; then
  answer=y
elif [[ -t 0 ]]; then
  read -r -p "remove the build directory $dir ($size; the next build takes 10-20 min)? [y/N] " answer
else
  echo "kept the build directory $dir ($size): CLEAN_TARGET=1 make clean removes it"
  exit 0
fi
case $answer in
  y | Y | yes)
    rm -rf -- "$dir"
    echo "removed $dir ($size)"
    ;;
  *) echo "kept $dir ($size)" ;;
esac
