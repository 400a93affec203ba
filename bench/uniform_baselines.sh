#!/usr/bin/env bash
# Uniform-precision baselines and the quantization techniques (issue 12): output SQNR vs FP32,
# top-1 agreement (MobileNetV2) and cosine similarity of sentence embeddings (MiniLM-L6), per-channel
# weights, ranges and techniques from 64 calibration samples, scored on 128 held-out samples
# (disjoint crops: other seeds; sentences: other text). Each technique row states its run time.
# Beside mpq's rows: ONNX Runtime's own quantizer (quantize_static) on the same data
# (bench/ort_quantize_static.py). Writes docs/baselines.md.
# Usage: bench/uniform_baselines.sh [FIXTURES]  (default .fixtures, made by scripts/setup.sh)
# Environment: MOBILENET_ROWS / MINILM_ROWS pick the mpq rows ("config|techniques ...", "-" for none),
# MOBILENET_ORT_ROWS / MINILM_ORT_ROWS the ORT rows ("config|op-types ...", "-" for ORT's default op set);
# set to "" to leave a group out (the script still rewrites all of docs/baselines.md).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-.fixtures}
python=.venv/bin/python
mpq=.build/release/mpq
swift build -c release --product mpq >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$python" scripts/make_image_calib.py "$work/calib.npy" --count 64 --seed 0 --images "$shared/data/images"
"$python" scripts/make_image_calib.py "$work/eval.npy" --count 128 --seed 1 --images "$shared/data/images"
tokenizer="$shared/models/all-MiniLM-L6-v2-tokenizer/tokenizer.json"
"$python" Tests/Scripts/make_text_inputs.py "$tokenizer" "$shared/data/text/jargon.txt" "$work/calib.npz" 64
"$python" Tests/Scripts/make_text_inputs.py "$tokenizer" "$shared/data/text/hamlet_gut.txt" "$work/eval.npz" 128

# config|techniques rows ("-": plain round-to-nearest).
mobilenet_rows=${MOBILENET_ROWS-"w8a8|- w8a8|cle,bias-correction w8a8|smoothquant w8a8|smoothquant,seq-mse,adaround,bias-correction w8a16|- w8a16|seq-mse,adaround w4a8|- w4a8|smoothquant,seq-mse,adaround,bias-correction w4a8|cle,smoothquant,seq-mse,adaround,bias-correction"}
minilm_rows=${MINILM_ROWS-"w8a8|- w8a8|smoothquant w8a8|smoothquant,gptq w4a8|- w4a8|gptq w4a8|seq-mse w4a8|seq-mse,adaround"}
# config|op types ORT quantizes ("-": its default, every op type it can).
mobilenet_ort_rows=${MOBILENET_ORT_ROWS-"w8a8|- w8a16|- w4a8|-"}
minilm_ort_rows=${MINILM_ORT_ROWS-"w8a8|- w8a8|MatMul w4a8|MatMul"}
ort_version=$("$python" -c 'import onnxruntime; print(onnxruntime.__version__)')

row() { # MODEL DATA-NAME CONFIG TECHNIQUES
    local model=$1 name=$2 config=$3 techniques=$4 ext=$5 options=()
    [ "$techniques" = "-" ] || options=(--techniques "$techniques")
    local start=$SECONDS
    local r
    r=$("$mpq" eval "$shared/models/$model.onnx" --calib "$work/calib.$ext" --eval "$work/eval.$ext" --config "$config" \
        --per-channel "${options[@]}" 2>/dev/null)
    local sqnr top1 cosine
    sqnr=$(sed -n 's/output SQNR \([-0-9.inf]*\) dB.*/\1/p' <<<"$r"); top1=$(sed -n 's/top-1 agreement with FP32 \(.*\)/\1/p' <<<"$r")
    cosine=$(sed -n 's/cosine similarity \(.*\)/\1/p' <<<"$r")
    [ "$techniques" = "-" ] && techniques="plain rounding"
    echo "| $name | $config | $techniques | $sqnr | $top1 | $cosine | $((SECONDS - start)) |"
}
ort_rows() { # MODEL DATA-NAME CONFIG OP-TYPES EXT (rows: bench/ort_quantize_static.py)
    local model=$1 name=$2 config=$3 ops=$4 ext=$5 options=()
    [ "$ops" = "-" ] || options=(--op-types "$ops")
    "$python" bench/ort_quantize_static.py "$shared/models/$model.onnx" "$work/calib.$ext" "$work/eval.$ext" \
        --config "$config" --name "$name" "${options[@]}" 2>"$work/ort.log" || { cat "$work/ort.log" >&2; exit 1; }
}
mkdir -p docs
{
  echo "# Uniform baselines and quantization techniques"
  echo
  echo "Output vs FP32 on held-out data (ranges and techniques from 64 calibration samples), per-channel"
  echo "symmetric weights (min-max), asymmetric per-tensor activations (MSE range). MobileNetV2: 64"
  echo "calibration crops (seed 0), 128 held-out crops (seed 1). MiniLM-L6: 64 Jargon File sentences,"
  echo "128 Hamlet sentences. Seconds: the whole \`mpq eval\` run (release build, 2 cores)."
  echo "MiniLM's output SQNR counts the token positions the attention mask keeps (padding carries no"
  echo "meaning); its cosine similarity is that of the mask-mean-pooled sentence embeddings."
  echo
  echo "\"ORT quantize_static\" rows: ONNX Runtime $ort_version's own quantizer on the same calibration and"
  echo "held-out data (\`bench/ort_quantize_static.py\`): QDQ, per-channel symmetric weights (QInt8; QInt4 for"
  echo "w4), asymmetric per-tensor activations (QUInt8; QUInt16 for a16), reduce_range off, after"
  echo "\`quant_pre_process\`, each calibration method with ORT's defaults. Each method is scored in an"
  echo "\"exact QDQ session\" (graph optimizations off: Q/DQ run as written), then the method with the best"
  echo "held-out SQNR in ORT's default session (QDQ fused into integer kernels where ORT has them). ORT's"
  echo "Entropy method gives MinMax's ranges: it histograms all calibration outputs into 128 bins and"
  echo "searches 128 quantized bins, one candidate threshold (quantize_static cannot change either)."
  echo "MiniLM: ORT's default op set also quantizes the attention mask's -inf (Where and the Add before"
  echo "Softmax), so its MinMax row is near 0 dB and Entropy/Percentile fail; \"MatMul only\" quantizes"
  echo "MatMul weights and inputs, as mpq does (mpq also quantizes the graph output)."
  echo "Seconds: pre-processing, FP32 reference, calibration, quantization and the quantized run (Python, 2 cores)."
  echo "Reproduce: \`bench/uniform_baselines.sh\`."
  echo
  echo "| model | config | techniques | output SQNR (dB) | top-1 agreement | cosine similarity | seconds |"
  echo "|---|---|---|---|---|---|---|"
  for spec in $mobilenet_rows; do row mobilenetv2 "mobilenetv2" "${spec%%|*}" "${spec#*|}" npy; done
  for spec in $mobilenet_ort_rows; do ort_rows mobilenetv2 "mobilenetv2" "${spec%%|*}" "${spec#*|}" npy; done
  for spec in $minilm_rows; do row all-MiniLM-L6-v2 "all-MiniLM-L6-v2" "${spec%%|*}" "${spec#*|}" npz; done
  for spec in $minilm_ort_rows; do ort_rows all-MiniLM-L6-v2 "all-MiniLM-L6-v2" "${spec%%|*}" "${spec#*|}" npz; done
} > docs/baselines.md
cat docs/baselines.md
