#!/usr/bin/env bash
# Scaler benchmark: figures, not a gate. One run of scaler/examples/scaler_bench.rs against the release binaries, with a
# real consumer and a real Prometheus on 127.0.0.1:
#   1. GetMetrics latency p50/p99 at 1, 16, 256 concurrent callers; peer: the same PromQL as a Prometheus instant query
#      (what KEDA's built-in Prometheus trigger sends per call), as a p99 ratio;
#   2. activation latency, load start -> StreamIsActive true: direct source vs Prometheus source, same runs;
#   3. source requests/s while 100 ScaledObjects are polled by KEDA-like callers (IsActive + GetMetrics every 100 ms),
#      vs one source request per call (the built-in trigger), as a ratio.
# The scaler runs pinned to CPU 0 and the driver to CPU 1 when there are two cores.
# Env: SECONDS_PER_LEVEL (default 5), ACTIVATION_RUNS (default 3), SKIP_BUILD=1 to reuse binaries, PROFILE (release),
# PIN=0 to let the OS place the scaler and the driver (useful on a machine shared with other work).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || { echo "missing prometheus (apt-get install prometheus)"; exit 1; }

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
PROFILE_FLAG=(--profile "$PROFILE")
OUT_DIR="$PROFILE"; [ "$PROFILE" = dev ] && OUT_DIR=debug
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building ($PROFILE): scaler, consumer, bench driver"
  cargo build "${PROFILE_FLAG[@]}" --quiet -p scaler -p consumer --bins
  cargo build "${PROFILE_FLAG[@]}" --quiet -p scaler --example scaler_bench
fi

PIN=()
DRIVER_PIN=()
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN=(--pin-scaler-cpu 0)
  DRIVER_PIN=(taskset -c 1)
fi
echo "== scaler benchmark on $(nproc) cores, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"${DRIVER_PIN[@]}" "$TARGET_DIR/$OUT_DIR/examples/scaler_bench" \
  --scaler "$TARGET_DIR/$OUT_DIR/scaler" --consumer "$TARGET_DIR/$OUT_DIR/consumer" \
  --seconds "${SECONDS_PER_LEVEL:-5}" --activation-runs "${ACTIVATION_RUNS:-3}" "${PIN[@]}"
