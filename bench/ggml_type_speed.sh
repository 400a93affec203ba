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
python3 - "$model" "$out" "$work" "$decode" "$prefill" "$(cat "$(dirname "$bin")/../VERSION" 2>/dev/null || echo unknown)" <<'PY'
import json, os, struct, sys
model, out, work, decode, prefill, version = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]

def tensor_types(path):
    """(name, ggml type id, element count, dimensions) of every tensor of a GGUF file (v2/v3 header walk)."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    assert data[:4] == b"GGUF", path
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos); pos += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def skip(t):
        nonlocal pos
        if t == 8:
            n, = struct.unpack_from("<Q", data, pos); pos += 8 + n
        elif t == 9:
            inner, count = struct.unpack_from("<IQ", data, pos); pos += 12
            for _ in range(count): skip(inner)
        else:
            pos += sizes[t]
    for _ in range(n_kv):
        n, = struct.unpack_from("<Q", data, pos); pos += 8 + n
        t, = struct.unpack_from("<I", data, pos); pos += 4
        skip(t)
    tensors = []
    for _ in range(n_tensors):
        n, = struct.unpack_from("<Q", data, pos); pos += 8
        name = data[pos:pos + n].decode(); pos += n
        dims, = struct.unpack_from("<I", data, pos); pos += 4
        shape = struct.unpack_from(f"<{dims}Q", data, pos); pos += 8 * dims
        t, = struct.unpack_from("<I", data, pos); pos += 4 + 8
        count = 1
        for d in shape: count *= d
        tensors.append((name, t, count, dims))
    return tensors

names = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 10: "q2_K", 11: "q3_K",
         12: "q4_K", 13: "q5_K", 14: "q6_K", 30: "bf16"}
base = tensor_types(model)
has_output = any(n == "output.weight" for n, _, _, _ in base)
# Weights of the matrix products: every 2-D tensor but the token embedding (a row lookup), unless the
# model has no output.weight and the embedding doubles as the output head.
matmul = sum(c for n, _, c, d in base if d == 2 and (n != "token_embd.weight" or not has_output))

times = json.load(open(f"{work}/times.json"))
cpu, threads = times["cpu_info"], times["threads"]

table = {}
for path in sorted(times["models"]):
    kinds = {names.get(t, str(t)) for n, t, c, d in tensor_types(path) if d == 2 and (n != "token_embd.weight" or not has_output)}
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
