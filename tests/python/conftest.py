"""Shared pytest fixtures: the lab's binaries (built by `cargo test --workspace`), spawning them on 127.0.0.1 with
ephemeral ports learned from their `listening` log line, and a real Prometheus server."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
CRDS = ROOT.parent / "shared" / "fixtures" / "crds"


def bin_path(name: str) -> pathlib.Path:
    path = TARGET / "debug" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --workspace` (make test does) first")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0):
    """Returns (status, body bytes, headers); never raises for HTTP error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def http_post_json(url: str, body, timeout: float = 30.0):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def wait_http_ok(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            status, _, _ = http_get(url, timeout=2)
            if 200 <= status < 300:
                return
            last = f"status {status}"
        except OSError as err:
            last = str(err)
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {timeout}s: {last}")


class Proc:
    """A spawned lab binary. `addr(kind)` is the `IP:PORT` it logged as `listening` for that kind."""

    def __init__(self, argv, env=None, kinds=("http",), timeout=30.0):
        full_env = {k: v for k, v in os.environ.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
        full_env.update(env or {})
        self.argv = [str(a) for a in argv]
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, text=True
        )
        self.lines = []
        self.addrs = {}
        self._cond = threading.Condition()
        # Separate readers: merged into one pipe, a program's stderr progress can land in the middle of a stdout log
        # line and hide the `listening` record.
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.popen.stdout, self.popen.stderr)
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(k not in self.addrs for k in kinds):
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    break
                self._cond.wait(min(left, 0.2))
            else:
                return
        # Outside the lock: the readers need it to finish, and the error should quote the child's last words.
        self.kill()
        raise RuntimeError(f"{self.argv[0]} did not log listening for {kinds}:\n" + "\n".join(self.lines[-40:]))

    def _read(self, stream):
        for line in stream:
            line = line.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                try:
                    rec = json.loads(line)
                    fields = rec.get("fields", rec)
                    if fields.get("message") == "listening":
                        self.addrs[fields["kind"]] = fields["addr"]
                except (ValueError, AttributeError, KeyError):
                    pass
                self._cond.notify_all()

    def addr(self, kind="http") -> str:
        return self.addrs[kind]

    def url(self, kind="http") -> str:
        return f"http://{self.addrs[kind]}"

    def wait(self, timeout: float = 10.0) -> int:
        """Waits for the exit, then for the end of both pipes, so `lines` holds everything the process wrote: a process
        can exit before the reader threads have drained its pipes."""
        code = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        self.wait(timeout=10)


@pytest.fixture
def spawn():
    """`spawn(name_or_path, args, kinds=("http",), env=None)` starts a binary; all are killed at teardown."""
    procs = []

    def _spawn(name, args=(), kinds=("http",), env=None):
        program = bin_path(name) if "/" not in str(name) else name
        proc = Proc([program, *args], env=env, kinds=kinds)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        proc.kill()


class PrometheusServer:
    def __init__(self, targets, scrape_interval="1s"):
        exe = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not os.path.exists(exe):
            pytest.fail("prometheus is not installed: run scripts/setup.sh")
        self.dir = tempfile.TemporaryDirectory()
        cfg = pathlib.Path(self.dir.name) / "prometheus.yml"
        cfg.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: consumer\n"
            f"    scrape_timeout: {scrape_interval}\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(list(targets))}\n"
        )
        for _ in range(5):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.popen = subprocess.Popen(
                [exe, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir.name}/data",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                wait_http_ok(f"{self.url}/-/ready", timeout=20)
                return
            except TimeoutError:
                self.popen.kill()
                self.popen.wait()
        raise RuntimeError("prometheus did not become ready")

    def query(self, promql: str):
        status, body, _ = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body[:500]!r}")
        return doc["data"]["result"]

    def wait_for(self, promql: str, pred, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        result = None
        while time.monotonic() < deadline:
            result = self.query(promql)
            if pred(result):
                return result
            time.sleep(0.2)
        raise TimeoutError(f"{promql!r} did not satisfy the condition within {timeout}s; last: {result}")

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.dir.cleanup()


@pytest.fixture
def prometheus():
    """`prometheus(targets, scrape_interval="1s")` starts a real Prometheus scraping `targets` (IP:PORT list)."""
    servers = []

    def _start(targets, scrape_interval="1s"):
        server = PrometheusServer(targets, scrape_interval)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
