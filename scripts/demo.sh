#!/usr/bin/env bash
# The main job on a real example: build mpq, turn four photos into an
# ImageNet-normalised batch, inspect MobileNetV2 and run it on the batch.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product mpq
example=examples/mobilenetv2
mkdir -p out
python3 scripts/make_image_calib.py out/photos.npy --count 4 --images "$example/images"
.build/release/mpq inspect "$example/mobilenetv2.onnx" | sed -n '1,12p;/total MACs/p'
.build/release/mpq run "$example/mobilenetv2.onnx" --input out/photos.npy --output out/logits.npz
