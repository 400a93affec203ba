#!/usr/bin/env bash
# Phase-1 wall time and evaluation count of the Pareto-greedy search, with and
# without the activation cache: mobilenetv2 (64 crops, SQNR, --target-sqnr 30)
# and MiniLM-L6 (64 sentences, cosine, --max-drop 0.01), candidates
# w8a8,w4a8,w8a16,w16a16, fresh score caches. Needs `swift build -c release`.
# Usage: bench/pareto_phase1.sh [FIXTURES]  (default .fixtures, made by scripts/setup.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${1:-$ROOT/.fixtures}"
PYTHON="$ROOT/.venv/bin/python"
MPQ="$ROOT/.build/release/mpq"
[ -x "$MPQ" ] || { echo "run 'swift build -c release' first" >&2; exit 1; }
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
"$PYTHON" "$ROOT/scripts/make_image_calib.py" "$TMP/images.npy" --count 64 --images "$SHARED/data/images" >/dev/null
"$PYTHON" "$ROOT/Tests/Scripts/make_text_inputs.py" "$SHARED/models/all-MiniLM-L6-v2-tokenizer/tokenizer.json" \
  "$SHARED/data/text/hamlet_gut.txt" "$TMP/tokens.npz" 64 >/dev/null
run() { # name model calib extra...
  local name="$1" model="$2" calib="$3"; shift 3
  for mode in with without; do
    local flag=(); [ "$mode" = without ] && flag=(--no-activation-cache)
    "$MPQ" search "$SHARED/models/$model" --method pareto --calib "$calib" --candidates w8a8,w4a8,w8a16,w16a16 \
      --cache "$TMP/cache-$name-$mode" --out "$TMP/out-$name-$mode" "$@" "${flag[@]}" 2>/dev/null \
      | grep -E "phase 1|chosen" | sed "s/^/$name ($mode activation cache): /"
  done
}
run mobilenetv2 mobilenetv2.onnx "$TMP/images.npy" --target-sqnr 30
run MiniLM-L6 all-MiniLM-L6-v2.onnx "$TMP/tokens.npz" --metric cosine --max-drop 0.01
