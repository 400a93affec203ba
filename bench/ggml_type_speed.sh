#!/usr/bin/env bash
# Per-type speed table of a GGUF model on this CPU, measured with llama.cpp's own kernels (issue 14):
# for every ggml type, a copy of MODEL with every tensor in that type (llama-quantize --pure), timed by
# llama-bench for decoding (-n, one token at a time: matrix-vector products) and prompt processing
# (-p, batched: matrix-matrix products). The table feeds `mpq search-lm --speed-table FILE
# --max-ms-per-token X` and `mpq inspect MODEL.gguf --speed-table FILE`.
#
# Usage: bench/ggml_type_speed.sh MODEL.gguf OUT.json
# Environment:
#   LLAMA_CPP_BIN folder with llama-quantize and llama-bench (default /work/llama-cpp/build/bin;
#                 bench/build-llama-cpp.sh builds them from a pinned, checksummed source)
#   TYPES         llama-quantize types to time (default: the K-quants, the legacy quants, q8_0, f16;
#                 with --pure, Q3_K_S writes every tensor as q3_K, Q4_K_S as q4_K, Q5_K_S as q5_K)
#   THREADS       llama-bench threads (default 1: on a shared 2-core machine, one thread is what
#                 stays steady; the table records it and mpq reports it with every prediction)
#   ROUNDS        rounds over all types (default 3; the types are interleaved so that a slow spell of
#                 the machine hits all of them, and each figure is the median of every round's samples)
#   REPETITIONS   llama-bench repetitions per round (default 5)
#   DECODE        tokens generated per decode run (default 128)
#   PREFILL       prompt tokens per prefill run (default 512)
set -euo pipefail
model=${1:?usage: bench/ggml_type_speed.sh MODEL.gguf OUT.json}
out=${2:?usage: bench/ggml_type_speed.sh MODEL.gguf OUT.json}
bin=${LLAMA_CPP_BIN:-/work/llama-cpp/build/bin}
python="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"   # scripts/setup.sh installs gguf there
types=${TYPES:-"Q2_K Q3_K_S Q4_K_S Q5_K_S Q6_K Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 F16"}
threads=${THREADS:-1}
rounds=${ROUNDS:-3}
repetitions=${REPETITIONS:-5}
decode=${DECODE:-128}
prefill=${PREFILL:-512}
for tool in llama-quantize llama-bench; do
    [ -x "$bin/$tool" ] || { echo "no $tool in $bin (bench/build-llama-cpp.sh builds it)" >&2; exit 1; }
done
[ -f "$model" ] || { echo "no model at $model" >&2; exit 1; }
work=$(mktemp -d -t mpq-type-speed-XXXXXX)
trap 'rm -rf "$work"' EXIT

models=()
for type in $types; do
    "$bin/llama-quantize" --pure "$model" "$work/$type.gguf" "$type" "$threads" > "$work/$type.log" 2>&1 \
        || { echo "llama-quantize --pure $type failed (see below)" >&2; tail -5 "$work/$type.log" >&2; exit 1; }
    models+=("$work/$type.gguf")
done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
THREADS=$threads ROUNDS=$rounds REPETITIONS=$repetitions DECODE=$decode PREFILL=$prefill \
    python3 "$(dirname "$0")/llama_bench_times.py" "$bin/llama-bench" "$work/times.json" "${models[@]}"
"$python" - "$model" "$out" "$work" "$decode" "$prefill" "$(cat "$(dirname "$bin")/../VERSION" 2>/dev/null || echo unknown)" <<'PY'
import json, os, sys
model, out, work, decode, prefill, version = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]

def tensor_types(path):
    """(name, ggml type name, element count, dimensions) of every tensor, read by the gguf package."""
    import gguf
    return [(t.name, t.tensor_type.name.lower().replace("_k", "_K"), int(t.n_elements), len(t.shape))
            for t in gguf.GGUFReader(path).tensors]

base = tensor_types(model)
has_output = any(n == "output.weight" for n, _, _, _ in base)
# Weights of the matrix products: every 2-D tensor but the token embedding (a row lookup), unless the
# model has no output.weight and the embedding doubles as the output head.
matmul = sum(c for n, _, c, d in base if d == 2 and (n != "token_embd.weight" or not has_output))

times = json.load(open(f"{work}/times.json"))
cpu, threads = times["cpu_info"], times["threads"]

table = {}
for path in sorted(times["models"]):
    kinds = {t for n, t, c, d in tensor_types(path) if d == 2 and (n != "token_embd.weight" or not has_output)}
    if len(kinds) != 1:
        sys.exit(f"{os.path.basename(path)}: llama-quantize --pure wrote several matrix types {sorted(kinds)} (row lengths force a fallback); leave this type out")
    kind = kinds.pop()
    entry = times["models"][path]
    table[kind] = entry
    print(f"{kind:6s} decode {entry['decode_ms_per_token']:.4f} ms/token (+/- {entry['decode_spread_ms']:.4f}), "
          f"prefill {entry['prefill_ms_per_token']:.4f} ms/token (+/- {entry['prefill_spread_ms']:.4f})")

result = {
    "format": "mpq-ggml-type-speed-1",
    "source": f"llama-bench, {version}",
    "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), cpu),
    "threads": threads,
    "model": os.path.basename(model),
    "matmul_weights": matmul,
    "decode_tokens": decode,
    "prefill_tokens": prefill,
    "types": table,
}
with open(out, "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
    f.write("\n")
print(f"wrote {out}: {len(table)} types, {matmul} matrix weights, {threads} thread(s)")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
