#!/usr/bin/env bash
# promtool checks of deploy/prometheus: config, rules and the rules' unit tests.
set -euo pipefail
cd "$(dirname "$0")/../deploy/prometheus"
promtool check config --syntax-only prometheus.yml
promtool check rules rules/*.yml
promtool test rules tests/*.yml
