#!/usr/bin/env bash
# llama.cpp as the independent reference for mpq's LLM path: every comparison in one script.
#
#   bench/llm_reference.sh
#
# Builds llama.cpp (bench/build-llama-cpp.sh, the llama-cpp-python 0.3.36 sdist, pinned) and mpq
# (release), then, on the Jargon File's held-out tail (examples/tiny-llama-jargon/README.md: last 25%,
# sha256 fd46e81f...), context 512, CHUNKS chunks, THREADS threads for both programs:
#   1. perplexity, llama-perplexity vs `mpq eval-lm`: SmolLM2-135M Q4_1 (fixture), its F16
#      (llama-quantize --allow-requantize) and a Q4_K_M of that F16; tiny-llama F16 and its Q4_K_M
#      (imatrix from llama-imatrix on the Jargon head 60%);
#   2. mean KLD of each quantized model against its F16 (llama-perplexity --kl-divergence-base /
#      --kl-divergence vs `mpq eval-lm --reference`);
#   3. speed (llama.cpp's tokens/s over its computation vs mpq's forward-pass tokens/s, same text and
#      context) and peak RSS (/usr/bin/time -v) of plain perplexity runs, paired (SPEED_CHUNKS chunks,
#      llama.cpp then mpq, model by model, at the end);
#   4. byte identity of mpq's quantizers with llama-quantize on tiny-llama F16, without and with the
#      imatrix (bench/gguf_quantize_match.sh);
#   5. a `mpq search-lm` mix of tiny-llama (--target-bpw 5.0) loaded by llama.cpp: KLD vs F16 both ways;
#   6. llama.cpp's ladder on tiny-llama (imatrix; Q3_K_S .. Q8_0): file sizes, KLD vs F16 (and mpq's);
#   7. the figures Tests/MPQTests/LlamaCppReferenceTests.swift checks (tiny-llama F16 and Q4_K_M,
#      CI_CHUNKS chunks) and the Q4_K_M's tensor types and imatrix, from which the test rebuilds it;
#      and the KLD that llama.cpp's 8-bit/f16 activation rounding adds there, measured with the numpy
#      reference (bench/llm_activation_rounding.py), since mpq eval-lm does not simulate it.
# Writes bench/results/llm_reference.txt and bench/reference/llama_cpp_reference.json (+ the imatrix).
#
# Env: LLAMA_CPP_DIR (default .bench/llama.cpp), WORK (default .bench/llm-reference; each step's log
#      is kept there and a step whose log is complete is not run again: FORCE=1 to redo all),
#      CHUNKS (20), SPEED_CHUNKS (8), SMOL_CHUNKS (chunks for SmolLM2, default CHUNKS: ~7 min per pass in mpq on 2 busy cores), CI_CHUNKS (4), THREADS (2), MPQ (mpq binary; default: release build in .build-release),
#      IMATRIX_CHUNKS (64 chunks of 512 of the head for llama-imatrix; -1: all 514, ~40 min on 2 busy cores),
#      LADDER_MPQ (ladder types also run through mpq eval-lm, default all), SKIP_BYTE_MATCH=1 (skip step 4, which builds the test targets in debug).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export LLAMA_CPP_DIR="${LLAMA_CPP_DIR:-$ROOT/.bench/llama.cpp}"
WORK="${WORK:-$ROOT/.bench/llm-reference}"
CHUNKS="${CHUNKS:-20}"
SMOL_CHUNKS="${SMOL_CHUNKS:-$CHUNKS}"
CI_CHUNKS="${CI_CHUNKS:-4}"
IMATRIX_CHUNKS="${IMATRIX_CHUNKS:-64}"
SPEED_CHUNKS="${SPEED_CHUNKS:-8}"
THREADS="${THREADS:-2}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
LOGS="$WORK/logs"
mkdir -p "$WORK/models" "$LOGS" bench/results bench/reference

note() { echo "llm_reference: $*" >&2; }

