#!/usr/bin/env bash
# Speed of mpq's GGUF mixes in llama.cpp on this CPU (issue 14's per-type speed table), on
# examples/tiny-llama-jargon, in one run:
#   1. the per-type table (bench/ggml_type_speed.sh), measured now;
#   2. predicted (mpq inspect --speed-table) vs measured (llama-bench) milliseconds per token,
#      decoding and prompt processing, for llama.cpp's ladder (imatrix from the calibration text);
#   3. at Q4_K_M's exact file size: llama.cpp's Q4_K_M, mpq taylor-ip, and mpq taylor-ip with
#      --max-ms-per-token at Q4_K_M's predicted decode time; each with its held-out mean KLD
#      (llama-perplexity against the F16 logits, Jargon tail, 512 x 20) and measured speed.
# Writes bench/results/llm_speed.csv.
#
# Usage: bench/llm_speed.sh [WORK_DIR]
# Environment: MPQ (default .build/release/mpq), LLAMA_CPP_BIN (default /work/llama-cpp/build/bin;
# bench/build-llama-cpp.sh builds it), THREADS (llama-bench threads, default 1), CHUNKS (calibration
# chunks of 512 tokens, default 4), DRAWS (taylor-ip label draws, default 16), PRESETS (ladder rows).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mpq=${MPQ:-$root/.build/release/mpq}
bin=${LLAMA_CPP_BIN:-/work/llama-cpp/build/bin}
presets=${PRESETS:-"Q3_K_S Q3_K_M Q4_K_S Q4_K_M Q5_K_M Q6_K Q8_0"}
export THREADS=${THREADS:-1}
chunks=${CHUNKS:-4}
draws=${DRAWS:-16}
work=${1:-$(mktemp -d -t mpq-llm-speed-XXXXXX)}
base="$root/examples/tiny-llama-jargon/model-F16.gguf"
csv="$root/bench/results/llm_speed.csv"
mkdir -p "$work" "$root/bench/results"
[ -x "$mpq" ] || { echo "no mpq binary at $mpq (swift build -c release --product mpq)" >&2; exit 1; }
for tool in llama-quantize llama-bench llama-perplexity; do
    [ -x "$bin/$tool" ] || { echo "no $tool in $bin (bench/build-llama-cpp.sh builds it)" >&2; exit 1; }
done

echo "== 1. per-type table ($THREADS thread(s))"
table="$work/speed.json"
[ -f "$table" ] || LLAMA_CPP_BIN="$bin" "$root/bench/ggml_type_speed.sh" "$base" "$table"
python3 "$root/bench/llm_texts.py" "$root/.fixtures/data/text/jargon.txt" "$work"

echo "== 3. searches at Q4_K_M's size"
imatrix="$work/free/imatrix.gguf"
q4km="$work/llama-Q4_K_M.gguf"
search() { # OUT [extra options]
    local out=$1; shift
    [ -f "$out/model.gguf" ] || "$mpq" search-lm "$base" --method taylor-ip --text "$work/calib.txt" --target-size 6985056 \
        --context 512 --chunks "$chunks" --draws "$draws" --speed-table "$table" --cache "$work/cache" --out "$out" "$@" >/dev/null
}
search "$work/free"
for preset in $presets; do
    [ -f "$work/llama-$preset.gguf" ] || "$bin/llama-quantize" --imatrix "$imatrix" "$base" "$work/llama-$preset.gguf" "$preset" >/dev/null 2>&1
done
predicted() { # MODEL PHASE...: the predicted ms/token of each phase, space-separated, from one mpq inspect
    local model=$1; shift
    "$mpq" inspect "$model" --speed-table "$table" --json \
        | python3 -c "import json,sys; p = json.load(sys.stdin)['predicted_ms_per_token']; print(*(p[a] for a in sys.argv[1:]))" "$@"
}
limit=$(predicted "$q4km" decode)
echo "Q4_K_M predicted decode: $limit ms/token"
search "$work/fast" --max-ms-per-token "$limit"

echo "== 2. predicted vs measured (llama-bench)"
models=()
for preset in $presets; do models+=("$work/llama-$preset.gguf"); done
models+=("$work/free/model.gguf" "$work/fast/model.gguf")
python3 "$root/bench/llama_bench_times.py" "$bin/llama-bench" "$work/times.json" "${models[@]}"

[ -f "$work/base.kld" ] || "$bin/llama-perplexity" -m "$base" -f "$work/eval_jargon_tail25.txt" -c 512 --chunks 20 \
    --kl-divergence-base "$work/base.kld" >/dev/null 2>&1
kld() { "$bin/llama-perplexity" -m "$1" -c 512 --chunks 20 --kl-divergence-base "$work/base.kld" --kl-divergence 2>&1 | awk '/Mean +KLD:/ {print $3 "," $5}'; }

echo "model,file_bytes,predicted_decode_ms,measured_decode_ms,decode_error_pct,predicted_prefill_ms,measured_prefill_ms,prefill_error_pct,held_out_kld,kld_error" > "$csv"
for model in "${models[@]}"; do
    case $model in */free/*) name="mpq taylor-ip";; */fast/*) name="mpq taylor-ip --max-ms-per-token $limit";; *) name=$(basename "$model" .gguf);; esac
    read -r decode prefill <<< "$(predicted "$model" decode prefill)"
    row=$(python3 - "$work/times.json" "$model" "$decode" "$prefill" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["models"][sys.argv[2]]
d, p = float(sys.argv[3]), float(sys.argv[4])
md, mp = t["decode_ms_per_token"], t["prefill_ms_per_token"]
print(f"{d:.4f},{md:.4f},{100 * (d - md) / md:+.1f},{p:.4f},{mp:.4f},{100 * (p - mp) / mp:+.1f}")
PY
)
    line="$name,$(stat -c %s "$model"),$row,$(kld "$model")"
    echo "$line" >> "$csv"
    echo "$line"
done
echo "wrote $csv (work: $work)"
