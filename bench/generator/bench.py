"""Runs the generator benchmark (see run.sh): nginx on CPU 0, each load tool on CPU 1, same connections and duration.

Every tool's CPU time is measured with wait4() on its process tree; request counts come from each tool's own output.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "50"))
RATE = int(os.environ.get("RATE", "10000"))
GENERATOR = os.environ["GENERATOR_BIN"]
LOCUST = os.environ.get("LOCUST_BIN")
CORES = os.cpu_count() or 1
SERVER_CPU = "0"
TOOL_CPU = "1" if CORES > 1 else "0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work):
    port = free_port()
    root = os.path.join(work, "www")
    os.makedirs(root)
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("hello from nginx\n")
    os.chmod(work, 0o755)
    os.chmod(root, 0o755)
    conf = os.path.join(work, "nginx.conf")
    user = "user root;\n" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""{user}worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi;
  uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }}
}}
""")
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, "nginx", "-c", conf, "-p", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start; see " + work + "/error.log")


def run_measured(cmd, env=None, cwd=None):
    """Run cmd pinned to the tool CPU; return (stdout, stderr, cpu_seconds, wall_seconds)."""
    start = time.time()
    timer = ["/usr/bin/time", "-f", "MAXRSS_KB %M"] if os.path.exists("/usr/bin/time") else []
    proc = subprocess.Popen(timer + ["taskset", "-c", TOOL_CPU] + cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=cwd)
    out, err = proc.communicate(timeout=DURATION * 6 + 120)
    wall = time.time() - start
    # The child is reaped by communicate(); its (and its children's) CPU is in RUSAGE_CHILDREN deltas.
    return out.decode(errors="replace"), err.decode(errors="replace"), proc.returncode, wall


def children_cpu():
    r = os.times()
    return r.children_user + r.children_system


def measure(name, cmd, parse, env=None, cwd=None):
    before = children_cpu()
    out, err, code, wall = run_measured(cmd, env=env, cwd=cwd)
    cpu = children_cpu() - before
    try:
        requests, rps, p99 = parse(out, err)
    except Exception as e:  # noqa: BLE001 - report any tool's failure and go on
        print(f"{name}: could not parse output ({e}); exit {code}\n{out[-2000:]}\n{err[-2000:]}", file=sys.stderr)
        return None
    rss = re.findall(r"MAXRSS_KB (\d+)", err)
    return {"tool": name, "requests": requests, "rps": rps, "p99_ms": p99, "cpu_s": cpu,
            "rss_mb": int(rss[-1]) / 1024 if rss else None,
            "cpu_per_100k": cpu * 100000 / requests if requests else float("nan")}


def parse_wrk(out, _err):
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = None
    if m:
        v, u = float(m.group(1)), m.group(2)
        p99 = v / 1000 if u == "us" else v * 1000 if u == "s" else v
    return requests, rps, p99


def parse_hey(out, _err):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    m = re.search(r"99% in ([\d.]+) secs", out)
    return requests, rps, float(m.group(1)) * 1000 if m else None


def parse_generator_report(path):
    def parse(_out, _err):
        with open(path) as f:
            r = json.load(f)
        return r["requests"], r["achieved_rate"], r["latency"]["p99_ms"]
    return parse


def parse_locust(prefix):
    def parse(_out, _err):
        import csv
        with open(prefix + "_stats.csv") as f:
            rows = list(csv.DictReader(f))
        agg = next(r for r in rows if r["Name"] == "Aggregated")
        p99 = agg.get("99%")
        return int(agg["Request Count"]), float(agg["Requests/s"]), float(p99) if p99 not in (None, "N/A", "") else None
    return parse


def parse_oha(out, _err):
    j = json.loads(out)
    s = j["summary"]
    requests = sum(j.get("statusCodeDistribution", {}).values())
    p99 = j.get("latencyPercentiles", {}).get("p99")
    return requests, s["requestsPerSec"], p99 * 1000 if p99 is not None else None