BIN="$("$ROOT/bench/build-llama-cpp.sh" | tail -n 1)"
cp "$LLAMA_CPP_DIR/VERSION" "$WORK/llama-cpp-version.txt"
if [ -z "${MPQ:-}" ]; then
    nice -n 10 swift build -c release --scratch-path "$ROOT/.build-release" --product mpq >&2
    MPQ="$ROOT/.build-release/release/mpq"
fi
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

# ---- texts ----------------------------------------------------------------------------------------
FIXTURES="${FIXTURES:-$ROOT/.fixtures}"
TAIL="$WORK/jargon_tail25.txt" HEAD="$WORK/jargon_head60.txt"
"$PY" "$ROOT/bench/llm_reference.py" texts "$FIXTURES/data/text/jargon.txt" "$TAIL" "$HEAD"

# ---- runners: one log per step, kept; a finished log is not redone --------------------------------
done_log() { [ -z "${FORCE:-}" ] && [ -s "$LOGS/$1.log" ] && grep -q "^# done" "$LOGS/$1.log"; }
# lp NAME ARGS...: llama-perplexity (CHUNKS chunks of 512 of the tail unless ARGS say otherwise)
lp() {
    local name=llama-$1; shift
    done_log "$name" && return 0
    note "llama-perplexity $name"
    /usr/bin/time -v -o "$LOGS/$name.time" "$BIN/llama-perplexity" -t "$THREADS" -c 512 -f "$TAIL" "$@" > "$LOGS/$name.log" 2>&1
    echo "# done" >> "$LOGS/$name.log"
}
# ev NAME MODEL ARGS...: mpq eval-lm on the tail
ev() {
    local name=mpq-$1 model=$2; shift 2
    done_log "$name" && return 0
    note "mpq eval-lm $name"
    /usr/bin/time -v -o "$LOGS/$name.time" "$MPQ" eval-lm "$model" --text "$TAIL" --context 512 --threads "$THREADS" "$@" \
        > "$LOGS/$name.log" 2> "$LOGS/$name.err"
    echo "# done" >> "$LOGS/$name.log"
}
quantize() { # quantize OUT ARGS... (llama-quantize ARGS; skipped when OUT exists)
    local out=$1; shift
    [ -s "$out" ] && [ -z "${FORCE:-}" ] && return 0
    "$BIN/llama-quantize" "$@" > "$out.log" 2>&1 || { cat "$out.log" >&2; return 1; }
}

M="$WORK/models"
TINY="$ROOT/examples/tiny-llama-jargon/model-F16.gguf"
SMOL="$FIXTURES/models/SmolLM2-135M-Instruct.Q4_1.gguf"
IMATRIX="$M/tiny-imatrix.gguf"

# ---- models (tiny-llama's imatrix: llama-imatrix on the head 60%, IMATRIX_CHUNKS chunks of 512) -----------------------------------------------------------------------------------------
if [ ! -s "$IMATRIX" ] || [ -n "${FORCE:-}" ]; then
    note "llama-imatrix on the Jargon head 60% (tiny-llama)"
    "$BIN/llama-imatrix" -m "$TINY" -f "$HEAD" -c 512 --chunks "$IMATRIX_CHUNKS" -t "$THREADS" -o "$IMATRIX.part" \
        > "$LOGS/llama-imatrix.log" 2>&1
    mv "$IMATRIX.part" "$IMATRIX"
fi
quantize "$M/smol-F16.gguf" --allow-requantize "$SMOL" "$M/smol-F16.gguf" F16 "$THREADS"
quantize "$M/smol-Q4_K_M.gguf" "$M/smol-F16.gguf" "$M/smol-Q4_K_M.gguf" Q4_K_M "$THREADS"
LADDER=(Q3_K_S Q3_K_M Q4_K_S Q4_K_M Q5_K_M Q6_K Q8_0)
for t in "${LADDER[@]}"; do
    quantize "$M/tiny-$t.gguf" --imatrix "$IMATRIX" "$TINY" "$M/tiny-$t.gguf" "$t" "$THREADS"
