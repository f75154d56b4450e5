#!/usr/bin/env bash
# Consumer benchmark: figures, not a gate. In one run, with wrk (Debian) and 64 connections:
#   1. req/s of GET /health and POST /load/cpu {"duration_ms":1}: consumer vs a minimal axum hello-world (ratio)
#   2. the counting allocator's cost: consumer built with and without it (GET /health and GET /metrics req/s)
#   3. /health p99 while sustained load burns every core
#   4. CPU burn accuracy: requested vs measured CPU seconds (self-reported and from /proc)
#   5. memory accuracy: requested vs resident change (from /proc), and release time
# Servers run pinned to CPU 0 and wrk to CPU 1 for the throughput runs (so the tool never steals the server's core).
# Env: DURATION (seconds per wrk run, default 10), CONNECTIONS (default 64), SKIP_BUILD=1 to reuse binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk python3 taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk python3 util-linux curl)"; exit 1; }
done
CORES="$(nproc)"
SERVER_CPU=0
TOOL_CPU=$(( CORES > 1 ? 1 : 0 ))

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building (release): consumer without the counting allocator, then with it, and the hello-world baseline"
  cargo build --release --quiet -p consumer --bin consumer --no-default-features
  cp "$TARGET_DIR/release/consumer" "$WORK/consumer-noalloc"
  cargo build --release --quiet -p consumer --bin consumer --example hello
else
  cp "$TARGET_DIR/release/consumer" "$WORK/consumer-noalloc"  # SKIP_BUILD: no separate no-allocator binary
fi
CONSUMER="$TARGET_DIR/release/consumer"
HELLO="$TARGET_DIR/release/examples/hello"

# start_server NAME CPU_LIST COMMAND... ; sets ADDR and PID of the server (reads its `listening` line).
start_server() {
  local name="$1" cpus="$2"; shift 2
  local log="$WORK/$name.log"
  taskset -c "$cpus" "$@" >"$log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  ADDR=""
  for _ in $(seq 1 200); do
    ADDR="$(python3 - "$log" <<'PY'
import json, re, sys
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"listening (\S+)", line)
    if m:
        print(m.group(1)); break
    try:
        event = json.loads(line)
    except ValueError:
        continue
    fields = event.get("fields", {})
    if fields.get("message") == "listening" and fields.get("kind") == "http":
        print(fields["addr"]); break
PY
)"
    [[ -n "$ADDR" ]] && break
    sleep 0.05
  done
  [[ -n "$ADDR" ]] || { echo "$name did not start:"; cat "$log"; exit 1; }
}
stop_server() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

cat >"$WORK/cpu.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"duration_ms":1}'
wrk.headers["Content-Type"] = "application/json"
LUA

# wrk_run URL [LUA] -> prints "rps p50_ms p99_ms"
wrk_run() {
  local url="$1" script="${2:-}"
  local args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
  [[ -n "$script" ]] && args+=(-s "$script")
  taskset -c "$TOOL_CPU" wrk "${args[@]}" "$url" >"$WORK/wrk.out" 2>&1
  python3 - "$WORK/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {ms(*p50.groups()):.3f} {ms(*p99.groups()):.3f} {errors.group(1) if errors else 0}")
PY
}

ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }

echo "== machine: $CORES cores; servers on CPU $SERVER_CPU, wrk on CPU $TOOL_CPU; $CONNECTIONS connections, ${DURATION}s per run"

# 1 + 2: throughput, hello vs consumer, allocator on vs off.
start_server hello "$SERVER_CPU" "$HELLO" 0
read -r H_RPS H_P50 H_P99 _ < <(wrk_run "http://$ADDR/health")
read -r HC_RPS HC_P50 HC_P99 HC_ERR < <(wrk_run "http://$ADDR/load/cpu" "$WORK/cpu.lua")
stop_server "$PID"

start_server consumer "$SERVER_CPU" "$CONSUMER" --host 127.0.0.1 --port 0 --queue-size 100000
read -r C_RPS C_P50 C_P99 _ < <(wrk_run "http://$ADDR/health")
read -r CC_RPS CC_P50 CC_P99 CC_ERR < <(wrk_run "http://$ADDR/load/cpu" "$WORK/cpu.lua")
read -r CM_RPS _ _ _ < <(wrk_run "http://$ADDR/metrics")
stop_server "$PID"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  start_server consumer-noalloc "$SERVER_CPU" "$WORK/consumer-noalloc" --host 127.0.0.1 --port 0 --queue-size 100000
  read -r N_RPS _ _ _ < <(wrk_run "http://$ADDR/health")
  read -r NM_RPS _ _ _ < <(wrk_run "http://$ADDR/metrics")
  stop_server "$PID"
fi

echo
echo "-- 1. per-request overhead vs bare axum (consumer / hello; target >= 0.90)"
printf "   GET /health                   hello %8s req/s (p99 %s ms)   consumer %8s req/s (p99 %s ms)   ratio %s\n" \
  "$H_RPS" "$H_P99" "$C_RPS" "$C_P99" "$(ratio "$C_RPS" "$H_RPS")"
