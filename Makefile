# The autoscaling lab. `make demo` runs the lab on this machine; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help setup test demo console lint bench

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## install what the lab and its tests need (idempotent)
	@bash scripts/setup.sh

demo: setup ## build in release mode and run the cluster-free lab (scaler + consumer replicas + HPA logic); LAB_TEST=demo-chaos for faults
	$(call require,$(CARGO),Install Rust: https://rustup.rs)
	$(CARGO) build --release -p consumer -p scaler -p generator -p lab
	./target/release/lab --test $${LAB_TEST:-demo}

console: setup ## build in release mode and serve the lab's web console on http://127.0.0.1:8089/ until Ctrl-C (docs/console.md)
	$(call require,$(CARGO),Install Rust: https://rustup.rs)
	$(CARGO) build --release -p consumer -p scaler -p generator -p lab
	./target/release/lab console

test: setup ## run every test: Rust (unit + integration, real Prometheus/OTLP/gRPC) and Python (wire, manifests, dashboards)
	$(call require,$(CARGO) python3 kubectl promtool prometheus,Run make setup; kubectl: https://kubernetes.io/docs/tasks/tools/ and Rust: https://rustup.rs)
	$(CARGO) build --workspace --bins # the cluster tests run these binaries as the node's pods (cluster/images.yaml)
	$(CARGO) test --workspace --all-targets
	python3 -m pytest -q tests/python

lint: ## rustfmt check and clippy with warnings as errors
	$(call require,$(CARGO),Install Rust: https://rustup.rs)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: ## run the benchmarks under bench/ (figures, not a gate)
	@bash scripts/setup.sh --bench
	@for b in bench/*/run.sh; do echo "== $$b"; bash $$b || exit 1; done

# ---------------------------------------------------------------------------------------------------------------------
# The lab on a Kubernetes cluster (docs/kubernetes.md). `make -n dev` prints the plan without touching anything.
# Every target checks its tools first and names what is missing.
include manifests/helm/versions.mk

IMAGE ?= autoscaling-lab:dev
OVERLAY ?= development
NAMESPACE := autoscaling-lab
KIND_CLUSTER ?= autoscaling-lab
LOAD_PROFILES := light medium heavy burst memory-stress cpu-stress sustained distributed chaos
# The manifests name the image autoscaling-lab:dev; IMAGE=... rewrites it on the way to the cluster.
SET_IMAGE := sed 's\#image: autoscaling-lab:dev\#image: $(IMAGE)\#'
# $(call require,TOOLS,HINT): fail with one line naming every missing tool (exit 127, like a shell).
require = @missing=""; for t in $(1); do command -v "$$t" >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "make $@: missing tool(s):$$missing. $(2)" >&2; exit 127; fi

.PHONY: dev dev-local dev-remote stack-local cluster cluster-local cluster-kind cluster-k3d cluster-context cluster-invalid cluster-down cluster-status stack image image-load kind-load apply watch grafana clean clean-all

# `make dev` on the local cluster (no kube context, CLUSTER=local, or its own context current) or on another one.
# Decided when make reads this file, so `make -n dev` prints the plan that would run.
CLUSTER ?= auto
LOCAL_CLUSTER ?= local
LOCAL_CONTEXT := autoscaling-lab-$(LOCAL_CLUSTER)
CLUSTER_BIN := ./target/release/cluster
LAB_TIME_SCALE ?= 1
CLUSTER_MODE := $(shell ctx=$$(kubectl config current-context 2>/dev/null || true); \
	if [ "$(CLUSTER)" = auto ]; then \
		if [ -z "$$ctx" ] || [ "$$ctx" = "autoscaling-lab-$(LOCAL_CLUSTER)" ]; then echo local; else echo context; fi; \
	elif [ "$(CLUSTER)" = local ] || [ "$(CLUSTER)" = kind ] || [ "$(CLUSTER)" = k3d ]; then echo "$(CLUSTER)"; \
	else echo invalid; fi)
DEV_TARGET := $(if $(filter local,$(CLUSTER_MODE)),dev-local,dev-remote)

dev: $(DEV_TARGET) ## the lab on a cluster: the local one (no Docker; LAB_TIME_SCALE=0.25 for short runs), or the current context / CLUSTER=kind|k3d with helm and an image

dev-local: cluster-local stack-local ## the lab on the local cluster: KEDA, metrics-server, Prometheus, the release binaries, the overlay
	kubectl kustomize manifests/overlays/$(OVERLAY) | python3 scripts/cluster/local_overlay.py $(LAB_TIME_SCALE) | kubectl apply --server-side --force-conflicts -f -
	kubectl -n $(NAMESPACE) rollout status deployment/scaler --timeout=180s
	kubectl -n $(NAMESPACE) rollout status deployment/consumer --timeout=180s
	@echo
	@echo "The lab runs on the local cluster (context $(LOCAL_CONTEXT)) in namespace $(NAMESPACE), overlay $(OVERLAY), time scale $(LAB_TIME_SCALE); images are this build's binaries (cluster/images.yaml). Next:"
	@echo "  first job: make load-heavy   (= kubectl apply -f manifests/components/load-generator/job-heavy.yaml)"
	@echo "  follow:    kubectl -n $(NAMESPACE) logs -f job/load-test-heavy     watch: make watch  (or kubectl -n $(NAMESPACE) get hpa,scaledobject,pods -w)"
	@echo "  k9s:       k9s -n $(NAMESPACE)   then :scaledobjects  :hpa  :deploy  :pods  :jobs"
	@echo "  resources: kubectl top pods -n $(NAMESPACE)   (metrics-server from the node agent's cgroup figures)"
	@echo "  Prometheus: http://$$(kubectl -n monitoring get svc kube-prometheus-stack-prometheus -o jsonpath='{.spec.clusterIP}'):9090   (Service IPs are reachable from this machine)"
	@echo "  Grafana and Tempo are AGPL and not installed here: the lab's console and Prometheus take their place"

stack-local: ## KEDA, metrics-server and prometheus-operator + Prometheus on the local cluster, each from its own manifests
	$(call require,kubectl go python3,Run make setup)
	bash scripts/cluster/stack.sh

dev-remote: cluster stack image image-load apply
	@echo
	@echo "The lab runs in namespace $(NAMESPACE) (overlay $(OVERLAY), image $(IMAGE)). Next:"
	@echo "  Grafana:   kubectl -n monitoring port-forward svc/grafana 3000:80   (or: make grafana)"
	@echo "             http://localhost:3000  user admin, password autoscaling-lab, folder 'Autoscaling lab'"
	@echo "  k9s:       k9s -n $(NAMESPACE)   then :scaledobjects  :hpa  :deploy  :pods  :jobs"
	@echo "  first job: make load-heavy   (= kubectl apply -f manifests/components/load-generator/job-heavy.yaml)"
	@echo "  follow:    kubectl -n $(NAMESPACE) logs -f job/load-test-heavy     watch: make watch"
	@echo "  traces:    Grafana > Explore > Tempo, or the trace links on the latency panels"

# The local cluster (docs/kubernetes.md, "The local cluster"): the upstream control plane built from cluster/upstream,
# the project's node agent running pods as processes. CLUSTER=auto picks it with no kube context or with its own.

cluster: cluster-$(CLUSTER_MODE) ## the local cluster with no kube context (or CLUSTER=local, or its own context); CLUSTER=kind|k3d; else the current context

cluster-kind:
	$(call require,kind kubectl,CLUSTER=kind needs kind: https://kind.sigs.k8s.io)
	kind create cluster --name $(KIND_CLUSTER) --config manifests/helm/kind-cluster.yaml --wait 120s

cluster-k3d:
	$(call require,k3d kubectl,CLUSTER=k3d needs k3d: https://k3d.io)
	k3d cluster create $(KIND_CLUSTER) --agents 1 --wait

cluster-context:
	$(call require,kubectl,Install kubectl: https://kubernetes.io/docs/tasks/tools/)
	@echo "cluster: using kube context $$(kubectl config current-context)"

cluster-invalid:
	@echo "make cluster: CLUSTER=$(CLUSTER) is not one of auto, local, kind, k3d" >&2; exit 2

# Exit codes as docs/exit-codes.md has them: 8 not Linux, 7 not root.
cluster-local: ## start the local cluster (builds the upstream binaries once, cached by version, and the lab's)
	@if [ "$$(uname -s)" != Linux ]; then echo "make cluster: the local cluster runs on Linux only (this is $$(uname -s)): use CLUSTER=kind or CLUSTER=k3d" >&2; exit 8; fi
	@if [ "$$(id -u)" != 0 ]; then echo "make cluster: the local cluster needs root (network namespaces, links, nftables, mounts, cgroups): sudo -E make cluster" >&2; exit 7; fi
	$(call require,$(CARGO) go ip nft,Run make setup (it installs nftables and iproute2; Go: https://go.dev/dl/))
	bash scripts/cluster/build-upstream.sh >/dev/null
	$(CARGO) build --release -p cluster -p node-agent -p consumer -p scaler -p generator -p lab
	$(CLUSTER_BIN) up --name $(LOCAL_CLUSTER)

cluster-down: ## stop the local cluster and remove everything it created (namespaces, links, tables, cgroups, its context)
	$(call require,$(CARGO),Install Rust: https://rustup.rs)
	$(CARGO) build --release -p cluster
	$(CLUSTER_BIN) down --name $(LOCAL_CLUSTER)

cluster-status: ## is the local cluster running, and how (exit 0 when it is up and Ready)
	@if [ -x $(CLUSTER_BIN) ]; then $(CLUSTER_BIN) status --name $(LOCAL_CLUSTER); else echo "cluster: $(LOCAL_CLUSTER) is not running (never built)"; exit 3; fi

stack: ## helm: kube-prometheus-stack (Prometheus, Grafana), Tempo, KEDA, and metrics-server if the cluster has none (pinned charts)
	$(call require,helm kubectl,Install helm: https://helm.sh/docs/intro/install/)
	helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
	helm repo add grafana https://grafana.github.io/helm-charts --force-update
	helm repo add kedacore https://kedacore.github.io/charts --force-update
	helm repo add metrics-server https://kubernetes-sigs.github.io/metrics-server/ --force-update
	helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
		--version $(KUBE_PROMETHEUS_STACK_CHART_VERSION) --namespace monitoring --create-namespace \
		--values manifests/helm/kube-prometheus-stack-values.yaml --wait --timeout 10m
	helm upgrade --install tempo grafana/tempo --version $(TEMPO_CHART_VERSION) --namespace monitoring \
		--values manifests/helm/tempo-values.yaml --wait --timeout 5m
	helm upgrade --install keda kedacore/keda --version $(KEDA_CHART_VERSION) --namespace keda --create-namespace \
		--values manifests/helm/keda-values.yaml --wait --timeout 5m
	@if kubectl get apiservice v1beta1.metrics.k8s.io >/dev/null 2>&1; then echo "stack: metrics API present"; else \
		helm upgrade --install metrics-server metrics-server/metrics-server --version $(METRICS_SERVER_CHART_VERSION) \
		--namespace kube-system --values manifests/helm/metrics-server-values.yaml --wait --timeout 5m; fi

image: ## build the one image holding consumer, scaler and generator (IMAGE=autoscaling-lab:dev)
	$(call require,docker,Install Docker: https://docs.docker.com/engine/install/)
	docker build --tag $(IMAGE) .

image-load: ## make the image available to the cluster: kind/k3d/minikube load it; other contexts need PUSH=1 and a registry IMAGE
	$(call require,kubectl docker,Install kubectl and Docker.)
	@ctx=$$(kubectl config current-context 2>/dev/null || true); \
	need() { command -v "$$1" >/dev/null 2>&1 || { echo "make $@: context $$ctx needs $$1 to load the image, and it is missing" >&2; exit 127; }; }; \
	case "$$ctx" in \
		kind-*) need kind; kind load docker-image $(IMAGE) --name "$${ctx#kind-}";; \
		k3d-*) need k3d; k3d image import $(IMAGE) --cluster "$${ctx#k3d-}";; \
		minikube) need minikube; minikube image load $(IMAGE);; \
		docker-desktop|rancher-desktop|orbstack) echo "image-load: $$ctx uses the local image store";; \
		*) if [ -n "$(PUSH)" ]; then docker push $(IMAGE); else \
			echo "make $@: context '$$ctx' cannot see local images: run with IMAGE=<registry>/autoscaling-lab:<tag> PUSH=1" >&2; exit 2; fi;; \
	esac

kind-load: image-load ## alias of image-load

apply: ## apply manifests/overlays/$(OVERLAY) with image $(IMAGE) and wait for the consumer and scaler
	$(call require,kubectl,Install kubectl: https://kubernetes.io/docs/tasks/tools/)
	kubectl kustomize manifests/overlays/$(OVERLAY) | $(SET_IMAGE) | kubectl apply -f -
	kubectl -n $(NAMESPACE) rollout status deployment/scaler --timeout=180s
	kubectl -n $(NAMESPACE) rollout status deployment/consumer --timeout=180s

load-%: ## run a load-test Job: light medium heavy burst memory-stress cpu-stress sustained distributed chaos
	$(call require,kubectl,Install kubectl: https://kubernetes.io/docs/tasks/tools/)
	@case " $(LOAD_PROFILES) " in *" $* "*) ;; *) echo "make $@: unknown profile '$*'; one of: $(LOAD_PROFILES)" >&2; exit 2;; esac
	kubectl -n $(NAMESPACE) delete job load-test-$* --ignore-not-found
	$(SET_IMAGE) manifests/components/load-generator/job-$*.yaml | kubectl apply -f -
	@echo "follow: kubectl -n $(NAMESPACE) logs -f job/load-test-$*    scaling: make watch"

watch: ## watch the ScaledObject, HPAs, Deployment, pods and load jobs (k9s -n autoscaling-lab is nicer)
	$(call require,kubectl,Install kubectl: https://kubernetes.io/docs/tasks/tools/)
	kubectl -n $(NAMESPACE) get scaledobjects.keda.sh,horizontalpodautoscalers,deployments,jobs,pods -o wide --watch

grafana: ## port-forward Grafana to http://localhost:3000 (admin / autoscaling-lab)
	$(call require,kubectl,Install kubectl: https://kubernetes.io/docs/tasks/tools/)
	kubectl -n monitoring port-forward svc/grafana 3000:80

clean: ## remove the lab (namespace autoscaling-lab, its jobs included); keeps the helm stack and the cluster
	$(call require,kubectl,Install kubectl: https://kubernetes.io/docs/tasks/tools/)
	kubectl delete namespace $(NAMESPACE) --ignore-not-found --wait=true

clean-all: clean ## also uninstall the helm releases, and delete the kind/k3d cluster named $(KIND_CLUSTER) if there is one
	$(call require,helm kubectl,Install helm: https://helm.sh/docs/intro/install/)
	-helm uninstall keda --namespace keda
	-helm uninstall tempo --namespace monitoring
	-helm uninstall kube-prometheus-stack --namespace monitoring
	@if command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then kind delete cluster --name $(KIND_CLUSTER); fi
	@if command -v k3d >/dev/null 2>&1 && k3d cluster list $(KIND_CLUSTER) >/dev/null 2>&1; then k3d cluster delete $(KIND_CLUSTER); fi
