#!/usr/bin/env bash
# Byte-identity of mpq's ggml quantisers (Sources/MPQGGUF) against llama.cpp's llama-quantize.
#
#   bench/gguf_quantize_match.sh MODEL.gguf [IMATRIX] [TYPES...]
#
# MODEL.gguf: an F32/F16/BF16 GGUF model (e.g. from convert_hf_to_gguf.py --outtype f16).
# IMATRIX:    optional importance matrix (.gguf or legacy .dat from llama-imatrix); "-" for none.
# TYPES:      llama-quantize type names (default: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS).
#
# Steps: fetch llama.cpp as vendored in the llama-cpp-python 0.3.36 sdist (PyPI), build
# llama-quantize with CMake (CPU only, several minutes), quantize MODEL with --pure to each type,
# then run the MPQGGUF test GGMLReferenceTests, which re-quantizes every tensor of every output with
# mpq (same imatrix) and reports identical bytes per ggml type. It also checks the single-file
# reference (bench/gguf_ggml_reference.c + ggml-quants.c) on synthetic data.
# Results go to bench/results/gguf_quantize_match.txt.
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

SRC="$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp"
if [ ! -d "$SRC" ]; then
    # The sdist URL from PyPI's JSON API (pip download would try to build the package's build dependencies).
    URL="$("$ROOT/.venv/bin/python" - <<'PY'
import json, urllib.request
data = json.load(urllib.request.urlopen("https://pypi.org/pypi/llama-cpp-python/0.3.36/json"))
print(next(u["url"] for u in data["urls"] if u["packagetype"] == "sdist"))
PY
)"
    curl -fsSL "$URL" -o "$WORK/llama-cpp-python.tar.gz"
    tar -xzf "$WORK/llama-cpp-python.tar.gz" -C "$WORK"
fi

QUANTIZE="$WORK/build/bin/llama-quantize"
if [ ! -x "$QUANTIZE" ]; then
    cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF
    cmake --build "$WORK/build" --target llama-quantize -j "$JOBS"
fi

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
swift test --scratch-path .build-gguf --filter GGMLReferenceTests 2>&1 | tee "$ROOT/bench/results/gguf_quantize_match.txt"
