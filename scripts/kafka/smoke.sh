#!/usr/bin/env bash
# End-to-end check of scripts/kafka/broker.sh on a real broker: start in a temp dir, create a 4-partition topic,
# produce with ProducerPerformance, consume with a consumer group (ConsumerPerformance), check the group's committed
# offsets and lag with ConsumerGroupCommand (kafka-consumer-groups), produce more and check the lag follows. The EXIT
# trap stops the broker, so no JVM outlives the script. Usage: bash scripts/kafka/smoke.sh [MESSAGES]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
broker="$here/broker.sh"
messages=${1:-10000}
extra=500
partitions=4
topic=smoke
group=smoke-group

dir=$(mktemp -d "${TMPDIR:-/tmp}/kafka-smoke.XXXXXX")
cleanup() {
  local rc=$?
  bash "$broker" stop "$dir" || true
  if [ "$rc" -ne 0 ] && [ -f "$dir/server.log" ]; then
    echo "smoke: failed (rc=$rc); broker errors and warnings:" >&2
    grep -E '\] (ERROR|WARN) ' "$dir/server.log" | tail -n 20 >&2 || true
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf 'smoke: %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

t0=$SECONDS
bash "$broker" fetch
bash "$broker" start "$dir"
say "broker ready after $((SECONDS - t0))s"

bash "$broker" topics "$dir" --create --topic "$topic" --partitions "$partitions" --replication-factor 1 >/dev/null
described=$(bash "$broker" topics "$dir" --describe --topic "$topic")
[ "$(grep -c 'Partition: ' <<<"$described")" -eq "$partitions" ] || fail "topic has not $partitions partitions: $described"

produce() {
  local n=$1 out
  # Keys over a range spread records over all partitions; acks=all waits for the (only) replica.
  out=$(bash "$broker" perf "$dir" --topic "$topic" --num-records "$n" --record-size 100 --throughput -1 \
    --record-key-range 1000 --key-distribution random --command-property acks=all linger.ms=5 2>&1) || true
  grep -q "^$n records sent" <<<"$out" || fail "producer did not report $n records sent: $out"
  tail -n 1 <<<"$out" >&2
}

# Prints "partitions current_sum end_sum lag_sum" for the group on the topic, from kafka-consumer-groups --describe.
group_offsets() {
  bash "$broker" groups "$dir" --describe --group "$group" 2>/dev/null | awk -v t="$topic" '
    $1 == "GROUP" { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $(col["TOPIC"]) == t {
      n++; cur += $(col["CURRENT-OFFSET"]); end += $(col["LOG-END-OFFSET"]); lag += $(col["LAG"])
    }
    END { printf "%d %d %d %d\n", n, cur, end, lag }'
}

produce "$messages"

out=$(bash "$broker" consume-perf "$dir" --topic "$topic" --group "$group" --num-records "$messages" \
  --timeout 30000 --hide-header 2>&1) || fail "consumer failed: $out"
consumed=$(awk -F', *' 'NF > 5 { print $5 }' <<<"$out" | tail -n 1)
[ "$consumed" = "$messages" ] || fail "consumer read '${consumed}' records, expected $messages: $out"
say "consumed $consumed records in group $group"

read -r n cur end lag < <(group_offsets)
say "after consume: partitions=$n committed=$cur log-end=$end lag=$lag"
[ "$n" -eq "$partitions" ] || fail "group has offsets for $n partitions, expected $partitions"
[ "$end" -eq "$messages" ] || fail "log-end offsets sum to $end, expected $messages"
[ "$cur" -eq "$messages" ] || fail "committed offsets sum to $cur, expected $messages"
[ "$lag" -eq 0 ] || fail "lag is $lag after consuming everything"

# The lag must follow new records the group has not read: the figure a lag-based scaler acts on.
produce "$extra"
read -r n cur end lag < <(group_offsets)
say "after $extra more: partitions=$n committed=$cur log-end=$end lag=$lag"
[ "$end" -eq $((messages + extra)) ] || fail "log-end offsets sum to $end, expected $((messages + extra))"
[ "$cur" -eq "$messages" ] || fail "committed offsets moved to $cur without a consumer"
[ "$lag" -eq "$extra" ] || fail "lag is $lag, expected $extra"

say "ok in $((SECONDS - t0))s"
echo "1 passed, 0 failed"
