#!/usr/bin/env bash
# Taylor-IP determinism (issue 11): runs the same latency search RUNS times, each with a fresh latency
# cache (every block re-timed), and says whether the chosen configurations (config.json) are identical.
# On a quiet machine they must be; `uptime` before each run shows the load.
#
# Usage: bench/taylor_determinism.sh [WORK_DIR]   (build first: swift build -c release --product mpq)
# Environment: MPQ (the mpq binary), MODEL (default .fixtures/models/mobilenetv2.onnx), CALIB (default
# 64 images from scripts/make_image_calib.py), THRESHOLD (--max-loss-mse, default 0.05), RUNS (default 3),
# THREADS (default 1), EXTRA (further mpq search arguments, e.g. "--latency-resolution 0.05").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="${FIXTURES:-$root/.fixtures}"
python="$root/.venv/bin/python"
mpq=${MPQ:-$root/.build/release/mpq}
model=${MODEL:-$shared/models/mobilenetv2.onnx}
threshold=${THRESHOLD:-0.05}
runs=${RUNS:-3}
threads=${THREADS:-1}
read -r -a extra <<< "${EXTRA:-}"
work=${1:-$(mktemp -d -t mpq-determinism-XXXXXX)}
mkdir -p "$work"
[ -x "$mpq" ] || { echo "no mpq binary at $mpq (swift build -c release --product mpq)" >&2; exit 1; }
calib=${CALIB:-$work/images64.npy}
[ -f "$calib" ] || "$python" "$root/scripts/make_image_calib.py" "$calib" --count 64 --seed 0 --images "$shared/data/images"

for run in $(seq 1 "$runs"); do
    echo "== run $run: $(uptime)"
    rm -rf "$work/cache-$run" "$work/run-$run"
    "$mpq" search "$model" --method taylor-ip --profile cpu-avx2 --calib "$calib" --max-loss-mse "$threshold" \
        --threads "$threads" ${extra[@]+"${extra[@]}"} --cache "$work/cache-$run" --out "$work/run-$run" 2>&1 | grep -E "^chosen|machine too busy" || true
    sha256sum "$work/run-$run/config.json" | cut -c1-16
done
if [ "$(for run in $(seq 1 "$runs"); do sha256sum < "$work/run-$run/config.json"; done | sort -u | wc -l)" = 1 ]; then
    echo "the $runs runs chose identical configurations"
else
    echo "the $runs runs chose different configurations"
fi
echo "outputs in $work"
