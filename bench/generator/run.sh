#!/usr/bin/env bash
# Generator benchmark: figures, not a gate. In one run, against the same fast target (nginx from Debian serving a small
# file, one worker pinned to CPU 0), with every tool pinned to CPU 1, the same connections and the same duration:
#   1. maximum requests/s (closed loop): our generator (latency recording on) vs wrk, hey, locust (FastHttpUser), and
#      oha when it is on PATH; CPU-seconds each tool used per 100 000 requests
#   2. open-model rate accuracy at 10 000 req/s (achieved vs asked, p99, dropped)
# Prints a markdown table (also written to bench/out/generator-bench.md).
# Env: DURATION (seconds per run, default 10), CONNECTIONS (default 50), RATE (accuracy run, default 10000),
#      SKIP_BUILD=1 to reuse target/release/generator, SKIP_LOCUST=1 to leave locust out, INSTALL_OHA=1 to add oha.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export DURATION="${DURATION:-10}" CONNECTIONS="${CONNECTIONS:-50}" RATE="${RATE:-10000}"

for tool in nginx wrk hey taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx wrk hey util-linux python3)"; exit 1; }
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p generator
fi
export GENERATOR_BIN="$ROOT/target/release/generator"

# oha joins the table when it is on PATH; INSTALL_OHA=1 builds it from crates.io into bench/out/oha (minutes).
if [[ "${INSTALL_OHA:-0}" == 1 && ! -x "$ROOT/bench/out/oha/bin/oha" ]]; then
  cargo install oha --locked --root "$ROOT/bench/out/oha"
fi
if [[ -x "$ROOT/bench/out/oha/bin/oha" ]]; then
  export PATH="$ROOT/bench/out/oha/bin:$PATH"
fi

# Locust lives in a venv under bench/out (git-ignored), installed from PyPI on first use.
if [[ "${SKIP_LOCUST:-0}" != 1 ]]; then
  VENV="$ROOT/bench/out/venv"
  if [[ ! -x "$VENV/bin/locust" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q locust
  fi
  export LOCUST_BIN="$VENV/bin/locust"
fi

exec python3 "$ROOT/bench/generator/bench.py"
