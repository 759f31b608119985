# myaas — build, test and run the operator.
# Tools are pinned and built from Go modules into ./bin, so a fresh machine needs only Go and apt.

IMG ?= localhost/myaas/manager:dev
KUBERNETES_VERSION ?= v1.34.4
CONTROLLER_TOOLS_VERSION ?= v0.19.0
GOLANGCI_LINT_VERSION ?= v2.5.0
# The kustomize that kubectl $(KUBERNETES_VERSION) embeds, so `kubectl kustomize` renders the same.
KUSTOMIZE_VERSION ?= v5.7.1
CRANE_VERSION ?= v0.20.3

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CRANE ?= $(LOCALBIN)/crane
HELM ?= $(LOCALBIN)/tools/helm
ENVTEST_ASSETS ?= $(LOCALBIN)/k8s
KUBECONFIG_DEV ?= /var/lib/myaas-dev/kubeconfig
# The pinned kubectl built with the local cluster, else the one on PATH.
KUBECTL ?= $(shell [ -x $(LOCALBIN)/k8s/kubectl ] && echo $(LOCALBIN)/k8s/kubectl || echo kubectl)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: check-generate
check-generate: manifests generate chart ## Fail if generated files or go.mod/go.sum are not what the tools would write.
	@git diff --exit-code -- api config || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }
	@git diff --exit-code -- charts && [ -z "$$(git status --porcelain -- charts)" ] || \
		{ echo "the chart differs from config/ or hack/dashboard: run 'make chart' and commit"; exit 1; }
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; }

.PHONY: chart
chart: manifests kustomize ## Generate the Helm chart's CRDs, manifests, values.yaml and dashboard from config/ and hack/dashboard.
	$(KUSTOMIZE) build config/default | go run ./hack/chartgen charts/myaas
	go run ./hack/dashboard charts/myaas/files/dashboard.json

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: vet golangci-lint shellcheck helm-lint ## Run go vet, golangci-lint, shellcheck and helm lint.
	@if [ -x $(GOLANGCI_LINT) ]; then $(GOLANGCI_LINT) run ./...; else echo "golangci-lint could not be installed: ran go vet only"; fi

# Every shell script of the project; -x follows the libraries they source.
SHELL_SCRIPTS = $(shell find hack test -name '*.sh' | sort) .ci/run

.PHONY: shellcheck
shellcheck: install-shellcheck ## Run shellcheck on every shell script.
	shellcheck -x $(SHELL_SCRIPTS)

##@ Test

# make test installs these dependencies itself, so a test that still finds one missing fails
# instead of skipping (internal/testdeps). `make test TEST_REQUIRE=` lets them skip again.
TEST_REQUIRE ?= MYAAS_REQUIRE_MARIADB=1 MYAAS_REQUIRE_POSTGRES=1 MYAAS_REQUIRE_BTRFS=1 MYAAS_REQUIRE_ENVTEST=1 MYAAS_REQUIRE_CHART=1

.PHONY: test
test: manifests generate envtest install-test-deps helm kustomize ## Unit, envtest, agent (real MariaDB and PostgreSQL), CSI sanity and chart tests.
	@mkdir -p bin
	$(TEST_REQUIRE) KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) go test ./... -count=1 -timeout 30m 2>&1 | tee bin/test.log; \
	status=$${PIPESTATUS[0]}; \
	if [ "$$status" != 0 ]; then echo "== failed tests (whole output: bin/test.log) =="; grep -E -A3 -- '--- FAIL|_test\.go:[0-9]+: ' bin/test.log | tail -n 80; fi; \
	exit "$$status"

.PHONY: test-chart
test-chart: helm kustomize install-prometheus ## The chart alone: helm lint, defaults = config/default, values, alert rule tests, dashboard queries.
	MYAAS_REQUIRE_CHART=1 HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) go test ./test/chart -count=1 -v

.PHONY: install-test-deps
install-test-deps: install-prometheus ## Install the Debian packages the tests need (MariaDB server and mydumper, PostgreSQL server, btrfs tools, promtool).
	bash hack/install-mariadb.sh
	bash hack/install-postgresql.sh
	bash hack/install-btrfs.sh

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest from Go modules into bin/k8s.
	bash hack/build-k8s.sh kube-apiserver etcd

