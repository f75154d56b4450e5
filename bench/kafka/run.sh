#!/usr/bin/env bash
# Kafka producer benchmark: figures, not a gate. One real broker (scripts/kafka/broker.sh, KRaft, 127.0.0.1 free ports)
# and, in one run against it with the same topic (4 partitions), record size (1 KiB value) and acks (all, then 1):
#   1. throughput: `generator produce` unthrottled vs Kafka's own ProducerPerformance (`--throughput -1`), same record
#      count: records/s, MB/s, ratio;
#   2. rate accuracy at 10,000 msg/s: achieved rate and its error vs the asked rate, worst 1 s window, ack p50/p99;
#   3. memory: `generator produce` over 1,000,000 messages at 10,000/s, RSS sampled each second from /proc.
# The broker runs pinned to CPU 0 and every producer to CPU 1 (two cores); ROUNDS rounds, the median goes in the table.
# Prints a markdown table, also written to bench/kafka/results/latest.md (+ latest.json). bench/kafka/README.md: method.
# Env: ROUNDS (default 3), RECORDS (throughput runs, default 1000000), RECORD_SIZE (bytes, default 1024), ACKS ("all 1"),
#      RATE (default 10000), RATE_RECORDS (default 100000), MEMORY_RECORDS (default 1000000; 0 skips the memory run),
#      MEMORY_RATE (default 10000), WARMUP_RECORDS (per tool, not counted, default 500000), PARTITIONS (default 4), PIN=0 to let the OS place broker and producers,
#      LINGER_MS (5) and BATCH_BYTES (16384) for both tools, SKIP_BUILD=1 to reuse target/release/generator, OUT_DIR (default bench/kafka/results).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export ROOT PARTITIONS="${PARTITIONS:-4}"

for tool in java mvn python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (bash scripts/setup.sh; util-linux for taskset)"; exit 1; }
done

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building (release): generator" >&2
  cargo build --release --quiet -p generator
fi
export GENERATOR_BIN="$TARGET_DIR/release/generator"
[ -x "$GENERATOR_BIN" ] || { echo "no $GENERATOR_BIN (run without SKIP_BUILD=1)"; exit 1; }

BROKER_CPU="" TOOL_CPU=""
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  BROKER_CPU=0 TOOL_CPU=1
fi
export BROKER_CPU TOOL_CPU

WORK="$(mktemp -d -t kafka-bench.XXXXXX)"
export BROKER_DIR="$WORK/broker" BENCH_WORK="$WORK"
# The broker is stopped on every way out: normal end, a failed step (set -e), Ctrl-C or a TERM.
PY_PID=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  if [ -n "$PY_PID" ]; then kill -TERM "$PY_PID" 2>/dev/null || true; wait "$PY_PID" 2>/dev/null || true; fi
  bash scripts/kafka/broker.sh stop "$BROKER_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/kafka/broker.sh fetch
pin_broker=()
[ -n "$BROKER_CPU" ] && pin_broker=(taskset -c "$BROKER_CPU")
echo "== starting the broker${BROKER_CPU:+ on CPU $BROKER_CPU} in $BROKER_DIR" >&2
# The JVM inherits the affinity of the taskset'd script (a pinned process's children stay pinned).
BOOTSTRAP="$("${pin_broker[@]}" bash scripts/kafka/broker.sh start "$BROKER_DIR" | sed -n 's/^bootstrap=//p')"
[ -n "$BOOTSTRAP" ] || { echo "the broker did not start"; exit 1; }
BROKER_PID="$(cat "$BROKER_DIR/pid")"
export BOOTSTRAP BROKER_PID
# Retention by size keeps the runs' gigabytes from piling up on disk (the broker deletes closed segments every 5 min).
bash scripts/kafka/broker.sh topics "$BROKER_DIR" --create --topic bench --partitions "$PARTITIONS" \
  --replication-factor 1 --config retention.bytes=268435456 >/dev/null

echo "== Kafka producer benchmark on $(nproc) cores, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >&2
# In the background and waited for: a trapped signal interrupts `wait` at once (not a foreground child).
python3 "$ROOT/bench/kafka/bench.py" &
PY_PID=$!
rc=0
wait "$PY_PID" || rc=$?
PY_PID=""
exit "$rc"
