#!/usr/bin/env bash
# The main job on a real example: build mpq, turn four photos into an
# ImageNet-normalised batch, inspect MobileNetV2, run it on the batch, and
# export a W8A8 QDQ model with encodings and a report.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product mpq
example=examples/mobilenetv2
mkdir -p out
python3 scripts/make_image_calib.py out/photos.npy --count 4 --images "$example/images"
.build/release/mpq inspect "$example/mobilenetv2.onnx" | sed -n '1,12p;/total MACs/p'
.build/release/mpq run "$example/mobilenetv2.onnx" --input out/photos.npy --output out/logits.npz
# Quantize it (W8A8, per-channel weights) with the photos as calibration data.
.build/release/mpq quantize "$example/mobilenetv2.onnx" --calib out/photos.npy --config w8a8 --per-channel --out out/w8a8