.PHONY: bench-import
# ENGINES=postgresql runs the PostgreSQL rows only; ROWS=2000000 a smaller dump; METHODS=2,4 some MariaDB rows.
bench-import: build ## Benchmark: the agent's import (one file, a mydumper directory, a mariadb-backup stream) against `mariadb < dump.sql` (default and tuned server), myloader, `psql -f dump.sql` and `pg_restore -j`.
	bash hack/bench-import.sh $(if $(ENGINES),--engines=$(ENGINES)) $(if $(ROWS),--rows=$(ROWS)) $(if $(METHODS),--methods=$(METHODS))

.PHONY: bench-clone-start
bench-clone-start: build ## Benchmark: a PostgreSQL clone's `agent start` against `pg_ctl start` of the same datadir, to a login.
	go run ./hack/bench-clone-start -agent $(LOCALBIN)/myaas
	go run ./hack/bench-clone-start -agent $(LOCALBIN)/myaas -prepared=false

.PHONY: bench-provision
bench-provision: ## Benchmark: kubectl apply to Ready, sequential and concurrent, in the template's namespace and from others, and the disk cost of clones; then the 3-node row.
	MYAAS_NODES=1 bash hack/bench-provision.sh
	$(MAKE) bench-provision-nodes

.PHONY: bench-provision-nodes
bench-provision-nodes: ## Benchmark: on a 3-node cluster, the small template on one node against a copy on every node, sequential and 20 at once.
	MYAAS_NODES=3 bash hack/bench-provision.sh --nodes-only

.PHONY: bench-memory
bench-memory: ## Benchmark: the manager's memory with and without 5,000 unrelated Secrets in the cluster.
	bash hack/bench-memory.sh

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the myaas binary (manager and agent).
	CGO_ENABLED=0 go build -o $(LOCALBIN)/myaas .

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig.
	go run . manager

# No Docker engine is needed: the image is an OCI archive built by hack/build-images.sh, the
# format `ctr images import` and `docker load` read. Where a Docker daemon runs, it is loaded too.
.PHONY: docker-build
docker-build: ## Build the manager image IMG as bin/images/manager.tar, without Docker.
	MANAGER_IMG=$(IMG) bash hack/build-images.sh manager
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then docker load -i bin/images/manager.tar; \
		else echo "no Docker daemon: the image is bin/images/manager.tar"; fi

.PHONY: docker-push
docker-push: crane ## Push bin/images/manager.tar to IMG's registry (log in with bin/crane auth login).
	CRANE=$(CRANE) bash hack/push-image.sh bin/images/manager.tar $(IMG)

# A release is the installer, the chart and the image archive of one version, all in dist/.
# RELEASE_IMAGE_REPO is where the image is pushed (make docker-push IMG=...:VERSION with the archive).
RELEASE_IMAGE_REPO ?= localhost/myaas/manager

.PHONY: release
release: manifests kustomize helm ## Write dist/install.yaml, dist/myaas-VERSION.tgz (chart) and dist/myaas-manager-VERSION.tar (image) for VERSION=x.y.z.
	@[ -n "$(VERSION)" ] || { echo "usage: make release VERSION=x.y.z"; exit 2; }
	HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) bash hack/release.sh $(VERSION) $(RELEASE_IMAGE_REPO)

.PHONY: helm-lint
helm-lint: helm ## Lint the chart with its default values and with every optional object on.
	$(HELM) lint --strict charts/myaas
	$(HELM) lint --strict charts/myaas --set metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true

.PHONY: helm-template
helm-template: helm ## Print the chart rendered with its default values (CRDs included).
	$(HELM) template myaas charts/myaas --namespace myaas-system --include-crds

.PHONY: build-installer
build-installer: manifests kustomize ## Write dist/install.yaml: CRDs, RBAC and the manager running IMG.
	mkdir -p dist
	KUSTOMIZE=$(KUSTOMIZE) bash hack/render-config.sh $(IMG) >dist/install.yaml

##@ Local cluster

.PHONY: build-k8s-bins
build-k8s-bins: ## Build every Kubernetes component of the local cluster.
	bash hack/build-k8s.sh

# NODES=3 gives the local cluster three nodes (dev-cluster and every target that brings it up).
NODES ?= $(or $(MYAAS_NODES),1)
export MYAAS_NODES := $(NODES)

.PHONY: dev-cluster
dev-cluster: ## Start the local cluster (NODES=3: three nodes) with copy-on-write snapshots on this machine.
	bash hack/dev-cluster.sh up

