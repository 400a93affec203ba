#!/usr/bin/env bash
# Byte-identity of mpq's ggml quantisers (Sources/MPQGGUF) against llama.cpp's llama-quantize.
#
#   bench/gguf_quantize_match.sh MODEL.gguf [IMATRIX] [TYPES...]
#
# MODEL.gguf: an F32/F16/BF16 GGUF model (e.g. from convert_hf_to_gguf.py --outtype f16).
# IMATRIX:    optional importance matrix (.gguf or legacy .dat from llama-imatrix); "-" for none.
# TYPES:      llama-quantize type names (default: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS).
#
# Steps: build llama.cpp as vendored in the llama-cpp-python 0.3.36 sdist (bench/build-llama-cpp.sh,
# CPU only, ~25 min the first time), quantize MODEL with --pure to each type,
# then run the MPQGGUF test GGMLReferenceTests, which re-quantizes every tensor of every output with
# mpq (same imatrix) and reports identical bytes per ggml type. It also checks the single-file
# reference (bench/gguf_ggml_reference.c + ggml-quants.c) on synthetic data.
# Results go to bench/results/gguf_quantize_match.txt (RESULT=FILE to change).
# Env: LLAMA_CPP_DIR (llama.cpp build, see bench/build-llama-cpp.sh), WORK (quantized outputs),
#      SCRATCH (swift test --scratch-path, default .build-gguf), JOBS.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="$(realpath "${1:?usage: $0 MODEL.gguf [IMATRIX|-] [TYPES...]}")"
IMATRIX="${2:--}"
shift $(( $# >= 2 ? 2 : $# ))
TYPES=("$@")
[ ${#TYPES[@]} -eq 0 ] && TYPES=(Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS)
WORK="${WORK:-$ROOT/.build-gguf-bench}"
JOBS="${JOBS:-$(nproc)}"
mkdir -p "$WORK" "$ROOT/bench/results"

# llama.cpp (llama-quantize) from the llama-cpp-python 0.3.36 sdist, pinned by URL and sha256:
# bench/build-llama-cpp.sh builds it once into LLAMA_CPP_DIR (default .bench/llama.cpp).
export LLAMA_CPP_DIR="${LLAMA_CPP_DIR:-$ROOT/.bench/llama.cpp}"
BIN="$(JOBS="$JOBS" "$ROOT/bench/build-llama-cpp.sh" | tail -n 1)"
SRC="$(dirname "$(dirname "$BIN")")/src/llama_cpp_python-0.3.36/vendor/llama.cpp"
QUANTIZE="$BIN/llama-quantize"

OUT="$WORK/quantized"
rm -rf "$OUT" && mkdir -p "$OUT"
for t in "${TYPES[@]}"; do
    args=(--pure)
    [ "$IMATRIX" != "-" ] && args+=(--imatrix "$(realpath "$IMATRIX")")
    "$QUANTIZE" "${args[@]}" "$MODEL" "$OUT/$t.gguf" "$t" "$JOBS" > "$OUT/$t.log" 2>&1
done

cd "$ROOT"
export MPQ_GGML_SRC="$SRC/ggml" MPQ_LLAMA_QUANTIZE_DIR="$OUT" MPQ_LLAMA_QUANTIZE_MODEL="$MODEL"
[ "$IMATRIX" != "-" ] && export MPQ_LLAMA_QUANTIZE_IMATRIX="$(realpath "$IMATRIX")"
# Both suites of Tests/MPQGGUFTests/GGMLReferenceTests.swift (the filter matches suite names, not files).
swift test --scratch-path "${SCRATCH:-.build-gguf}" --filter 'GGMLReferenceTests|LlamaQuantizeMatchTests' 2>&1 \
    | tee "${RESULT:-$ROOT/bench/results/gguf_quantize_match.txt}"
