#!/usr/bin/env bash
# What the library gives up by building without -Ounchecked (issue 9: the package has no unsafe
# flags, so users can depend on it by version). Builds `mpq` twice in release mode, as shipped and
# with -Xswiftc -Ounchecked, then times the same work with both, alternating runs:
#   - mpq bench on mobilenetv2 (float32 plan, median of 20 runs after 3 warm-ups);
#   - the SQNR evaluation of a W8A8 simulation (`mpq quantize`, which calibrates and evaluates);
#   - mpq eval-lm on the bundled tiny-llama-jargon (4 chunks of 512 tokens).
# Prints each time and the ratio shipped / -Ounchecked (> 1: the checks cost that much).
#
#   bench/unchecked_arithmetic.sh [ROUNDS]   (default 3 rounds; the fastest of each is kept)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
fixtures=${MPQ_FIXTURES:-.fixtures}
model=$fixtures/models/mobilenetv2.onnx
llm=examples/tiny-llama-jargon/model-F16.gguf
[ -f "$model" ] || { echo "unchecked_arithmetic.sh: $model missing (run scripts/setup.sh)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for build in "--scratch-path .build-release" "--scratch-path .build-ounchecked -Xswiftc -Ounchecked"; do
    # shellcheck disable=SC2086
    swift build -c release --product mpq $build > "$work/build.log" 2>&1 || { tail -20 "$work/build.log"; exit 1; }
done
shipped=.build-release/release/mpq
unchecked=.build-ounchecked/release/mpq
.venv/bin/python scripts/make_image_calib.py "$work/calib.npy" --count 8 --seed 3 >/dev/null
head -c 60000 "$fixtures/data/text/jargon.txt" > "$work/text.txt"

# Wall-clock seconds of a command (fastest of $rounds).
best() {
    local fastest=""
    for _ in $(seq "$rounds"); do
        local start t
        start=$EPOCHREALTIME
        "$@" >/dev/null 2>&1
        t=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
        fastest=$(awk -v t="$t" -v f="$fastest" 'BEGIN { print (f == "" || t < f) ? t : f }')
    done
    echo "$fastest"
}

printf '%-34s %10s %12s %7s\n' task shipped -Ounchecked ratio
row() {
    local name=$1; shift
    local a b
    a=$(best "$shipped" "$@")
    b=$(best "$unchecked" "$@")
    printf '%-34s %9.2fs %11.2fs %7.3f\n' "$name" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')"
}
row "bench mobilenetv2 fp32 (20 runs)" bench "$model" --repetitions 20
row "quantize mobilenetv2 w8a8 (8 img)" quantize "$model" --calib "$work/calib.npy" --config w8a8 --out "$work/q"
row "eval-lm tiny-llama (4 x 512)" eval-lm "$llm" --text "$work/text.txt" --context 512 --chunks 4