.PHONY: dev-cluster-down
dev-cluster-down: ## Stop the local cluster and remove everything it created.
	bash hack/dev-cluster.sh down

.PHONY: dev-cluster-load
dev-cluster-load: ## Rebuild the manager image and import it into the local cluster.
	bash hack/dev-cluster.sh load

.PHONY: test-cluster
test-cluster: ## Smoke test: 1 node (snapshot and clone a 1 GiB volume), then 3 nodes (node-local and shared volumes), each down with nothing left.
	bash test/cluster/smoke.sh

.PHONY: test-e2e
test-e2e: ## End-to-end suite on the local cluster (brings it up and down unless one is running).
	bash hack/e2e.sh

.PHONY: test-e2e-nodes
test-e2e-nodes: ## End-to-end tests of several nodes on a 3-node local cluster (brings it up and down unless one is running).
	MYAAS_NODES=3 MYAAS_E2E_NODES=3 bash hack/e2e.sh -run '^TestNodes'

.PHONY: test-install
test-install: helm kustomize install-prometheus ## Install tests on the local cluster: helm install/upgrade/uninstall, metrics through Prometheus, dist/install.yaml.
	HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) bash hack/test-install.sh

# ENGINE=postgresql runs the demo on PostgreSQL.
ENGINE ?= mariadb

.PHONY: demo
demo: ## Local cluster, operator, a template and an instance, and a real query against it (ENGINE=mariadb|postgresql).
	ENGINE=$(ENGINE) bash hack/demo.sh

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator into the current cluster (IMG sets the image of the manager and the agent).
	KUSTOMIZE=$(KUSTOMIZE) bash hack/render-config.sh $(IMG) | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Tools

.PHONY: install-shellcheck
install-shellcheck: ## Install shellcheck (Debian package).
	bash hack/install-shellcheck.sh

.PHONY: install-prometheus
install-prometheus: ## Install Prometheus and promtool (Debian package) for the alert and monitoring tests.
	bash hack/install-prometheus.sh

.PHONY: helm
helm: ## Build helm from its Go module into bin/tools (hack/tools/helm).
	bash hack/build-tools.sh helm

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen into bin/.
$(CONTROLLER_GEN): go.mod
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	touch $@

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Build kustomize into bin/.
$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

.PHONY: crane
crane: $(CRANE) ## Build crane into bin/.
$(CRANE):
	GOBIN=$(LOCALBIN) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Build golangci-lint into bin/.
$(GOLANGCI_LINT):
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) || \
		echo "golangci-lint $(GOLANGCI_LINT_VERSION) is not available from the module proxy"

##@ Plugin and CI

ACTIONLINT_VERSION ?= v1.7.12
ACTIONLINT ?= $(LOCALBIN)/actionlint
CLUSTER_LOCK ?= /tmp/myaas-cluster.lock

.PHONY: build-plugin
build-plugin: ## Build the kubectl plugin bin/kubectl-myaas (on PATH, kubectl runs it as `kubectl myaas`).
	CGO_ENABLED=0 go build -o $(LOCALBIN)/kubectl-myaas ./cmd/kubectl-myaas

.PHONY: test-plugin
test-plugin: ## Unit tests of the plugin (naming, output formats, flags, CI files).
	go test ./cmd/kubectl-myaas -count=1

.PHONY: lint-ci
lint-ci: actionlint ## Check the GitHub action and workflows with actionlint, the CI scripts with shellcheck.
	ACTIONLINT=$(ACTIONLINT) bash ci/lint.sh

# make lint checks the CI files too.
lint: lint-ci

.PHONY: test-e2e-plugin
test-e2e-plugin: ## The plugin's e2e tests on the running local cluster (waits for the cluster lock).
	flock $(CLUSTER_LOCK) env KUBECONFIG=$(KUBECONFIG_DEV) go test -tags e2e ./test/e2e -run 'TestPlugin' -count=1 -v -timeout 40m

.PHONY: bench-plugin
bench-plugin: build-plugin ## Benchmark: `kubectl myaas create --wait -o uri` to a successful login, on the running local cluster.
	flock $(CLUSTER_LOCK) go run ./hack/bench-plugin --kubeconfig $(KUBECONFIG_DEV) --plugin $(LOCALBIN)/kubectl-myaas

.PHONY: actionlint
actionlint: $(ACTIONLINT) ## Build actionlint into bin/.
$(ACTIONLINT):
	GOBIN=$(LOCALBIN) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