done

# ---- 1-3: perplexity, KLD, speed, memory ------------------------------------------------------------
# llama.cpp: a plain run of each F16 (speed, memory; also its perplexity), the KLD base of each F16,
# then each quantized model against it (its perplexity, KLD, speed). mpq: the same, each quantized
# model with --reference (its speed is timed without the reference's passes). tiny-llama first.
lp tiny-F16 -m "$TINY" --chunks "$CHUNKS"
lp tiny-F16.kldbase -m "$TINY" --chunks "$CHUNKS" --kl-divergence-base "$WORK/tiny-F16.kld"
for t in "${LADDER[@]}"; do
    lp "tiny-$t" -m "$M/tiny-$t.gguf" --chunks "$CHUNKS" --kl-divergence-base "$WORK/tiny-F16.kld" --kl-divergence
done
ev tiny-F16 "$TINY" --chunks "$CHUNKS"
for t in ${LADDER_MPQ:-${LADDER[@]}}; do
    ev "tiny-$t" "$M/tiny-$t.gguf" --chunks "$CHUNKS" --reference "$TINY"
done

# ---- 7: the CI test's settings --------------------------------------------------------------------
lp ci-tiny-F16.kldbase -m "$TINY" --chunks "$CI_CHUNKS" --kl-divergence-base "$WORK/ci-tiny-F16.kld"
lp ci-tiny-Q4_K_M -m "$M/tiny-Q4_K_M.gguf" --chunks "$CI_CHUNKS" --kl-divergence-base "$WORK/ci-tiny-F16.kld" --kl-divergence
ev ci-tiny-Q4_K_M "$M/tiny-Q4_K_M.gguf" --chunks "$CI_CHUNKS" --reference "$TINY"
cp "$IMATRIX" bench/reference/tiny-llama-imatrix.gguf
# llama.cpp's CPU matmuls round activations (q8_K blocks for K-quants, f16 for F16 weights and the KV
# cache); mpq does not. The numpy reference with and without that rounding measures how much KLD it adds
# at the CI settings (bench/llm_activation_rounding.py; HF token ids, identical to llama.cpp's here).
if ! done_log numpy-ci-tiny-Q4_K_M; then
    note "numpy reference: KLD added by llama.cpp's activation rounding (tiny-llama Q4_K_M, $CI_CHUNKS chunks)"
    "$PY" Tests/Scripts/llama_reference.py --tokenize examples/tiny-llama-jargon/hf/tokenizer.json \
        "$FIXTURES/data/text/jargon.txt" "$WORK/jargon_tail25_tiny_ids.npy" --jargon-tail
    "$PY" bench/llm_activation_rounding.py "$M/tiny-Q4_K_M.gguf" "$TINY" "$WORK/jargon_tail25_tiny_ids.npy" 512 "$CI_CHUNKS" \
        > "$LOGS/numpy-ci-tiny-Q4_K_M.log" 2>&1
    echo "# done" >> "$LOGS/numpy-ci-tiny-Q4_K_M.log"
fi

# ---- 1-3 for SmolLM2-135M (slow in mpq: SMOL_CHUNKS) ----------------------------------------------
lp smol-F16 -m "$M/smol-F16.gguf" --chunks "$SMOL_CHUNKS"
lp smol-F16.kldbase -m "$M/smol-F16.gguf" --chunks "$SMOL_CHUNKS" --kl-divergence-base "$WORK/smol-F16.kld"
lp smol-Q4_1 -m "$SMOL" --chunks "$SMOL_CHUNKS" --kl-divergence-base "$WORK/smol-F16.kld" --kl-divergence
lp smol-Q4_K_M -m "$M/smol-Q4_K_M.gguf" --chunks "$SMOL_CHUNKS" --kl-divergence-base "$WORK/smol-F16.kld" --kl-divergence
ev smol-F16 "$M/smol-F16.gguf" --chunks "$SMOL_CHUNKS"
ev smol-Q4_1 "$SMOL" --chunks "$SMOL_CHUNKS" --reference "$M/smol-F16.gguf"
ev smol-Q4_K_M "$M/smol-Q4_K_M.gguf" --chunks "$SMOL_CHUNKS" --reference "$M/smol-F16.gguf"

