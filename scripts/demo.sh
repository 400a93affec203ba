#!/usr/bin/env bash
# The main job on a real example: build mpq, turn four photos into an
# ImageNet-normalised batch, inspect MobileNetV2, run it on the batch, export a
# W8A8 QDQ model, and search per-layer precisions (Pareto-greedy) for the
# cheapest configuration with output SQNR >= 30 dB on 16 crops of the photos.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product mpq
example=examples/mobilenetv2
mkdir -p out
.venv/bin/python scripts/make_image_calib.py out/photos.npy --count 4 --images "$example/images"
.build/release/mpq inspect "$example/mobilenetv2.onnx" | sed -n '1,12p;/total MACs/p'
.build/release/mpq run "$example/mobilenetv2.onnx" --input out/photos.npy --output out/logits.npz
# Held-out evaluation crops (another seed: crops the calibration never saw).
.venv/bin/python scripts/make_image_calib.py out/held-out.npy --count 16 --seed 1 --images "$example/images"
# Quantize it (W8A8, per-channel weights) with the photos as calibration data, scored on the held-out crops.
.build/release/mpq quantize "$example/mobilenetv2.onnx" --calib out/photos.npy --eval out/held-out.npy --config w8a8 --per-channel --out out/w8a8
# Mixed precision: the accuracy-vs-BOPs front and the cheapest point with SQNR >= 30 dB
# (out/search/report.html, pareto.svg, config.json, model.qdq.onnx).
.venv/bin/python scripts/make_image_calib.py out/crops.npy --count 16 --images "$example/images"
.build/release/mpq search pareto "$example/mobilenetv2.onnx" --calib out/crops.npy --eval out/held-out.npy \
  --candidates w8a8,w4a8,w8a16,w16a16 --target-sqnr 30 --cache out/cache --out out/search
