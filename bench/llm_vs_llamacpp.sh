#!/usr/bin/env bash
# mpq search-lm (pareto and taylor-ip) against llama.cpp's quantization ladder on
# examples/tiny-llama-jargon (issue 14): at each preset's exact file size, both mpq methods and a
# random allocation (same size, same imatrix), scored by mean KLD against model-F16.gguf on the
# Jargon tail (context 512 x 20 chunks). Writes bench/results/llm_vs_llamacpp.csv and .svg.
#
# Usage: bench/llm_vs_llamacpp.sh [WORK_DIR]
# Environment:
#   MPQ           the mpq binary (default .build/release/mpq; swift build -c release --product mpq)
#   LLAMA_CPP_BIN folder with llama-quantize and llama-perplexity (default /work/llama-cpp/build/bin).
#                 When present: the ladder is quantized with llama-quantize (mpq's imatrix, so every
#                 arm has the same one) and every arm is also scored with llama-perplexity. When absent:
#                 the ladder rows are the issue's measured figures (llama-perplexity, imatrix on the
#                 calibration text) and the mpq arms are scored with mpq eval-lm only.
#   PRESETS       presets to run (default: Q3_K_S Q3_K_M Q4_K_S Q4_K_M Q5_K_M Q6_K)
#   CHUNKS        calibration chunks of 512 tokens for the searches (default 4)
#   DRAWS         taylor-ip label draws per chunk (default 16: fewer leave the sensitivities noisy)
#   THREADS       threads (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mpq=${MPQ:-$root/.build/release/mpq}
bin=${LLAMA_CPP_BIN:-/work/llama-cpp/build/bin}
presets=${PRESETS:-"Q3_K_S Q3_K_M Q4_K_S Q4_K_M Q5_K_M Q6_K"}
chunks=${CHUNKS:-4}
draws=${DRAWS:-16}
threads=${THREADS:+--threads $THREADS}
work=${1:-$(mktemp -d -t mpq-llm-bench-XXXXXX)}
base="$root/examples/tiny-llama-jargon/model-F16.gguf"
results="$root/bench/results"
csv="$results/llm_vs_llamacpp.csv"
mkdir -p "$work" "$results"
[ -x "$mpq" ] || { echo "no mpq binary at $mpq (swift build -c release --product mpq)" >&2; exit 1; }
weights=10490112

# The issue's ladder: file bytes and KLD (llama-perplexity, imatrix on the calibration text).
declare -A ladder_bytes=([Q3_K_S]=5634400 [Q3_K_M]=5955936 [Q4_K_S]=6789472 [Q4_K_M]=6985056 [Q5_K_M]=7918944 [Q6_K]=8911200)
declare -A ladder_kld=([Q3_K_S]=0.00889 [Q3_K_M]=0.00673 [Q4_K_S]=0.00184 [Q4_K_M]=0.00166 [Q5_K_M]=0.00052 [Q6_K]=0.00024)

python3 "$root/bench/llm_texts.py" "$root/.fixtures/data/text/jargon.txt" "$work"

llama=false
if [ -x "$bin/llama-quantize" ] && [ -x "$bin/llama-perplexity" ]; then llama=true; fi
echo "llama.cpp binaries in $bin: $llama"

# mpq eval-lm: "mean KLD: a +/- b" and "perplexity: p".
eval_mpq() {
    "$mpq" eval-lm "$1" --text "$work/eval_jargon_tail25.txt" --context 512 --chunks 20 --reference "$base" $threads 2>/dev/null \
        | awk '/^mean KLD:/ {k=$3; e=$5} /^perplexity:/ {p=$2} END {print k "," e "," p}'
}
# llama-perplexity against the F16 logits: "Mean    KLD:   a ±   b".
eval_llama() {
    [ -f "$work/base.kld" ] || "$bin/llama-perplexity" -m "$base" -f "$work/eval_jargon_tail25.txt" -c 512 --chunks 20 \
        --kl-divergence-base "$work/base.kld" >/dev/null 2>&1
    "$bin/llama-perplexity" -m "$1" -c 512 --chunks 20 --kl-divergence-base "$work/base.kld" --kl-divergence 2>&1 \
        | awk '/Mean +KLD:/ {print $3 "," $5}'
}
bytes() { stat -c %s "$1"; }
bpw() { python3 -c "print(f'{8 * $1 / $weights:.4f}')"; }
# Seconds of the Taylor passes and of one full calibration evaluation, from report.md (search_seconds:
# the search's whole run, from the same report).
times() {
    echo "$(sed -n 's/.*Taylor passes \([0-9.]*\) s.*/\1/p' "$1" | head -1),$(sed -n 's/.*one full calibration evaluation \([0-9.]*\) s.*/\1/p' "$1" | head -1)"
}

echo "arm,preset,target_bytes,file_bytes,bits_per_weight,kld,kld_error,perplexity,engine,search_seconds,taylor_pass_seconds,full_evaluation_seconds" > "$csv"
row() { echo "$1" >> "$csv"; echo "$1"; }
for preset in $presets; do
    target=${ladder_bytes[$preset]}
    for method in taylor-ip pareto; do
        out="$work/$method-$preset"
        extra=()
        [ "$method" = taylor-ip ] && extra=(--draws "$draws" --random-control 1)
        [ -f "$out/model.gguf" ] || "$mpq" search-lm "$base" --method "$method" --text "$work/calib.txt" --target-size "$target" \
            --context 512 --chunks "$chunks" --cache "$work/cache" --out "$out" "${extra[@]}" $threads
        seconds=$(sed -n 's/.*whole run \([0-9.]*\) s.*/\1/p' "$out/report.md" | head -1)
        size=$(bytes "$out/model.gguf")
        row "mpq $method,$preset,$target,$size,$(bpw "$size"),$(eval_mpq "$out/model.gguf"),mpq eval-lm,$seconds,$(times "$out/report.md")"
        $llama && row "mpq $method,$preset,$target,$size,$(bpw "$size"),$(eval_llama "$out/model.gguf"),,llama-perplexity,$seconds,,"
    done
    random="$work/taylor-ip-$preset/random-control.gguf"
    size=$(bytes "$random")
    row "random control,$preset,$target,$size,$(bpw "$size"),$(eval_mpq "$random"),mpq eval-lm,,,"
    if $llama; then
        ladder="$work/llama-$preset.gguf"
        [ -f "$ladder" ] || "$bin/llama-quantize" --imatrix "$work/taylor-ip-$preset/imatrix.gguf" "$base" "$ladder" "$preset" >/dev/null 2>&1
        size=$(bytes "$ladder")
        row "llama.cpp ladder,$preset,$target,$size,$(bpw "$size"),$(eval_llama "$ladder"),,llama-perplexity,,,"
        row "llama.cpp ladder,$preset,$target,$size,$(bpw "$size"),$(eval_mpq "$ladder"),mpq eval-lm,,,"
    else
        row "llama.cpp ladder,$preset,$target,$target,$(bpw "$target"),${ladder_kld[$preset]},,,issue 14 (llama-perplexity),,,"
    fi
done

plot="$(mktemp -d)"
trap 'rm -rf "$plot"' EXIT
cp "$root/bench/llm_plot.swift" "$plot/main.swift"
swiftc -O -module-name LLMPlot "$root/Sources/MPQReports/LinePlot.swift" "$plot/main.swift" -o "$plot/llm_plot"
"$plot/llm_plot" "$csv" "$results/llm_vs_llamacpp.svg"
echo "wrote $csv and $results/llm_vs_llamacpp.svg (work: $work)"
