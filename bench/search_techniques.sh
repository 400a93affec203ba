#!/usr/bin/env bash
# Techniques inside the Pareto search: mobilenetv2, 64 calibration crops, 128 held-out crops (another
# seed), candidates w8a8, w4a8, w8a16, w16a16, without and with --techniques (default smoothquant,seq-mse,adaround,bias-correction).
# Prints, per run, the relative BOPs of the point chosen for 30 dB (calibration SQNR) with its held-out
# SQNR, and the held-out SQNR of the point chosen at relative BOPs 0.25.
# Usage: bench/search_techniques.sh [TECHNIQUES] [BUILD]  (BUILD: a release build folder, default .build)
set -euo pipefail
cd "$(dirname "$0")/.."
techniques=${1:-smoothquant,seq-mse,adaround,bias-correction}
build=${2:-.build}
python=.venv/bin/python
swift build -c release --product mpq --scratch-path "$build" >/dev/null
mpq="$build/release/mpq"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$python" scripts/make_image_calib.py "$work/calib.npy" --count 64 --seed 0
"$python" scripts/make_image_calib.py "$work/heldout.npy" --count 128 --seed 1
model=.fixtures/models/mobilenetv2.onnx
common=(--method pareto --calib "$work/calib.npy" --eval "$work/heldout.npy" --candidates w8a8,w4a8,w8a16,w16a16 --cache "$work/cache")
for run in none "$techniques"; do
  start=$(date +%s)
  sqnr=$("$mpq" search "$model" "${common[@]}" --techniques "$run" --target-sqnr 30 --out "$work/sqnr" 2>/dev/null)
  cost=$("$mpq" search "$model" "${common[@]}" --techniques "$run" --target-cost 0.25 --out "$work/cost" 2>/dev/null)
  echo "techniques $run ($(( $(date +%s) - start )) s):"
  grep -E "^chosen|^held-out" <<<"$sqnr" | sed 's/^/  30 dB: /'
  grep -E "^chosen|^held-out" <<<"$cost" | sed 's/^/  0.25: /'
done
