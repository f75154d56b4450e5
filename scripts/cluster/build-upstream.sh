#!/usr/bin/env bash
# Builds the local cluster's upstream binaries from the Go modules under cluster/upstream/ (the one place their versions
# are pinned) into a cache outside the repo, one directory per component, version and go.sum, so a second run builds
# nothing. Prints the bin directory on stdout. Usage: bash scripts/cluster/build-upstream.sh [--print-dir]
#   LAB_CLUSTER_CACHE  where built binaries are kept (default ~/.cache/autoscaling-lab/cluster)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
upstream="$root/cluster/upstream"
cache="${LAB_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autoscaling-lab/cluster}"
bin="$cache/bin"
say() { printf 'cluster build: %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { say "go is missing: install Go 1.26 (apt-get install golang-go, or https://go.dev/dl/)"; exit 127; }
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0

# version MODULE_DIR GO_MODULE: the version go.mod pins for that upstream module.
version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }
# The cache key: the version and the go.sum, so a dependency change rebuilds too.
key() { printf '%s-%s' "$1" "$(sha256sum "$2/go.sum" | cut -c1-12)"; }

# build NAME DIR KEY PKG...: build the packages' commands into $cache/NAME-KEY unless they are there, link into bin/.
# A PKG written BINARY=PKG is built under that name (several upstreams call their command `operator`).
build() {
  local name=$1 dir=$2 k=$3; shift 3
  local out="$cache/$name-$k"
  if [ -f "$out/.complete" ]; then
    :
  else
    say "building $name $k (cold: minutes; cached afterwards in $out)"
    local started=$SECONDS
    rm -rf "$out.partial" && mkdir -p "$out.partial"
    local plain=() pkg
    for pkg in "$@"; do
      case "$pkg" in
        *=*) (cd "$dir" && go build -trimpath -ldflags "-s -w ${LDFLAGS:-}" -o "$out.partial/${pkg%%=*}" "${pkg#*=}");;
        *) plain+=("$pkg");;
      esac
    done
    if [ "${#plain[@]}" -gt 0 ]; then
      (cd "$dir" && go build -trimpath -ldflags "-s -w ${LDFLAGS:-}" -o "$out.partial/" "${plain[@]}")
    fi
    touch "$out.partial/.complete"
    rm -rf "$out" && mv "$out.partial" "$out"
    say "built $name in $((SECONDS - started)) s"
  fi
  mkdir -p "$bin"
  local f
  for f in "$out"/*; do ln -sfn "$f" "$bin/$(basename "$f")"; done
}

k8s_dir="$upstream/kubernetes"
k8s_version=$(version "$k8s_dir" k8s.io/kubernetes)
k8s_minor=$(printf '%s' "$k8s_version" | cut -d. -f2)
# Without these, /version says v0.0.0-master and kubectl version fails (MACHINE-NOTES).
LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  LDFLAGS+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
LDFLAGS="$LDFLAGS" build kubernetes "$k8s_dir" "$(key "$k8s_version" "$k8s_dir")" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy

etcd_dir="$upstream/etcd"
LDFLAGS="" build etcd "$etcd_dir" "$(key "$(version "$etcd_dir" go.etcd.io/etcd/server/v3)" "$etcd_dir")" .

coredns_dir="$upstream/coredns"
LDFLAGS="" build coredns "$coredns_dir" "$(key "$(version "$coredns_dir" github.com/coredns/coredns)" "$coredns_dir")" \
  github.com/coredns/coredns

keda_dir="$upstream/keda"
keda_version=$(version "$keda_dir" github.com/kedacore/keda/v2)
LDFLAGS="-X github.com/kedacore/keda/v2/version.Version=$keda_version" build keda "$keda_dir" "$(key "$keda_version" "$keda_dir")" \
  keda=github.com/kedacore/keda/v2/cmd/operator keda-adapter=github.com/kedacore/keda/v2/cmd/adapter \
  keda-admission-webhooks=github.com/kedacore/keda/v2/cmd/webhooks

ms_dir="$upstream/metrics-server"
ms_version=$(version "$ms_dir" sigs.k8s.io/metrics-server)
LDFLAGS="-X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$ms_version" build metrics-server "$ms_dir" \
  "$(key "$ms_version" "$ms_dir")" sigs.k8s.io/metrics-server/cmd/metrics-server

po_dir="$upstream/prometheus-operator"
po_version=$(version "$po_dir" github.com/prometheus-operator/prometheus-operator)
LDFLAGS="-X github.com/prometheus/common/version.Version=${po_version#v}" build prometheus-operator "$po_dir" \
  "$(key "$po_version" "$po_dir")" \
  prometheus-operator=github.com/prometheus-operator/prometheus-operator/cmd/operator \
  prometheus-config-reloader=github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader

# Prometheus with its service discoveries (Debian's package lacks the kubernetes one the operator's configuration uses).
# Built without the web UI's assets (they need Prometheus' own npm build): the API, the targets and the rules work;
# the graph page does not.
prom_dir="$upstream/prometheus"
prom_version=$(version "$prom_dir" github.com/prometheus/prometheus)
# Go module v0.305.0 is Prometheus v3.5.0.
prom_release=$(printf '%s' "$prom_version" | sed -E 's/^v0\.([0-9])([0-9]{2})\.([0-9]+)$/\1.\2.\3/; s/\.0([0-9])\./.\1./')
LDFLAGS="-X github.com/prometheus/common/version.Version=$prom_release" build prometheus "$prom_dir" \
  "$(key "$prom_version" "$prom_dir")" github.com/prometheus/prometheus/cmd/prometheus

printf '%s\n' "$bin"
