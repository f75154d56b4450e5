#!/usr/bin/env bash
# A real Apache Kafka broker for tests, the lab and benchmarks: KRaft, one node (broker + controller), 127.0.0.1 only,
# run from the official Maven Central jars (no distribution tarball, no Docker). Idempotent subcommands:
#
#   broker.sh fetch                 resolve the jars into the cache (skipped when already complete)
#   broker.sh start DIR             format storage under DIR, start, wait until ready; prints `bootstrap=127.0.0.1:PORT`
#   broker.sh stop DIR              SIGTERM, bounded wait, SIGKILL; never leaves the JVM running
#   broker.sh resume DIR            start the stopped broker in DIR again: same ports, same data; wait until ready
#   broker.sh status DIR            exit 0 when the broker in DIR is running
#   broker.sh perf DIR ARGS...      org.apache.kafka.tools.ProducerPerformance against the broker in DIR
#   broker.sh consume-perf DIR ARGS...  org.apache.kafka.tools.ConsumerPerformance against the broker in DIR
#   broker.sh topics DIR ARGS...    org.apache.kafka.tools.TopicCommand (kafka-topics)
#   broker.sh groups DIR ARGS...    org.apache.kafka.tools.consumer.group.ConsumerGroupCommand (kafka-consumer-groups)
#   broker.sh run DIR CLASS ARGS... any main class from the cache; DIR/client.properties names the broker
#   broker.sh classpath             print the classpath (for callers that start their own JVM)
#   broker.sh serve DIR             in the foreground, as a pod of the local cluster: listen on KAFKA_LISTEN_HOST
#                                   (default 0.0.0.0) port 9092, advertise KAFKA_ADVERTISED (host:port), create
#                                   KAFKA_TOPICS (`name:partitions,...`) once ready, stop with the JVM on SIGTERM
#
# The tool subcommands pass the broker's address with --bootstrap-server before ARGS.
# `start` always gives a fresh, empty broker (DIR's data is wiped) unless one already runs in DIR, which it reuses.
# Environment: KAFKA_CACHE (jar cache), KAFKA_HEAP_OPTS (broker heap, default -Xms128m -Xmx512m),
# KAFKA_JVM_OPTS (broker GC/JIT flags, default -XX:+UseG1GC -XX:MaxGCPauseMillis=20),
# KAFKA_TOOL_HEAP_OPTS (tools, default -Xmx256m), KAFKA_READY_TIMEOUT (seconds, default 60),
# KAFKA_STOP_TIMEOUT (seconds, default 30), KAFKA_NUM_PARTITIONS (default 4), MAVEN_ARGS (extra arguments for mvn).
set -euo pipefail

# Pinned: the newest 4.x on Maven Central that resolves and runs on this machine's Java 17 (its class files are Java 17).
KAFKA_VERSION=4.4.0
# Kafka logs through slf4j 1.7; the distribution ships this binding, the Maven poms do not pull it in.
LOG4J_VERSION=2.25.5
SCALA_BINARY=2.13

CACHE=${KAFKA_CACHE:-${HOME}/.cache/autoscaling-lab/kafka-${KAFKA_VERSION}}
LIBS="$CACHE/libs"
MARKER="$CACHE/complete"

say() { printf 'broker.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

fetch() {
  if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$KAFKA_VERSION" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian: apt-get install -y maven)"
  command -v java >/dev/null 2>&1 || die "java not found (Debian: apt-get install -y openjdk-17-jre-headless)"
  mkdir -p "$CACHE"
  say "fetching Apache Kafka $KAFKA_VERSION jars into $CACHE (Maven)"
  # A throwaway pom whose only purpose is the dependency list; copy-dependencies flattens the runtime closure.
  cat >"$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>autoscaling-lab</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$SCALA_BINARY</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$LIBS.tmp"
  # shellcheck disable=SC2086 # MAVEN_ARGS is a list of words on purpose
  if ! mvn -B -q -f "$CACHE/pom.xml" ${MAVEN_ARGS:-} dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$CACHE/fetch.log" 2>&1; then
    tail -n 30 "$CACHE/fetch.log" >&2
    die "Maven could not resolve Kafka $KAFKA_VERSION (log: $CACHE/fetch.log)"
  fi
  if [ ! -f "$LIBS.tmp/kafka_$SCALA_BINARY-$KAFKA_VERSION.jar" ] || [ ! -f "$LIBS.tmp/kafka-tools-$KAFKA_VERSION.jar" ]; then
    die "Maven finished but the Kafka jars are missing from $LIBS.tmp"
  fi
  rm -rf "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
  printf '%s\n' "$KAFKA_VERSION" >"$MARKER"
  say "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$LIBS" | cut -f1)"
}

