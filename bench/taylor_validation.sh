#!/usr/bin/env bash
# Taylor-IP validation (issue 5): for mobilenetv2 (64 images) and all-MiniLM-L6-v2 (64 sentences),
# prints the Spearman correlation of predicted vs measured loss MSE over random mixed configurations,
# the error of the summed block latencies against the whole deployed model, the integer program's
# solve time, and whether the configuration chosen at the predicted loss MSE of uniform int8 (w7a8 on
# CPUs without VNNI) measures faster than uniform int8 at equal or lower measured loss MSE.
#
# Usage: bench/taylor_validation.sh [WORK_DIR]   (build first: swift build -c release --product mpq)
# Environment: MPQ (the mpq binary), CONFIGURATIONS (random configurations, default 24), THREADS (default 1:
# on a shared 2-core machine two OpenMP threads stall at barriers whenever another process takes a core,
# in 4 ms scheduler ticks, which swamps sub-millisecond block timings), STATISTIC (median or minimum of the
# repeated runs each timing keeps; default minimum).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="${FIXTURES:-$root/.fixtures}"
python="$root/.venv/bin/python"
mpq=${MPQ:-$root/.build/release/mpq}
configurations=${CONFIGURATIONS:-24}
threads=${THREADS:-1}
statistic=${STATISTIC:-minimum}
work=${1:-$(mktemp -d -t mpq-taylor-XXXXXX)}
mkdir -p "$work"
[ -x "$mpq" ] || { echo "no mpq binary at $mpq (swift build -c release --product mpq)" >&2; exit 1; }

[ -f "$work/images64.npy" ] || "$python" "$root/scripts/make_image_calib.py" "$work/images64.npy" --count 64 --seed 0 --images "$shared/data/images"
[ -f "$work/text64.npz" ] || "$python" "$root/Tests/Scripts/make_text_inputs.py" \
    "$shared/models/all-MiniLM-L6-v2-tokenizer/tokenizer.json" "$shared/data/text/jargon.txt" "$work/text64.npz" 64 32

echo "== mobilenetv2, 64 images, pseudo-label cross-entropy, profile cpu-avx2"
"$mpq" search "$shared/models/mobilenetv2.onnx" --method taylor-ip --profile cpu-avx2 --calib "$work/images64.npy" \
    --validate "$configurations" --sweep --threads "$threads" --latency-statistic "$statistic" --cache "$work/cache" --out "$work/mobilenetv2"

echo "== mobilenetv2, 64 images, random projections of the logits (8 heads), profile cpu-avx2"
"$mpq" search "$shared/models/mobilenetv2.onnx" --method taylor-ip --profile cpu-avx2 --calib "$work/images64.npy" \
    --loss random-projection --validate "$configurations" --threads "$threads" --latency-statistic "$statistic" --cache "$work/cache" --out "$work/mobilenetv2-projections"

echo "== all-MiniLM-L6-v2, 64 sentences (<= 32 tokens), random-projection loss (8 heads), profile cpu-avx2"
"$mpq" search "$shared/models/all-MiniLM-L6-v2.onnx" --method taylor-ip --profile cpu-avx2 --calib "$work/text64.npz" \
    --validate "$configurations" --sweep --threads "$threads" --latency-statistic "$statistic" --cache "$work/cache" --out "$work/minilm"
echo "outputs in $work"
