#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's `prometheus` package for
# `make test` (the rule checks and the monitoring test), without starting
# the Debian service: the test starts its own Prometheus on 127.0.0.1.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then exit 0; fi
if [[ $(id -u) != 0 ]]; then
  echo "please install Prometheus: apt-get install prometheus (provides prometheus and promtool)" >&2
  exit 1
fi
# Keep invoke-rc.d from starting the packaged service (Docker images ship
# this policy already; a plain Debian machine does not).
policy=/usr/sbin/policy-rc.d
added=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
fi
trap '[[ $added == 1 ]] && rm -f "$policy"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
# On systemd hosts the unit may still have been enabled: keep it stopped.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