classpath() { fetch; printf '%s/*' "$LIBS"; }

# Two distinct free ports on 127.0.0.1, held open together so they cannot be the same one.
free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.
# A random cluster id in Kafka's spelling (URL-safe base64 of 16 bytes). Like Kafka's own Uuid.randomUuid, never one
# that starts with '-': the storage tool's argument parser would read it as a flag (1 start in 64 failed that way).
cluster_id() {
  python3 -c '
import base64, os
while True:
    text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not text.startswith("-"):
        print(text)
        break'
}

# Ready = the broker answers ApiVersions and a Metadata request that lists at least one broker. Speaks the wire
# protocol directly so the wait does not pay a JVM start per poll. Exit 0 ready, 1 not yet.
probe() {
  python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])

def call(sock, api_key, version, corr, body):
    client = b"probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv(sock, 4))[0]
    data = recv(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise RuntimeError("correlation id mismatch")
    return data[4:]

def recv(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf

try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.settimeout(2)
        # ApiVersions v0: every broker answers it, whatever versions it supports.
        data = call(s, 18, 0, 1, b"")
        err, n = struct.unpack(">hi", data[:6])
        if err != 0:
            sys.exit(1)
        ranges = {}
        for i in range(n):
            k, lo, hi = struct.unpack(">hhh", data[6 + 6 * i: 12 + 6 * i])
            ranges[k] = (lo, hi)
        lo, hi = ranges[3]
        # The oldest non-flexible Metadata version the broker still takes (v1..v8 share the encoding below).
        v = max(lo, 1)
        if v > 8 or v > hi:
            sys.exit(1)
        body = struct.pack(">i", -1)            # topics: null = all
        if v >= 4:
            body += b"\x00"                       # allow_auto_topic_creation
        if v >= 8:
            body += b"\x00\x00"                   # include_{cluster,topic}_authorized_operations
        data = call(s, 3, v, 2, body)
        off = 4 if v >= 3 else 0                  # throttle_time_ms
        brokers = struct.unpack(">i", data[off:off + 4])[0]
        sys.exit(0 if brokers > 0 else 1)
except (OSError, RuntimeError, struct.error, KeyError):
    sys.exit(1)
PY
}

# The pid in DIR/pid, if that process is alive and is this DIR's broker (a recycled pid must never be signalled).
live_pid() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 1
  pid=$(cat "$dir/pid")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$dir/server.properties" || return 1
  printf '%s\n' "$pid"
}

write_configs() {
  local dir=$1 bport=$2 cport=$3 host=${4:-127.0.0.1} advertised=${5:-127.0.0.1:$2}
  cat >"$dir/server.properties" <<PROPS
# Written by scripts/kafka/broker.sh: single-node KRaft for tests (127.0.0.1) or one pod of the local cluster.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://$host:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=${KAFKA_NUM_PARTITIONS:-4}
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=1
log.segment.bytes=67108864
PROPS
  # Broker log: INFO to stdout, which start redirects to DIR/server.log.
  cat >"$dir/log4j2-server.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = INFO
PROPS
  # Tools: warnings only, to stderr, so their stdout stays parseable.
  cat >"$dir/log4j2-tools.properties" <<'PROPS'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
PROPS
  printf 'bootstrap.servers=127.0.0.1:%s\n' "$bport" >"$dir/client.properties"
}

jvm_common() {
  local dir=$1
  printf '%s\n' -cp "$(classpath)" -Djava.awt.headless=true -XX:+ExitOnOutOfMemoryError \
    "-Dkafka.logs.dir=$dir/logs"
}

