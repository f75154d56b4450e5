#!/usr/bin/env bash
# The stack `make dev` installs on the local cluster, each piece from its own project's manifests and built from the
# module under cluster/upstream/ (cluster/images.yaml maps their images to those builds):
#   KEDA 2.21.0: its module's config/default (CRDs, RBAC, operator, metrics adapter, admission webhooks), the images
#     set to the release tag as KEDA's release does, applied server-side;
#   metrics-server v0.8.0: its manifests/overlays/release, told the kubelet API's address type and CA (the cluster's);
#   prometheus-operator v0.85.0: its bundle.yaml (CRDs, operator), then a Prometheus selecting every ServiceMonitor,
#     PodMonitor and PrometheusRule (cluster/addons/prometheus.yaml).
#   the Kafka jars for the broker pod the kafka overlays get there (scripts/cluster/local_overlay.py), in a cache any
#     pod's user can read (/var/cache/autoscaling-lab; root's own cache is not readable by a non-root pod).
# Idempotent; waits until each answers. Usage: bash scripts/cluster/stack.sh [--kubeconfig FILE]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kubectl=(kubectl)
if [ "${1:-}" = "--kubeconfig" ]; then kubectl+=(--kubeconfig "$2"); fi
say() { printf 'stack: %s\n' "$*" >&2; }
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
module() { (cd "$root/cluster/upstream/$1" && go list -m -f "{{.$3}}" "$2"); }
render_filter() { python3 "$root/scripts/cluster/stack_filter.py" "$@"; }

keda_dir=$(module keda github.com/kedacore/keda/v2 Dir)
keda_version=$(module keda github.com/kedacore/keda/v2 Version)
say "KEDA ${keda_version} (from ${keda_dir}/config/default)"
"${kubectl[@]}" kustomize "$keda_dir/config/default" | render_filter keda "${keda_version#v}" \
  | "${kubectl[@]}" apply --server-side --force-conflicts -f - >/dev/null

ms_dir=$(module metrics-server sigs.k8s.io/metrics-server Dir)
ms_version=$(module metrics-server sigs.k8s.io/metrics-server Version)
say "metrics-server ${ms_version}"
"${kubectl[@]}" kustomize "$ms_dir/manifests/overlays/release" | render_filter metrics-server "$ms_version" \
  | "${kubectl[@]}" apply --server-side --force-conflicts -f - >/dev/null

po_dir=$(module prometheus-operator github.com/prometheus-operator/prometheus-operator Dir)
po_version=$(module prometheus-operator github.com/prometheus-operator/prometheus-operator Version)
say "prometheus-operator ${po_version} and a Prometheus for the lab"
"${kubectl[@]}" apply --server-side --force-conflicts -f "$po_dir/bundle.yaml" >/dev/null
"${kubectl[@]}" wait --for=condition=Established crd/prometheuses.monitoring.coreos.com --timeout=60s >/dev/null
"${kubectl[@]}" apply --server-side --force-conflicts -f "$root/cluster/addons/prometheus.yaml" >/dev/null

KAFKA_CACHE=/var/cache/autoscaling-lab/kafka-4.4.0 bash "$root/scripts/kafka/broker.sh" fetch
chmod -R a+rX /var/cache/autoscaling-lab

say "waiting for KEDA, metrics-server, prometheus-operator and Prometheus"
"${kubectl[@]}" -n keda rollout status deployment/keda-operator --timeout=180s >/dev/null
"${kubectl[@]}" -n keda rollout status deployment/keda-metrics-apiserver --timeout=180s >/dev/null
"${kubectl[@]}" -n keda rollout status deployment/keda-admission --timeout=180s >/dev/null
"${kubectl[@]}" -n kube-system rollout status deployment/metrics-server --timeout=180s >/dev/null
"${kubectl[@]}" -n default rollout status deployment/prometheus-operator --timeout=180s >/dev/null
for api in v1beta1.external.metrics.k8s.io v1beta1.metrics.k8s.io; do
  "${kubectl[@]}" wait --for=condition=Available "apiservice/$api" --timeout=180s >/dev/null
done
for _ in $(seq 1 90); do
  "${kubectl[@]}" -n monitoring get statefulset prometheus-lab >/dev/null 2>&1 && break
  sleep 1
done
"${kubectl[@]}" -n monitoring rollout status statefulset/prometheus-lab --timeout=180s >/dev/null
say "ok: KEDA ${keda_version}, metrics-server ${ms_version}, prometheus-operator ${po_version}, Prometheus v3.5.0"