def main():
    work = tempfile.mkdtemp(prefix="genbench-")
    nginx, url = start_nginx(work)
    rows = []
    try:
        d = f"{DURATION}s"
        c = str(CONNECTIONS)
        env1 = dict(os.environ, TOKIO_WORKER_THREADS="1")
        report = os.path.join(work, "gen.json")
        gen_cmd = [GENERATOR, "run", "--url", url, "--path", "/index.html", "--rate", "max", "--duration", d,
                   "--connections", c, "--no-metrics", "--quiet", "--report", report, "--trace-sample", "0"]
        rows.append(measure("generator (ours)", gen_cmd, parse_generator_report(report), env=env1))
        rows.append(measure("wrk", ["wrk", "-t1", f"-c{c}", f"-d{d}", "--latency", url + "/index.html"], parse_wrk))
        rows.append(measure("hey", ["hey", "-c", c, "-z", d, url + "/index.html"], parse_hey))
        if shutil.which("oha"):
            rows.append(measure("oha", ["oha", "--no-tui", "--output-format", "json", "-c", c, "-z", d,
                                        url + "/index.html"], parse_oha))
        if LOCUST:
            locustfile = os.path.join(work, "locustfile.py")
            with open(locustfile, "w") as f:
                f.write("from locust import task\nfrom locust.contrib.fasthttp import FastHttpUser\n\n"
                        "class Bench(FastHttpUser):\n    @task\n    def index(self):\n"
                        "        self.client.get('/index.html')\n")
            prefix = os.path.join(work, "locust")
            rows.append(measure("locust (FastHttpUser)", [LOCUST, "-f", locustfile, "--headless", "-u", c, "-r", c,
                                                          "-t", d, "-H", url, "--csv", prefix, "--only-summary"],
                                parse_locust(prefix)))
            # The default user class most locustfiles use.
            plain = os.path.join(work, "locustfile_http.py")
            with open(plain, "w") as f:
                f.write("from locust import HttpUser, task\n\n"
                        "class Bench(HttpUser):\n    @task\n    def index(self):\n"
                        "        self.client.get('/index.html')\n")
            prefix2 = os.path.join(work, "locust_http")
            rows.append(measure("locust (HttpUser)", [LOCUST, "-f", plain, "--headless", "-u", c, "-r", c,
                                                      "-t", d, "-H", url, "--csv", prefix2, "--only-summary"],
                                parse_locust(prefix2)))
        # Flat memory: the same closed-loop run three times as long must not need more memory.
        long_report = os.path.join(work, "gen-long.json")
        long_cmd = [GENERATOR, "run", "--url", url, "--path", "/index.html", "--rate", "max", "--duration",
                    f"{DURATION * 3}s", "--connections", c, "--no-metrics", "--quiet", "--report", long_report,
                    "--trace-sample", "0"]
        long_row = measure("generator (ours), 3x longer", long_cmd, parse_generator_report(long_report), env=env1)
        # Open-model accuracy.
        acc_report = os.path.join(work, "acc.json")
        acc_cmd = [GENERATOR, "run", "--url", url, "--path", "/index.html", "--rate", str(RATE), "--duration", d,
                   "--no-metrics", "--quiet", "--report", acc_report, "--trace-sample", "0"]
        before = children_cpu()
        run_measured(acc_cmd, env=env1)
        acc_cpu = children_cpu() - before
        with open(acc_report) as f:
            acc = json.load(f)
    finally:
        nginx.terminate()
        nginx.wait()
    rows = [r for r in rows if r]
    by = {r["tool"]: r for r in rows}
    ours = by.get("generator (ours)")
    lines = [
        f"Target: nginx {url}/index.html (1 worker, CPU 0); tools on CPU {TOOL_CPU}; {CONNECTIONS} connections; "
        f"{DURATION} s each; {CORES} cores.",
        "",
        "| tool | requests | req/s | p99 | CPU-s | CPU-s per 100k req | max RSS | our req/s ÷ theirs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{ours['rps'] / r['rps']:.2f}x" if ours and r is not ours else "-"
        p99 = f"{r['p99_ms']:.2f} ms" if r["p99_ms"] is not None else "-"
        rss = f"{r['rss_mb']:.0f} MB" if r.get("rss_mb") is not None else "-"
        lines.append(f"| {r['tool']} | {r['requests']} | {r['rps']:.0f} | {p99} | {r['cpu_s']:.2f} | "
                     f"{r['cpu_per_100k']:.2f} | {rss} | {ratio} |")
    err = abs(acc["achieved_rate"] - RATE) / RATE * 100
    if long_row and ours and long_row.get("rss_mb") and ours.get("rss_mb"):
        lines += ["", f"Memory: generator max RSS {ours['rss_mb']:.0f} MB over {DURATION} s ({ours['requests']} requests) "
                      f"vs {long_row['rss_mb']:.0f} MB over {DURATION * 3} s ({long_row['requests']} requests)."]
    lines += [
        "",
        f"Open model at {RATE} req/s for {DURATION} s: achieved {acc['achieved_rate']:.1f} req/s ({err:.2f} % off), "
        f"{acc['requests']} requests of {acc['expected_requests']:.0f}, dropped {acc['dropped']}, "
        f"p50 {acc['latency']['p50_ms']:.2f} ms, p99 {acc['latency']['p99_ms']:.2f} ms, "
        f"schedule lag p99 {acc['self_check']['schedule_lag']['p99_ms']:.2f} ms, CPU {acc_cpu:.2f} s, "
        f"saturated: {acc['self_check']['saturated']}.",
    ]
    text = "\n".join(lines)
    print(text)
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "out")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "generator-bench.md"), "w") as f:
        f.write(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