start() {
  local dir=${1:?usage: broker.sh start DIR}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  fetch
  local pid
  if pid=$(live_pid "$dir"); then
    if probe "$(sed 's/.*://' "$dir/bootstrap")"; then
      printf 'bootstrap=%s\n' "$(cat "$dir/bootstrap")"
      return 0
    fi
    die "a broker (pid $pid) runs in $dir but does not answer; run: broker.sh stop $dir"
  fi
  local timeout=${KAFKA_READY_TIMEOUT:-60} attempt t0
  t0=$(date +%s%N)
  # Ports are chosen free but another process can take one before the JVM binds it: retry with fresh ports.
  for attempt in 1 2 3; do
    local ports bport cport
    ports=$(free_ports)
    bport=${ports% *}
    cport=${ports#* }
    rm -rf "$dir/data" "$dir/logs" "$dir/pid" "$dir/bootstrap"
    mkdir -p "$dir/data" "$dir/logs"
    write_configs "$dir" "$bport" "$cport"
    local -a jvm
    mapfile -t jvm < <(jvm_common "$dir")
    # --standalone: this node is the whole controller quorum (KIP-853 dynamic quorum, Kafka 3.9+/4.x).
    if ! java "${jvm[@]}" -Xmx256m "-Dlog4j2.configurationFile=$dir/log4j2-tools.properties" \
        kafka.tools.StorageTool format --standalone --cluster-id="$(cluster_id)" -c "$dir/server.properties" \
        >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      die "formatting the storage in $dir/data failed"
    fi
    # shellcheck disable=SC2086 # heap and JVM options are lists of words
    java "${jvm[@]}" ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} ${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
      "-Dlog4j2.configurationFile=$dir/log4j2-server.properties" \
      kafka.Kafka "$dir/server.properties" >"$dir/server.log" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$dir/pid"
    local deadline=$((SECONDS + timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if probe "$bport"; then
        printf '127.0.0.1:%s\n' "$bport" >"$dir/bootstrap"
        printf 'bootstrap=127.0.0.1:%s\n' "$bport"
        say "ready in $((($(date +%s%N) - t0) / 1000000)) ms (pid $pid, log $dir/server.log)"
        return 0
      fi
      sleep 0.2
    done
    local why="did not become ready within ${timeout}s"
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" || rc=$?
      why="exited with status $rc before it was ready"
    fi
    stop "$dir" >/dev/null 2>&1 || true
    if grep -q 'Address already in use' "$dir/server.log" && [ "$attempt" -lt 3 ]; then
      say "port taken before the broker bound it; retrying with fresh ports"
      continue
    fi
    tail -n 40 "$dir/server.log" >&2
    die "the broker in $dir $why (log: $dir/server.log)"
  done
  die "the broker in $dir could not bind free ports after 3 attempts"
}

# The broker stopped with `stop` started again as it was (a restart after an outage, the lab's `stop-broker` fault):
# the same server.properties, so the same ports and cluster, and its data kept (no format). Prints `bootstrap=...`.
resume() {
  local dir=${1:?usage: broker.sh resume DIR}
  dir=$(cd "$dir" && pwd)
  if [ ! -f "$dir/server.properties" ] || [ ! -f "$dir/bootstrap" ] || [ ! -d "$dir/data" ]; then
    die "no stopped broker in $dir (run: broker.sh start $dir)"
  fi
  local bport pid
  bport=$(sed 's/.*://' "$dir/bootstrap")
  if pid=$(live_pid "$dir"); then
    probe "$bport" && { printf 'bootstrap=%s\n' "$(cat "$dir/bootstrap")"; return 0; }
    die "a broker (pid $pid) runs in $dir but does not answer; run: broker.sh stop $dir"
  fi
  fetch
  local timeout=${KAFKA_READY_TIMEOUT:-60} t0 attempt
  t0=$(date +%s%N)
  local -a jvm
  mapfile -t jvm < <(jvm_common "$dir")
  # The port was free a moment ago, but the stopped JVM's sockets can linger; a bind failure is retried briefly.
  for attempt in 1 2 3; do
    # shellcheck disable=SC2086 # heap and JVM options are lists of words
    java "${jvm[@]}" ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} ${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
      "-Dlog4j2.configurationFile=$dir/log4j2-server.properties" \
      kafka.Kafka "$dir/server.properties" >>"$dir/server.log" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$dir/pid"
    local deadline=$((SECONDS + timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if probe "$bport"; then
        printf 'bootstrap=%s\n' "$(cat "$dir/bootstrap")"
        say "resumed in $((($(date +%s%N) - t0) / 1000000)) ms (pid $pid, log $dir/server.log)"
        return 0
      fi
      sleep 0.1
    done
    stop "$dir" >/dev/null 2>&1 || true
    if tail -n 200 "$dir/server.log" | grep -q 'Address already in use' && [ "$attempt" -lt 3 ]; then
      say "port $bport still taken; retrying"
      sleep 1
      continue
    fi
    tail -n 40 "$dir/server.log" >&2
    die "the broker in $dir did not come back within ${timeout}s (log: $dir/server.log)"
  done
  die "the broker in $dir could not bind its ports again after 3 attempts"
}

# One broker as a pod's only process tree: a fresh storage in DIR, the listener on the pod's addresses, the topics the
# overlay's KafkaTopics name, then the JVM in the foreground (SIGTERM/SIGINT reach it; its exit is the pod's).
serve() {
  local dir=${1:?usage: broker.sh serve DIR}
  local advertised=${KAFKA_ADVERTISED:?KAFKA_ADVERTISED (host:port clients reach this broker at) is required}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  fetch
  local bport=9092 cport=9093 t0 pid
  t0=$(date +%s%N)
  rm -rf "$dir/data" "$dir/logs"
  mkdir -p "$dir/data" "$dir/logs"
  write_configs "$dir" "$bport" "$cport" "${KAFKA_LISTEN_HOST:-0.0.0.0}" "$advertised"
  local -a jvm
  mapfile -t jvm < <(jvm_common "$dir")
  java "${jvm[@]}" -Xmx256m "-Dlog4j2.configurationFile=$dir/log4j2-tools.properties" \
    kafka.tools.StorageTool format --standalone --cluster-id="$(cluster_id)" -c "$dir/server.properties" >&2 \
    || die "formatting the storage in $dir/data failed"
  # shellcheck disable=SC2086 # heap and JVM options are lists of words
  java "${jvm[@]}" ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} ${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
    "-Dlog4j2.configurationFile=$dir/log4j2-server.properties" kafka.Kafka "$dir/server.properties" </dev/null &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
  local deadline=$((SECONDS + ${KAFKA_READY_TIMEOUT:-60}))
  until probe "$bport"; do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; die "the broker exited before it was ready"; }
    [ "$SECONDS" -lt "$deadline" ] || { kill -TERM "$pid"; wait "$pid"; die "not ready within ${KAFKA_READY_TIMEOUT:-60}s"; }
    sleep 0.2
  done
  say "ready in $((($(date +%s%N) - t0) / 1000000)) ms on $bport, advertised as $advertised"
  local topic
  for topic in ${KAFKA_TOPICS//,/ }; do
    java "${jvm[@]}" ${KAFKA_TOOL_HEAP_OPTS:--Xmx256m} "-Dlog4j2.configurationFile=$dir/log4j2-tools.properties" \
      org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$bport" --create --if-not-exists \
      --topic "${topic%%:*}" --partitions "${topic##*:}" --replication-factor 1 >&2 \
      || { kill -TERM "$pid"; wait "$pid"; die "creating topic ${topic%%:*} failed"; }
    say "topic ${topic%%:*} (${topic##*:} partitions)"
  done
  # A trapped signal ends the first wait early; then the JVM's own exit is waited for.
  local rc=0
  wait "$pid" || rc=$?
  if kill -0 "$pid" 2>/dev/null; then
    rc=0
    wait "$pid" || rc=$?
  fi
  return "$rc"
}

stop() {
  local dir=${1:?usage: broker.sh stop DIR} pid i
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  if pid=$(live_pid "$dir"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < ${KAFKA_STOP_TIMEOUT:-30} * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "broker pid $pid ignored SIGTERM for ${KAFKA_STOP_TIMEOUT:-30}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$dir/pid"
}

bootstrap_of() {
  local dir=${1:?DIR missing}
  live_pid "$dir" >/dev/null || die "no broker runs in $dir (run: broker.sh start $dir)"
  cat "$dir/bootstrap"
}

run_tool() {
  local dir=$1 class=$2
  shift 2
  fetch
  local -a jvm
  mapfile -t jvm < <(jvm_common "$dir")
  # shellcheck disable=SC2086 # heap options are a list of words
  exec java "${jvm[@]}" ${KAFKA_TOOL_HEAP_OPTS:--Xmx256m} "-Dlog4j2.configurationFile=$dir/log4j2-tools.properties" \
    "$class" "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  fetch) fetch ;;
  classpath) classpath; echo ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  resume) resume "$@" ;;
  serve) serve "$@" ;;
  status) d=$(cd "${1:?usage: broker.sh status DIR}" && pwd); live_pid "$d" >/dev/null && probe "$(sed 's/.*://' "$d/bootstrap")" ;;
  perf)
    d=$(cd "${1:?usage: broker.sh perf DIR ARGS}" && pwd); shift; bs=$(bootstrap_of "$d")
    run_tool "$d" org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$bs" "$@" ;;
  consume-perf)
    d=$(cd "${1:?usage: broker.sh consume-perf DIR ARGS}" && pwd); shift; bs=$(bootstrap_of "$d")
    run_tool "$d" org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bs" "$@" ;;
  topics)
    d=$(cd "${1:?usage: broker.sh topics DIR ARGS}" && pwd); shift; bs=$(bootstrap_of "$d")
    run_tool "$d" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" "$@" ;;
  groups)
    d=$(cd "${1:?usage: broker.sh groups DIR ARGS}" && pwd); shift; bs=$(bootstrap_of "$d")
    run_tool "$d" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$bs" "$@" ;;
  run)
    d=$(cd "${1:?usage: broker.sh run DIR CLASS ARGS}" && pwd); shift; bootstrap_of "$d" >/dev/null
    run_tool "$d" "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
