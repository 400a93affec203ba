#!/usr/bin/env bash
# Throughput of MPQGGUF (ggml quantisation per type, with and without importance matrix, one thread
# and all threads; dequantisation; GGUF open/validate and rewrite of MODEL).
#
#   bench/gguf_bench.sh [MODEL.gguf]     (default: examples/tiny-llama-jargon/model-F16.gguf)
#
# Builds Sources/MPQGGUF with bench/gguf_bench.swift as one optimised module with swiftc (no
# package build), then runs it. Output also goes to bench/gguf_bench_results.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$ROOT/examples/tiny-llama-jargon/model-F16.gguf}"
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
cp "$ROOT/bench/gguf_bench.swift" "$BUILD/main.swift"
mapfile -t SOURCES < <(find "$ROOT/Sources/MPQGGUF" -name '*.swift' | sort)
swiftc -O -module-name GGUFBench "${SOURCES[@]}" "$BUILD/main.swift" -o "$BUILD/gguf_bench"
"$BUILD/gguf_bench" ${MODEL:+"$MODEL"} | tee "$ROOT/bench/gguf_bench_results.txt"
