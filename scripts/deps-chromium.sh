#!/usr/bin/env bash
# Installs Debian's `chromium` and `chromium-driver` for the console's
# real-browser test (tools/demo/tests/console_browser.rs), which drives a
# headless Chromium through chromedriver (WebDriver). Called by `make test`.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
if [[ $(id -u) != 0 ]]; then
  echo "please install Chromium and its WebDriver: apt-get install chromium chromium-driver" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
