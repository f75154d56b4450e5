# The autoscaling lab. `make demo` runs the lab on this machine; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help setup test demo lint bench

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## install what the lab and its tests need (idempotent)
	@bash scripts/setup.sh

demo: setup ## build in release mode and run the cluster-free lab (scaler + consumer replicas + HPA logic)
	$(CARGO) build --release -p consumer -p scaler -p generator
	./target/release/generator lab --test demo

test: setup ## run every test: Rust (unit + integration, real Prometheus/OTLP/gRPC) and Python (wire, manifests, dashboards)
	$(CARGO) test --workspace --all-targets
	python3 -m pytest -q tests/python

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: ## run the benchmarks under bench/ (figures, not a gate)
	@bash scripts/setup.sh --bench
	@for b in bench/*/run.sh; do echo "== $$b"; bash $$b || exit 1; done
