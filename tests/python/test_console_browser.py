"""The web console: its unit tests, and the page in a real browser against the real lab: `lab console` on a free port, then
tests/browser/console.mjs (playwright-core driving Debian's Chromium) starts the demo profile at a small time scale,
waits for the replica count to rise and the decision log to fill, stops it, finds it in the history after a reload,
compares two runs and opens the downloaded HTML report with the network cut. Any console error or request leaving
127.0.0.1 fails it, and so does an API request without the lab's token.

Screenshots go to a temporary directory; CONSOLE_SCREENSHOTS=docs refreshes the committed docs/console-*.png."""

import os
import pathlib
import re
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, TARGET, Proc

CHROMIUM = pathlib.Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
LAB = TARGET / "debug" / "lab"
SCRIPT = ROOT / "tests" / "browser" / "console.mjs"
CONSOLE_LINE = re.compile(r"console: (http://127\.0\.0\.1:\d+/(?:#token=\S+)?)")


def console_url(proc: Proc, timeout: float = 60.0) -> str:
    """The URL from the lab's `console: http://127.0.0.1:PORT/#token=...` line."""
    deadline = time.monotonic() + timeout
    with proc._cond:
        while time.monotonic() < deadline:
            for line in proc.lines:
                m = CONSOLE_LINE.search(line)
                if m:
                    return m.group(1)
            if proc.popen.poll() is not None:
                break
            proc._cond.wait(0.2)
    raise AssertionError("the lab printed no console URL:\n" + "\n".join(proc.lines[-40:]))


def test_console_in_a_real_browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` (apt-get install -y chromium)")
    if not LAB.exists():
        pytest.fail(f"{LAB} not found: build it with `cargo build -p lab -p consumer -p scaler` (make test does)")
    node = shutil.which("node")
    assert node, "node is required for the browser test (scripts/setup.sh builds the console with it)"
    assert (ROOT / "console" / "node_modules" / "playwright-core").is_dir(), (
        "console/node_modules is missing: run scripts/console.sh (make setup does)"
    )

    with tempfile.TemporaryDirectory(prefix="console-test-") as tmp:
        runs = pathlib.Path(tmp) / "runs"
        shots = pathlib.Path(os.environ.get("CONSOLE_SCREENSHOTS", pathlib.Path(tmp) / "shots"))
        if not shots.is_absolute():
            shots = ROOT / shots
        # With a token every API call must carry it: the page's token handling is under test too.
        token = secrets.token_urlsafe(12)
        lab = Proc([LAB, "console", "--ui-port", "0", f"--ui-token={token}", "--runs-dir", runs], kinds=())
        try:
            url = console_url(lab)
            assert url.endswith(f"#token={token}"), url
            env = dict(os.environ, CONSOLE_URL=url, SHOTS_DIR=str(shots), WORK_DIR=tmp, CHROMIUM=str(CHROMIUM))
            result = subprocess.run(
                [node, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420
            )
        finally:
            lab.kill()
        out = result.stdout + result.stderr
        assert result.returncode == 0, f"browser test failed:\n{out}\n--- lab (last lines):\n" + "\n".join(lab.lines[-30:])
        assert '"step":"ok"' in result.stdout, out
        for name in ("console-live.png", "console-compare.png"):
            assert (shots / name).stat().st_size > 10_000, f"{name} was not written"
        # The history the page showed is the lab's, kept on disk.
        assert len([p for p in runs.iterdir() if p.is_dir()]) >= 2, list(runs.iterdir())


def test_console_unit_tests():
    """The page's type check, Prettier check and Vitest unit tests (console/src/*.test.ts), so `make test` runs them."""
    npm = shutil.which("npm")
    assert npm, "npm is required (scripts/setup.sh builds the console with it)"
    assert (ROOT / "console" / "node_modules" / "vitest").is_dir(), (
        "console/node_modules is missing: run scripts/console.sh (make setup does)"
    )
    for script in ("typecheck", "lint", "test"):
        result = subprocess.run(
            [npm, "run", "--silent", script], cwd=ROOT / "console", capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"npm run {script} failed:\n{result.stdout}\n{result.stderr}"