printf "   POST /load/cpu duration_ms=1  hello %8s req/s (p99 %s ms)   consumer %8s req/s (p99 %s ms)   ratio %s   (non-2xx: hello %s, consumer %s)\n" \
  "$HC_RPS" "$HC_P99" "$CC_RPS" "$CC_P99" "$(ratio "$CC_RPS" "$HC_RPS")" "$HC_ERR" "$CC_ERR"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "-- 2. counting allocator cost (with / without)"
  printf "   GET /health    with %8s req/s   without %8s req/s   ratio %s\n" "$C_RPS" "$N_RPS" "$(ratio "$C_RPS" "$N_RPS")"
  printf "   GET /metrics   with %8s req/s   without %8s req/s   ratio %s\n" "$CM_RPS" "$NM_RPS" "$(ratio "$CM_RPS" "$NM_RPS")"
fi

# 3: /health p99 while sustained load burns every core (server on every core, wrk shares them).
start_server consumer "0-$((CORES - 1))" "$CONSUMER" --host 127.0.0.1 --port 0 --max-sustained-workers 64
BASE="http://$ADDR"
workers=0
while (( workers < CORES * 2 )); do
  batch=$(( CORES * 2 - workers )); (( batch > 4 )) && batch=4
  curl -sf -X POST "$BASE/load/cpu/sustained" -d "{\"workers\":$batch,\"duration_seconds\":$((DURATION + 20))}" >/dev/null
  workers=$(( workers + batch ))
done
sleep 1
LOAD_BEFORE="$(cut -d' ' -f1 /proc/loadavg)"
args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
wrk "${args[@]}" "$BASE/health" >"$WORK/wrk.out" 2>&1
read -r S_RPS S_P50 S_P99 < <(python3 - "$WORK/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"{rps:.0f} {ms(*re.search(r'50%\s+([\d.]+)(us|ms|s)', text).groups()):.3f} {ms(*re.search(r'99%\s+([\d.]+)(us|ms|s)', text).groups()):.3f}")
PY
)
BURN_CPU="$(curl -sf "$BASE/metrics" | awk '/^consumer_cpu_burn_seconds_total /{print $2}')"
curl -sf -X POST "$BASE/load/cpu/sustained/stop" >/dev/null
stop_server "$PID"
echo "-- 3. /health under saturation ($((CORES * 2)) sustained workers on $CORES cores; target p99 < 10 ms)"
printf "   GET /health  %s req/s  p50 %s ms  p99 %s ms   (burners used %s CPU s meanwhile; loadavg %s)\n" "$S_RPS" "$S_P50" "$S_P99" "$BURN_CPU" "$LOAD_BEFORE"

# 4 + 5: accuracy, on an otherwise idle consumer.
start_server consumer "0-$((CORES - 1))" "$CONSUMER" --host 127.0.0.1 --port 0
BASE="http://$ADDR"
proc_cpu() { python3 -c "import os; f=open('/proc/$1/stat').read().rsplit(')',1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))"; }
rss() { awk '/^VmRSS:/{print $2 * 1024}' "/proc/$1/status"; }
echo "-- 4. CPU burn accuracy (target within 5 %)"
for ms in 200 1000 3000; do
  before="$(proc_cpu "$PID")"
  reported="$(curl -sf -X POST "$BASE/load/cpu" -d "{\"duration_ms\":$ms}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["cpu_seconds"])')"
  after="$(proc_cpu "$PID")"
  python3 -c "
req=$ms/1000; rep=$reported; proc=$after-$before
print(f'   requested {req:6.3f} s   self-reported {rep:6.3f} s ({(rep/req-1)*100:+.2f} %)   process CPU from /proc {proc:6.3f} s ({(proc/req-1)*100:+.2f} %, 10 ms ticks, includes the server)')"
done

echo "-- 5. memory accuracy (target within 5 %) and release time"
for mb in 128 512 1024; do
  base_rss="$(rss "$PID")"
  curl -sf -X POST "$BASE/load/memory" -d "{\"size_mb\":$mb,\"duration_ms\":1500}" >"$WORK/mem.json" &
  curl_pid=$!
  peak=0
  for _ in $(seq 1 300); do           # bounded: at most ~6 s of 20 ms samples
    now="$(rss "$PID")"; (( now > peak )) && peak=$now
    kill -0 "$curl_pid" 2>/dev/null || break
    sleep 0.02
  done
  wait "$curl_pid"
  after_rss="$(rss "$PID")"
  python3 - "$WORK/mem.json" "$mb" "$base_rss" "$peak" "$after_rss" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))["result"]
mb, base, peak, after = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
size = mb << 20
observed = peak - base
print(f"   {mb:5d} MiB: resident change from /proc {observed / 2**20:8.1f} MiB ({(observed / size - 1) * 100:+.2f} %)"
      f"   self-reported {report['rss_delta_bytes'] / 2**20:8.1f} MiB   touch {report['touch_seconds'] * 1000:6.1f} ms"
      f"   release {report['release_seconds'] * 1000:6.1f} ms   resident after release {(after - base) / 2**20:+.1f} MiB vs before")
PY
done
stop_server "$PID"
echo
echo "(commands: bash bench/consumer/run.sh; DURATION=$DURATION CONNECTIONS=$CONNECTIONS)"
