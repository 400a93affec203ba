#!/usr/bin/env bash
# Uniform-precision baselines: output SQNR vs FP32 (and top-1 agreement /
# cosine similarity of sentence embeddings) on 128 calibration crops for
# MobileNetV2 and 128 sentences for MiniLM-L6, per-channel weights, the same
# data for calibration and evaluation. Writes docs/baselines.md.
# Usage: bench/uniform_baselines.sh [FIXTURES]  (default .fixtures, made by scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-.fixtures}
python=.venv/bin/python
swift build -c release --product mpq >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$python" scripts/make_image_calib.py "$work/images.npy" --count 128 --images "$shared/data/images"
"$python" Tests/Scripts/make_text_inputs.py "$shared/models/all-MiniLM-L6-v2-tokenizer/tokenizer.json" \
  "$shared/data/text/jargon.txt" "$work/text.npz" 128
mkdir -p docs
{
  echo "# Uniform baselines"
  echo
  echo "Output vs FP32 over the calibration set, per-channel symmetric weights (min-max),"
  echo "asymmetric per-tensor activations (MSE range). Reproduce: \`bench/uniform_baselines.sh\`."
  echo
  echo "| model | config | output SQNR (dB) | top-1 agreement | cosine similarity |"
  echo "|---|---|---|---|---|"
  for config in w8a8 w4a8 w8a16 w16a16 w4a4; do
    r=$(.build/release/mpq eval "$shared/models/mobilenetv2.onnx" --calib "$work/images.npy" --config $config --per-channel 2>/dev/null)
    sqnr=$(sed -n 's/output SQNR \(.*\) dB/\1/p' <<<"$r"); top1=$(sed -n 's/top-1 agreement with FP32 \(.*\)/\1/p' <<<"$r")
    echo "| mobilenetv2 (128 crops) | $config | $sqnr | $top1 | |"
  done
  for config in w8a8 w4a8; do
    r=$(.build/release/mpq eval "$shared/models/all-MiniLM-L6-v2.onnx" --calib "$work/text.npz" --config $config --per-channel 2>/dev/null)
    sqnr=$(sed -n 's/output SQNR \(.*\) dB/\1/p' <<<"$r"); cosine=$(sed -n 's/cosine similarity \(.*\)/\1/p' <<<"$r")
    echo "| all-MiniLM-L6-v2 (128 sentences) | $config | $sqnr | | $cosine |"
  done
} > docs/baselines.md
cat docs/baselines.md
