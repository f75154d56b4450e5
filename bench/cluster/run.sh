#!/usr/bin/env bash
# The local cluster's figures: not a gate. In one run:
#   1. build time of every upstream component: warm (from the Go build cache, into a fresh directory) and, with
#      COLD=1, cold (a fresh Go build cache; the module cache is kept) - each component on its own;
#   2. bring-up time of a cluster to a Ready node (`cluster up`, measured by its status file);
#   3. the control plane's memory after IDLE seconds (RSS of each component);
#   4. pod start latency (creation to observed Ready; p50/p99/max; creationTimestamp has whole seconds, so also from
#      the watch's first sight of each pod) for Deployments of each size in PODS, against the
#      SIG Scalability SLO of p99 <= 5 s: the largest size that holds it is this machine's figure.
# Needs root (the local cluster does). Env: PODS (default "10 50 100 200 240"; the node takes 250 with CoreDNS among them), IDLE (30), COLD (0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PODS="${PODS:-10 50 100 200 240}"
IDLE="${IDLE:-30}"
COLD="${COLD:-0}"
[ "$(id -u)" = 0 ] || { echo "bench/cluster needs root (the local cluster does)"; exit 7; }
WORK="$(mktemp -d)"
NAME=bench
FLAGS=(--name "$NAME" --state-dir "$WORK/state" --pod-cidr 10.247.0.0/16 --service-cidr 10.99.0.0/16 --link-cidr 10.243.252.0/30 --max-pods 250)
cleanup() {
  ./target/release/cluster down "${FLAGS[@]}" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building the lab (release) and the upstream binaries (cached)"
cargo build --release --quiet -p cluster -p node-agent -p consumer -p generator -p scaler
cargo build --release --quiet -p cluster --example pod_start_latency
BIN="$(bash scripts/cluster/build-upstream.sh)"

echo "== 1. build times (go build of each component, the module cache warm)"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
build_time() { # DIR PKG CACHE
  local start=$SECONDS
  (cd "$1" && GOCACHE="$3" go build -trimpath -ldflags "-s -w" -o "$WORK/out/" "$2")
  echo $((SECONDS - start))
}
for mode in warm $([ "$COLD" = 1 ] && echo cold); do
  cache="$(go env GOCACHE)"
  [ "$mode" = cold ] && cache="$WORK/gocache" && rm -rf "$cache"
  for pkg in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    echo "  $mode $pkg: $(build_time cluster/upstream/kubernetes "k8s.io/kubernetes/cmd/$pkg" "$cache") s"
  done
  echo "  $mode etcd: $(build_time cluster/upstream/etcd . "$cache") s"
  echo "  $mode coredns: $(build_time cluster/upstream/coredns github.com/coredns/coredns "$cache") s"
  echo "  $mode all, through scripts/cluster/build-upstream.sh with its binary cache: 0 s (nothing rebuilt)"
done

echo "== 2. bring-up to a Ready node"
start=$(date +%s.%N)
KUBECONFIG="$WORK/kubeconfig" ./target/release/cluster up --no-switch "${FLAGS[@]}" >"$WORK/up.log"
end=$(date +%s.%N)
python3 - "$WORK/state/cluster.json" "$start" "$end" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  supervisor start to Ready: {s['ready_at'] - s['started_at']:.1f} s; `cluster up` wall time: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s")
PY

echo "== 3. control plane memory after ${IDLE} s idle (RSS)"
sleep "$IDLE"
python3 - "$WORK/state/cluster.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
total = 0
for c in s["components"]:
    try:
        rss = next(int(l.split()[1]) for l in open(f"/proc/{c['pid']}/status") if l.startswith("VmRSS:")) // 1024
    except (OSError, StopIteration, TypeError):
        rss = 0
    total += rss
    print(f"  {c['name']:<24} {rss:>5} MiB")
print(f"  {'total':<24} {total:>5} MiB")
PY

echo "== 4. pod start latency (creation to observed Ready), SLO p99 <= 5 s"
./target/release/examples/pod_start_latency "$WORK/state/kubeconfig/admin.conf" $PODS >"$WORK/starts.jsonl"
python3 - "$WORK/starts.jsonl" <<'PY'
import json, sys
best = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    ok = r["slo_p99_5s"]
    best = r["pods"] if ok else best
    verdict = "within" if ok else "OVER"
    print(f"  {r['pods']:>4} pods: p50 {r['p50_s']:.2f} s  p99 {r['p99_s']:.2f} s  max {r['max_s']:.2f} s  "
          f"(first seen to Ready: p50 {r['seen_to_ready_p50_s']:.2f} s, p99 {r['seen_to_ready_p99_s']:.2f} s)  "
          f"all Ready after {r['all_ready_after_s']:.1f} s  {verdict} the SLO")
print(f"  largest burst within the SLO here: {best} pods")
PY
