# Latchkey — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
RUN_ARGS ?=

.PHONY: all build run test unit e2e interop image image-test lint fmt bench clean fuzz browser

include tests/testenv/testenv.mk

all: build

## build: release build of the latchkey binary (target/release/latchkey)
build:
	$(CARGO) build --release -p latchkey

## run: standalone IdP on https://localhost:9095 with APK's default client (testing only)
run:
	$(CARGO) run --release -p latchkey -- standalone $(RUN_ARGS)

## test: the whole suite — unit, whole-process, interop, browser, image and end-to-end tests
test: unit interop browser image-test e2e

## image: OCI image archive target/image/latchkey.tar of the release binary, built by crane
## (go-containerregistry, from the Go module proxy into target/image/bin); no container engine
CRANE_VERSION ?= v0.22.1
CRANE := target/image/bin/crane
image: build $(CRANE)
	CRANE=$(CRANE) bash image/build.sh target/release/latchkey target/image/latchkey.tar

$(CRANE):
	GOBIN=$(CURDIR)/target/image/bin go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

## image-test: unpack the image's layers and answer the seed request from them as uid 65532
image-test: image
	bash tests/image/test.sh target/image/latchkey.tar

## interop: OAuth and JWT libraries of Python, Node, Go and Java against the real binary
## over TLS (tests/interop/run.sh; downloads cached under target/interop)
interop:
	bash tests/interop/run.sh

## browser: headless Chromium (Debian's chromium, driven by playwright-core) walks the sign-in
## flow against the real binary over TLS; screenshots in target/browser (tests/browser/run.sh)
browser:
	bash tests/browser/run.sh

## unit: pure-logic and whole-process tests (no cluster)
unit:
	$(CARGO) test --workspace

## e2e: end-to-end suites against a real kube-apiserver and etcd (started and stopped here)
e2e:
	$(CARGO) build --tests -p latchkey --features e2e
	bash $(TESTENV_DIR)/up.sh
	set -o pipefail; status=0; \
	  $(CARGO) test -p latchkey --features e2e --test e2e_operator --test e2e_install --test e2e_users --test e2e_grants --test e2e_sign_in_replicas --test e2e_service_accounts --test e2e_secret_rotation --test e2e_revocation --test e2e_registration -- --test-threads=1 --nocapture 2>&1 \
	    | grep -v '^{"timestamp"' | tee target/e2e.log || status=$$?; \
	  bash $(TESTENV_DIR)/down.sh; \
	  grep -o 'figure:.*' target/e2e.log || true; \
	  exit $$status

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features latchkey/e2e -- -D warnings

fmt:
	$(CARGO) fmt --all

## fuzz: a longer run of the property tests of every parser that takes outside bytes (form body,
## Basic header, key ring JSON, PEM keys, client manifests) and of the black-box HTTP fuzzer
## against the real binary; prints cases run and crashes found. FUZZ_CASES scales both. Debug
## builds on purpose: arithmetic overflow panics there, so it is found too.
FUZZ_CASES ?= 100000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p latchkey-server -p latchkey-core -p latchkey \
	  --test fuzz_parsers --test fuzz_manifests -- --nocapture 2>&1 | grep -E '^test |test result'
	LATCHKEY_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test -p latchkey --test fuzz_http -- --nocapture 2>&1 \
	  | grep -E '^fuzz:|^test |test result'

## bench: the hot path vs its limits on one pinned core: GET floor, raw signatures and tokens per
## algorithm, ratios A and B, 2-core scaling, TLS handshakes, p99 at half saturation; then
## introspections, assertion-authenticated tokens, logins, refreshes and password guesses (README)
bench:
	tests/bench/bench.sh
	tests/bench/introspect.sh
	tests/bench/assertions.sh
	tests/bench/sign_in.sh

## bench-operator: the operator at scale on the test control plane (10,000 OAuthClients;
## SCALE_CLIENTS=N for another count) and one change at 10,000 clients in process
.PHONY: bench-operator
bench-operator:
	$(CARGO) bench -p latchkey-api --bench one_change
	$(CARGO) build --release --tests -p latchkey --features e2e
	bash $(TESTENV_DIR)/up.sh
	set -o pipefail; status=0; \
	  $(CARGO) test --release -p latchkey --features e2e --test scale_operator -- --ignored --nocapture 2>&1 \
	    | grep -v '^{"timestamp"' | tee target/bench-operator.log || status=$$?; \
	  bash $(TESTENV_DIR)/down.sh; \
	  grep -o 'figure:.*' target/bench-operator.log || true; \
	  exit $$status

clean:
	$(CARGO) clean

## generate: regenerate the CRD manifest from the types, its copy in the chart, and
## manifests/install.yaml from the chart (needs helm: `make testenv-build`). CI fails on drift.
.PHONY: generate
generate:
	$(CARGO) run -q -p latchkey -- crd > manifests/crds/oauthclients.latchkey.dev.yaml.tmp \
	  || { rm -f manifests/crds/oauthclients.latchkey.dev.yaml.tmp; exit 1; }
	mv manifests/crds/oauthclients.latchkey.dev.yaml.tmp manifests/crds/oauthclients.latchkey.dev.yaml
	cp manifests/crds/oauthclients.latchkey.dev.yaml charts/latchkey/crds/oauthclients.latchkey.dev.yaml
	$(CARGO) run -q -p latchkey -- crd users > manifests/crds/users.latchkey.dev.yaml.tmp \
	  || { rm -f manifests/crds/users.latchkey.dev.yaml.tmp; exit 1; }
	mv manifests/crds/users.latchkey.dev.yaml.tmp manifests/crds/users.latchkey.dev.yaml
	cp manifests/crds/users.latchkey.dev.yaml charts/latchkey/crds/users.latchkey.dev.yaml
	$(MAKE) --no-print-directory install-manifest

## install-manifest: render manifests/install.yaml from charts/latchkey (helm template)
.PHONY: install-manifest
install-manifest:
	bash manifests/render-install.sh > manifests/install.yaml.tmp \
	  || { rm -f manifests/install.yaml.tmp; exit 1; }
	mv manifests/install.yaml.tmp manifests/install.yaml
