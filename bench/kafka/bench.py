"""Runs the Kafka producer benchmark (see run.sh): one broker (started by run.sh), `generator produce` vs Kafka's own
`org.apache.kafka.tools.ProducerPerformance` on the same topic, record size and acks, in rounds; the median of the
rounds goes in the table.

Each tool runs pinned to TOOL_CPU; its CPU seconds and peak RSS come from wait4() on its process (taskset execs the tool
and broker.sh execs java, so the pid is the tool's own); the broker's CPU per run from /proc/<broker>/stat.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.environ["ROOT"]
BROKER_SH = os.path.join(ROOT, "scripts", "kafka", "broker.sh")
BROKER_DIR = os.environ["BROKER_DIR"]
BROKER_PID = int(os.environ["BROKER_PID"])
GENERATOR = os.environ["GENERATOR_BIN"]
TOPIC = os.environ.get("TOPIC", "bench")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
RECORDS = int(os.environ.get("RECORDS", "1000000"))
RECORD_SIZE = int(os.environ.get("RECORD_SIZE", "1024"))
ACKS = os.environ.get("ACKS", "all 1").split()
RATE = int(os.environ.get("RATE", "10000"))
RATE_RECORDS = int(os.environ.get("RATE_RECORDS", "100000"))
MEMORY_RECORDS = int(os.environ.get("MEMORY_RECORDS", "1000000"))
MEMORY_RATE = int(os.environ.get("MEMORY_RATE", "10000"))
WARMUP_RECORDS = int(os.environ.get("WARMUP_RECORDS", "500000"))
TOOL_CPU = os.environ.get("TOOL_CPU", "")
# The same batching for both tools: the Java client's defaults (librdkafka's batch.size default is 1,000,000).
LINGER_MS = int(os.environ.get("LINGER_MS", "5"))
BATCH_BYTES = int(os.environ.get("BATCH_BYTES", "16384"))
OUT_DIR = os.environ.get("OUT_DIR", os.path.join(ROOT, "bench", "kafka", "results"))
# The generator's --rate ceiling (its flag parser's upper bound): far above what one core can send.
UNLIMITED = 1_000_000
PRODUCER = "bench"
TEST_RUN = "run-bench-000000"

FINAL = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, "
    r"(\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th")
WINDOW = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                    r"([\d.]+) ms max latency\.$", re.M)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pinned(cmd):
    return (["taskset", "-c", TOOL_CPU] if TOOL_CPU else []) + cmd


def body_overhead(k):
    """Bytes of message k's JSON without its payload, exactly as serde_json writes contract::kafka::Message (compact,
    field order of the struct); the timestamp is always 24 characters (RFC 3339 with milliseconds, UTC)."""
    msg = {"id": f"{PRODUCER}-{k}", "timestamp": "2026-01-01T00:00:00.000Z", "sequence": k, "payload": "",
           "metadata": {"producer": PRODUCER, "test_run": TEST_RUN}}
    return len(json.dumps(msg, separators=(",", ":")))


def payload_for(count):
    """The --payload-bytes that makes our mean record value RECORD_SIZE bytes over `count` messages (the sequence
    number's digits vary), so both tools send the same bytes per record."""
    digits_total, k, width = 0, 0, 1
    while k < count:
        top = min(count, 10 ** width)
        digits_total += (top - k) * width
        k, width = top, width + 1
    fixed = body_overhead(0) - 2  # the two 1-digit numbers (id suffix and sequence) of k = 0
    mean_overhead = fixed + 2 * digits_total / count
    return max(0, round(RECORD_SIZE - mean_overhead))


def broker_cpu():
    with open(f"/proc/{BROKER_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(cmd, timeout, sample_every=None):
    """Runs cmd; returns stdout, stderr, exit code, wall s, CPU s, peak RSS MB, RSS samples [(t, MB)]."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cpu0 = broker_cpu()
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        RUNNING.append(proc)
        samples, stop = [], threading.Event()

        def sample():
            while not stop.wait(sample_every):
                mb = rss_mb(proc.pid)
                if mb is not None:
                    samples.append((time.monotonic() - start, mb))

        sampler = threading.Thread(target=sample, daemon=True) if sample_every else None
        if sampler:
            sampler.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            stop.set()
            RUNNING.remove(proc)
            if proc.poll() is None:
                proc.kill()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        if sampler:
            sampler.join()
        out.seek(0)
        err.seek(0)
        return {"stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace"),
                "code": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_mb": usage.ru_maxrss / 1024, "broker_cpu_s": broker_cpu() - cpu0, "samples": samples}


# The tool running now: run.sh's cleanup sends TERM to this script, which must not leave a producer behind.
RUNNING = []


def on_term(_signum, _frame):
    for proc in RUNNING:
        proc.kill()
    sys.exit(143)


def worst_window(rates, asked):
    """Largest |error| in % of the asked rate over the full windows (first and last are partial)."""
    inner = rates[1:-1]
    return max((abs(r - asked) / asked * 100 for r in inner), default=None)


def ours(count, rate, acks, tag, sample_every=None):
    report = os.path.join(WORK, f"ours-{tag}.json")
    cmd = pinned([GENERATOR, "produce", "--brokers", BOOTSTRAP, "--topic", TOPIC, "--rate", str(rate),
                  "--count", str(count), "--payload-bytes", str(payload_for(count)), "--acks", acks,
                  "--linger-ms", str(LINGER_MS), "--batch-bytes", str(BATCH_BYTES), "--producer", PRODUCER, "--test-run", TEST_RUN, "--report", report, "--no-metrics", "--quiet"])
    r = run(cmd, timeout=count / min(rate, 20000) + 120, sample_every=sample_every)
    if r["code"] != 0:
        raise SystemExit(f"generator produce exited {r['code']}:\n{r['stderr'][-3000:]}")
    with open(report) as f:
        k = json.load(f)["kafka"]
    if k["acked"] != count or k["failed"]:
        raise SystemExit(f"generator produce: {k['acked']} of {count} acked, {k['failed']} failed: {k['errors']}")
    lat = k["ack_latency_ms"]
    return {"records": k["acked"], "records_per_s": k["records_per_sec"], "mb_per_s": k["mb_per_sec"],
            "record_bytes": k["mb_per_sec"] * 1e6 / k["records_per_sec"], "p50_ms": lat["p50"], "p99_ms": lat["p99"],
            "p99_9_ms": lat["p99_9"], "max_ms": lat["max"], "cpu_s": r["cpu_s"], "max_rss_mb": r["max_rss_mb"],
            "broker_cpu_s": r["broker_cpu_s"], "wall_s": r["wall_s"],
            "window_rates": [i["records_per_sec"] for i in k["intervals"]], "samples": r["samples"],
            "in_flight": in_flight(k["intervals"])}


def in_flight(intervals):
    """[(t, messages sent and not yet acked or failed)] at each progress interval's end."""
    rows, sent, done = [], 0, 0
    for i in intervals:
        sent, done = sent + i["sent"], done + i["acked"] + i["failed"]
        rows.append((i["t_s"], sent - done))
    return rows


def theirs(count, rate, acks):
    cmd = pinned(["bash", BROKER_SH, "perf", BROKER_DIR, "--topic", TOPIC, "--num-records", str(count),
                  "--record-size", str(RECORD_SIZE), "--throughput", str(rate), "--reporting-interval", "1000",
                  "--command-property", f"acks={acks}", f"linger.ms={LINGER_MS}", f"batch.size={BATCH_BYTES}"])
    r = run(cmd, timeout=count / (rate if rate > 0 else 20000) + 120)
    m = FINAL.search(r["stdout"])
    if r["code"] != 0 or not m:
        raise SystemExit(f"ProducerPerformance exited {r['code']}:\n{r['stdout'][-2000:]}\n{r['stderr'][-3000:]}")
    sent, rps = int(m.group(1)), float(m.group(2))
    if sent != count:
        raise SystemExit(f"ProducerPerformance: {sent} of {count} records")
    return {"records": sent, "records_per_s": rps, "mb_per_s": rps * RECORD_SIZE / 1e6, "record_bytes": RECORD_SIZE,
            "p50_ms": float(m.group(6)), "p99_ms": float(m.group(8)), "p99_9_ms": float(m.group(9)),
            "max_ms": float(m.group(5)), "cpu_s": r["cpu_s"], "max_rss_mb": r["max_rss_mb"],
            "broker_cpu_s": r["broker_cpu_s"], "wall_s": r["wall_s"],
            "window_rates": [float(w.group(2)) for w in WINDOW.finditer(r["stdout"])]}


def med(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def slope_mb_per_min(samples):
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (m - mm) for t, m in samples) / var * 60 if var else 0.0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(v, spec=",.0f", unit=""):
    return "n/a" if v is None else format(v, spec) + unit


def main():
    global WORK
    # The generator's reports go under run.sh's temporary directory, which its trap removes on every way out.
    WORK = os.path.join(os.environ["BENCH_WORK"], "reports")
    os.makedirs(WORK, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = loadavg()
    results = {"throughput": {}, "rate": {}, "memory": None}
    if WARMUP_RECORDS > 0:
        # A fresh broker JVM is interpreted at first: the first runs would measure its JIT, not the producers.
        log(f"warm-up (not counted): {WARMUP_RECORDS} records from each tool")
        ours(WARMUP_RECORDS, UNLIMITED, ACKS[0], "warmup")
        theirs(WARMUP_RECORDS, -1, ACKS[0])
    for rnd in range(1, ROUNDS + 1):
        # Alternate who goes first, so a drift in the machine's load does not always favour the same tool.
        order = ["ours", "theirs"] if rnd % 2 else ["theirs", "ours"]
        for acks in ACKS:
            for who in order:
                log(f"round {rnd}/{ROUNDS}: throughput, acks={acks}, {who}")
                r = ours(RECORDS, UNLIMITED, acks, f"tp-{acks}-{rnd}") if who == "ours" else theirs(RECORDS, -1, acks)
                results["throughput"].setdefault(acks, {}).setdefault(who, []).append(r)
            for who in order:
                log(f"round {rnd}/{ROUNDS}: rate {RATE}/s, acks={acks}, {who}")
                r = ours(RATE_RECORDS, RATE, acks, f"rate-{acks}-{rnd}") if who == "ours" else \
                    theirs(RATE_RECORDS, RATE, acks)
                r["error_pct"] = (r["records_per_s"] - RATE) / RATE * 100
                r["worst_window_pct"] = worst_window(r["window_rates"], RATE)
                results["rate"].setdefault(acks, {}).setdefault(who, []).append(r)
    if MEMORY_RECORDS > 0:
        log(f"memory: generator produce, {MEMORY_RECORDS} messages at {MEMORY_RATE}/s, acks={ACKS[0]}, RSS each second")
        r = ours(MEMORY_RECORDS, MEMORY_RATE, ACKS[0], "memory", sample_every=1.0)
        s = r["samples"]
        # The slope leaves out the first 10 % (connection set-up, the allocator's first arenas).
        steady = [x for x in s if x[0] >= s[-1][0] * 0.1] if s else []
        growth = (steady[-1][1] - steady[0][1]) if steady else None
        inflight = [n for t, n in r["in_flight"] if s and t >= s[-1][0] * 0.1]
        results["memory"] = {
            "records": MEMORY_RECORDS, "rate": MEMORY_RATE, "acks": ACKS[0], "achieved_rate": r["records_per_s"],
            "start_mb": s[0][1] if s else None, "mid_mb": s[len(s) // 2][1] if s else None,
            "end_mb": s[-1][1] if s else None, "max_mb": max(m for _, m in s) if s else None,
            "steady_growth_mb": growth,
            # A leak grows with the messages; RSS that follows the in-flight peak is the allocator's high-water mark.
            "growth_bytes_per_message": growth * 1e6 / (MEMORY_RECORDS * 0.9) if growth is not None else None,
            "in_flight_peak": max(inflight, default=None),
            "slope_mb_per_min": slope_mb_per_min(steady), "samples": s, "in_flight": r["in_flight"]}
    load_after = loadavg()
    write(results, started, load_before, load_after)


def write(results, started, load_before, load_after):
    lines = []
    head = (f"Kafka producer benchmark, {started}, {os.cpu_count()} cores, {ROUNDS} round(s), median of rounds. "
            f"Topic `{TOPIC}`: {os.environ.get('PARTITIONS', '4')} partitions, replication 1, one KRaft broker "
            f"(Kafka 4.4.0) pinned to CPU {os.environ.get('BROKER_CPU', '-')}; each producer pinned to CPU "
            f"{TOOL_CPU or '-'}. Record value {RECORD_SIZE} B, no key, no compression, "
            f"linger.ms={LINGER_MS} and batch.size={BATCH_BYTES} for both tools. Load average (1/5/15 min) before: {load_before}; after: {load_after}.")
    lines += [head, ""]
    lines += [f"### 1. Throughput: {RECORDS:,} records, unthrottled (ours `--rate {UNLIMITED}`, theirs "
              "`--throughput -1`)", "",
              "| acks | tool | records/s | MB/s | ack p50 ms | ack p99 ms | tool CPU s | tool peak RSS MB | "
              "broker CPU s | ratio ours/theirs (records/s) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for acks, by in results["throughput"].items():
        o, t = by["ours"], by["theirs"]
        ratio = med(o, "records_per_s") / med(t, "records_per_s")
        per_round = ", ".join(f"{a['records_per_s'] / b['records_per_s']:.2f}" for a, b in zip(o, t))
        for who, rs in (("generator produce", o), ("ProducerPerformance", t)):
            lines.append(f"| {acks} | {who} | {fmt(med(rs, 'records_per_s'))} | {fmt(med(rs, 'mb_per_s'), '.1f')} | "
                         f"{fmt(med(rs, 'p50_ms'), '.1f')} | {fmt(med(rs, 'p99_ms'), '.1f')} | "
                         f"{fmt(med(rs, 'cpu_s'), '.1f')} | {fmt(med(rs, 'max_rss_mb'))} | "
                         f"{fmt(med(rs, 'broker_cpu_s'), '.1f')} | "
                         + (f"**{ratio:.2f}** (rounds: {per_round}) |" if rs is o else " |"))
    lines += ["", f"### 2. Rate accuracy: {RATE_RECORDS:,} records at {RATE:,}/s", "",
              "| acks | tool | achieved records/s | error vs asked | worst 1 s window | ack p50 ms | ack p99 ms | "
              "ack p99.9 ms | tool CPU s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for acks, by in results["rate"].items():
        for who, rs in (("generator produce", by["ours"]), ("ProducerPerformance", by["theirs"])):
            lines.append(f"| {acks} | {who} | {fmt(med(rs, 'records_per_s'), ',.1f')} | "
                         f"{fmt(med(rs, 'error_pct'), '+.2f', ' %')} | {fmt(med(rs, 'worst_window_pct'), '.2f', ' %')} | "
                         f"{fmt(med(rs, 'p50_ms'), '.2f')} | {fmt(med(rs, 'p99_ms'), '.2f')} | "
                         f"{fmt(med(rs, 'p99_9_ms'), '.2f')} | {fmt(med(rs, 'cpu_s'), '.1f')} |")
    m = results["memory"]
    if m:
        lines += ["", f"### 3. Memory: generator produce, {m['records']:,} records at {m['rate']:,}/s "
                  f"(acks={m['acks']}), RSS from /proc each second (one run)", "",
                  "| achieved records/s | RSS start MB | mid MB | end MB | max MB | growth over the last 90 % MB | "
                  "growth per message | slope MB/min | in-flight peak (last 90 %) |", "|---|---|---|---|---|---|---|---|---|",
                  f"| {fmt(m['achieved_rate'], ',.1f')} | {fmt(m['start_mb'], '.1f')} | {fmt(m['mid_mb'], '.1f')} | "
                  f"{fmt(m['end_mb'], '.1f')} | {fmt(m['max_mb'], '.1f')} | {fmt(m['steady_growth_mb'], '+.1f')} | "
                  f"{fmt(m['growth_bytes_per_message'], '+.1f', ' B')} | {fmt(m['slope_mb_per_min'], '+.2f')} | "
                  f"{fmt(m['in_flight_peak'], ',.0f')} |"]
    lines += ["", "Ack latency: ours from each message's scheduled send time (HDR, microseconds); ProducerPerformance "
              "from its send() call (whole milliseconds). Unthrottled, ours hands every message to librdkafka on its "
              f"schedule ({UNLIMITED:,}/s, an open model) so its latency includes the time queued in the client, while "
              "ProducerPerformance blocks in send() once its 32 MB buffer.memory is full and its clock starts after "
              "that wait: compare the unthrottled latencies with that in mind. MB = 10^6 bytes (ProducerPerformance "
              "prints MiB; recomputed here from its records/s x record size)."]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "latest.md"), "w") as f:
        f.write(text)

    def strip(runs):
        return [{k: v for k, v in r.items() if k != "samples"} for r in runs]

    doc = {"started": started, "cores": os.cpu_count(), "rounds": ROUNDS, "records": RECORDS,
           "record_size": RECORD_SIZE, "linger_ms": LINGER_MS, "batch_bytes": BATCH_BYTES, "rate": RATE, "rate_records": RATE_RECORDS, "tool_cpu": TOOL_CPU,
           "broker_cpu": os.environ.get("BROKER_CPU"), "loadavg_before": load_before, "loadavg_after": load_after,
           "throughput": {a: {w: strip(rs) for w, rs in by.items()} for a, by in results["throughput"].items()},
           "rate_accuracy": {a: {w: strip(rs) for w, rs in by.items()} for a, by in results["rate"].items()},
           "memory": results["memory"]}
    with open(os.path.join(OUT_DIR, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    BOOTSTRAP = os.environ["BOOTSTRAP"]
    WORK = None
    main()
