# Pinned Helm charts installed by `make dev` (included by the Makefile). Bump them together with the CRD
# fixtures the tests validate against (KEDA v2.20.2, prometheus-operator v0.93.0).
KEDA_CHART_VERSION ?= 2.20.2
KUBE_PROMETHEUS_STACK_CHART_VERSION ?= 88.0.0
TEMPO_CHART_VERSION ?= 1.23.3
METRICS_SERVER_CHART_VERSION ?= 3.13.0
