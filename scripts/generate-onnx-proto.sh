#!/usr/bin/env bash
# Regenerates Sources/ONNXProto/onnx.pb.swift from the onnx.proto shipped in the
# `onnx` wheel (1.23). Needs protoc (Debian protobuf-compiler) and protoc-gen-swift
# built from swift-protobuf 1.39.0 (same version as Package.swift):
#   git clone https://github.com/apple/swift-protobuf && cd swift-protobuf &&
#   git checkout 1.39.0 && swift build -c release --product protoc-gen-swift
# then run: PROTOC_GEN_SWIFT=/path/to/.build/release/protoc-gen-swift scripts/generate-onnx-proto.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift)}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
pip download --quiet --no-deps --only-binary=:all: -d "$work" "onnx==1.23.*"
python3 -m zipfile -e "$work"/onnx-*.whl "$work/wheel"
cp "$work/wheel/onnx/onnx.proto" "$work/onnx.proto"
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Public \
  --swift_out="$work" -I "$work" "$work/onnx.proto"
mv "$work/onnx.pb.swift" "$root/Sources/ONNXProto/onnx.pb.swift"
echo "wrote Sources/ONNXProto/onnx.pb.swift"