# ---- 5: a search-lm mix loaded by llama.cpp -------------------------------------------------------
SEARCH="$WORK/search-lm"
if ! done_log mpq-search-lm; then
    note "mpq search-lm (tiny-llama, --target-bpw 5.0)"
    rm -rf "$SEARCH"
    # Short settings (~10 min on 2 busy cores): one 256-token calibration chunk, four candidate types.
    "$MPQ" search-lm "$TINY" --text "$HEAD" --target-bpw 5.0 --out "$SEARCH" --context 256 --chunks 1 \
        --types q3_K,q4_K,q5_K,q6_K --eval-text "$TAIL" --eval-chunks 1 --threads "$THREADS" --no-cache > "$LOGS/mpq-search-lm.log" 2> "$LOGS/mpq-search-lm.err"
    echo "# done" >> "$LOGS/mpq-search-lm.log"
fi
lp tiny-search-lm -m "$SEARCH/model.gguf" --chunks "$CHUNKS" --kl-divergence-base "$WORK/tiny-F16.kld" --kl-divergence
ev tiny-search-lm "$SEARCH/model.gguf" --chunks "$CHUNKS" --reference "$TINY"
if ! done_log numpy-search-lm; then  # the KLD llama.cpp's activation rounding adds to this mix (2 chunks)
    "$PY" bench/llm_activation_rounding.py "$SEARCH/model.gguf" "$TINY" "$WORK/jargon_tail25_tiny_ids.npy" 512 2 \
        > "$LOGS/numpy-search-lm.log" 2>&1
    echo "# done" >> "$LOGS/numpy-search-lm.log"
fi

# ---- 4: byte identity with llama-quantize ----------------------------------------------------------
if [ -z "${SKIP_BYTE_MATCH:-}" ]; then
    for im in none imatrix; do
        done_log "bytematch-$im" && continue
        note "bench/gguf_quantize_match.sh ($im)"
        arg=-; [ $im = imatrix ] && arg="$IMATRIX"
        WORK="$WORK/bytematch-$im" SCRATCH="${SCRATCH:-$ROOT/.build-debug}" RESULT="$LOGS/bytematch-$im.log" JOBS="$THREADS" \
            bench/gguf_quantize_match.sh "$TINY" "$arg" || true
        echo "# done" >> "$LOGS/bytematch-$im.log"
    done
fi

# ---- 3: speed and peak memory, paired ------------------------------------------------------------
# The runs above share the CPU with whatever else runs, so their speeds are not comparable with each
# other: here each model runs through llama-perplexity and right after through mpq eval-lm (plain, no
# reference), SPEED_CHUNKS chunks of the same text and context, nothing else of this script running.
for c in "tiny-F16:$TINY" "smol-F16:$M/smol-F16.gguf" "smol-Q4_K_M:$M/smol-Q4_K_M.gguf" "tiny-Q4_K_M:$M/tiny-Q4_K_M.gguf"; do
    lp "speed-${c%%:*}" -m "${c#*:}" --chunks "$SPEED_CHUNKS"
    ev "speed-${c%%:*}" "${c#*:}" --chunks "$SPEED_CHUNKS"
done

# ---- report ---------------------------------------------------------------------------------------
"$PY" "$ROOT/bench/llm_reference.py" report "$WORK" "$CHUNKS" "$CI_CHUNKS" "$THREADS" \
    bench/reference/llama_cpp_reference.json | tee bench/results/llm_reference.txt
