"""docs/exit-codes.md is one table for every binary: each code the table gives a binary is produced by that binary for
the cause the table names. Binaries run from target/debug (built by `cargo test --workspace`), on 127.0.0.1 only."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, bin_path

TABLE = {}
for line in (ROOT / "docs" / "exit-codes.md").read_text().splitlines():
    match = re.match(r"\| (\d+) \| ([a-z ]+) \|", line)
    if match:
        TABLE[match.group(2)] = int(match.group(1))


def run(name, *args, timeout=60):
    path = bin_path(name)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def taken_port():
    """A port on 127.0.0.1 held open for the test, so a binary told to bind it fails."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_the_table_has_the_nine_codes():
    assert TABLE == {
        "ok": 0, "thresholds breached": 1, "usage error": 2, "target never ready": 3,
        "generator saturated": 4, "interrupted": 5, "runtime error": 6, "not permitted": 7, "unsupported host": 8,
    }


@pytest.mark.parametrize("name", ["consumer", "scaler", "generator", "lab", "cluster", "node-agent"])
def test_an_unknown_flag_is_a_usage_error(name):
    proc = run(name, "--no-such-flag")
    assert proc.returncode == TABLE["usage error"], proc.stderr
    assert "--no-such-flag" in proc.stderr


@pytest.mark.parametrize("name", ["consumer", "scaler", "generator", "lab", "cluster", "node-agent"])
def test_help_and_version_exit_ok(name):
    assert run(name, "--help").returncode == TABLE["ok"]
    assert run(name, "--version").returncode == TABLE["ok"]


def test_consumer_that_cannot_bind_is_a_runtime_error(taken_port):
    proc = run("consumer", "--host", "127.0.0.1", "--port", str(taken_port))
    assert proc.returncode == TABLE["runtime error"], proc.stderr
    assert "cannot listen" in proc.stderr


def test_scaler_that_cannot_bind_is_a_runtime_error(taken_port):
    proc = run("scaler", "--host", "127.0.0.1", "--grpc-port", str(taken_port), "--http-port", "0")
    assert proc.returncode == TABLE["runtime error"], proc.stderr
    assert "cannot bind gRPC" in proc.stderr


def test_scaler_with_an_unreadable_ca_file_is_a_usage_error(tmp_path):
    proc = run("scaler", "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0",
               "--ca-file", str(tmp_path / "missing.pem"))
    assert proc.returncode == TABLE["usage error"], proc.stderr
    assert "ca-file" in proc.stderr


def test_generator_wait_for_a_target_that_never_answers(taken_port):
    # The port is bound but never accepts HTTP answers in time: `wait` gives up after its timeout.
    proc = run("generator", "wait", "--url", f"http://127.0.0.1:{taken_port}", "--timeout", "1s")
    assert proc.returncode == TABLE["target never ready"], proc.stderr


def test_cluster_with_overlapping_networks_is_a_usage_error(tmp_path):
    proc = run("cluster", "up", "--state-dir", str(tmp_path), "--pod-cidr", "10.96.0.0/16", "--service-cidr", "10.96.0.0/16")
    assert proc.returncode == TABLE["usage error"], proc.stderr
    assert "overlaps --service-cidr" in proc.stderr


def test_cluster_status_of_a_cluster_not_running_is_target_never_ready(tmp_path):
    proc = run("cluster", "status", "--name", "nothere", "--state-dir", str(tmp_path))
    assert proc.returncode == TABLE["target never ready"], proc.stdout + proc.stderr
    assert "nothere is not running" in proc.stdout


def test_cluster_up_without_root_is_not_permitted(tmp_path):
    path = bin_path("cluster")
    args = ["up", "--name", "norootpy", "--state-dir", str(tmp_path)]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", str(path), *args]
    else:
        command = [str(path), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == TABLE["not permitted"], proc.stdout + proc.stderr
    assert "needs root" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cluster_up_without_nft_is_an_unsupported_host(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this check runs as root (CI does): without root `up` stops at the permission check first")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ip").symlink_to("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip")
    proc = subprocess.run([str(bin_path("cluster")), "up", "--name", "nonftpy", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env={"PATH": str(bindir), "HOME": str(tmp_path)})
    assert proc.returncode == TABLE["unsupported host"], proc.stdout + proc.stderr
    assert "nft is missing: apt-get install nftables" in proc.stderr, proc.stderr


def test_lab_with_a_bad_scaledobject_is_a_usage_error(tmp_path):
    bad = tmp_path / "so.yaml"
    bad.write_text("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {}\n")
    proc = run("lab", "--scaledobject", str(bad), "--out", str(tmp_path / "out"), "--live", "off")
    assert proc.returncode == TABLE["usage error"], proc.stderr


@pytest.mark.parametrize("name,args", [
    ("consumer", ["--host", "127.0.0.1", "--port", "0"]),
    ("scaler", ["--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0"]),
])
def test_sigterm_right_after_listening_drains_and_exits_ok(name, args):
    """The signal handlers exist before the `listening` line: a SIGTERM sent the moment a supervisor learns the port
    drains the server (exit 0) instead of meeting the default action (killed, no exit code)."""
    path = bin_path(name)
    for attempt in range(10):
        proc = subprocess.Popen([str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, cwd=ROOT)
        try:
            deadline = time.monotonic() + 20
            for line in proc.stdout:
                if '"listening"' in line:
                    proc.send_signal(signal.SIGTERM)
                    break
                assert time.monotonic() < deadline, f"{name} never logged listening"
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == TABLE["ok"], f"attempt {attempt}: {name} exited {code} after an early SIGTERM"
