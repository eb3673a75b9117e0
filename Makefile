# Latchkey — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
RUN_ARGS ?=

.PHONY: all build run test unit lint fmt bench clean

all: build

## build: release build of the latchkey binary (target/release/latchkey)
build:
	$(CARGO) build --release -p latchkey

## run: standalone IdP on https://localhost:9095 with APK's default client (testing only)
run:
	$(CARGO) run --release -p latchkey -- standalone $(RUN_ARGS)

## test: the whole suite — unit, whole-process and end-to-end tests
test:
	$(CARGO) test --workspace

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench: token throughput over TLS vs the raw RS256 signing rate (prints figures and ratio)
bench:
	tests/bench/bench.sh

clean:
	$(CARGO) clean

## generate: regenerate the CRD manifest from the types (CI fails when it drifts)
.PHONY: generate
generate:
	$(CARGO) run -q -p latchkey -- crd > manifests/crds/oauthclients.latchkey.dev.yaml.tmp \
	  || { rm -f manifests/crds/oauthclients.latchkey.dev.yaml.tmp; exit 1; }
	mv manifests/crds/oauthclients.latchkey.dev.yaml.tmp manifests/crds/oauthclients.latchkey.dev.yaml
