# Local test Kubernetes control plane (see tests/testenv/README.md).
# Included from the top-level Makefile; paths are relative to the repo root.

TESTENV_DIR        := tests/testenv
TESTENV_KUBECONFIG := target/testenv/kubeconfig

.PHONY: testenv-build testenv-up testenv-down testenv-smoke testenv-purge

## Build etcd, kube-apiserver, kube-controller-manager, kubectl, helm (only missing ones).
testenv-build:
	bash $(TESTENV_DIR)/build.sh

## Start the control plane on 127.0.0.1 (no-op when already up); writes $(TESTENV_KUBECONFIG).
testenv-up:
	bash $(TESTENV_DIR)/up.sh

## Stop the control plane (no-op when not running).
testenv-down:
	bash $(TESTENV_DIR)/down.sh

## Stop it and delete etcd data, certificates and kubeconfigs.
testenv-purge:
	bash $(TESTENV_DIR)/down.sh --purge

## up, end-to-end checks (RBAC, CRD, GC, tokens, helm), down.
testenv-smoke:
	bash $(TESTENV_DIR)/smoke.sh
