#!/usr/bin/env python3
# Run with the project's Python: .venv/bin/python bench/ort_quantize_static.py
"""ONNX Runtime's own static quantizer on mpq's calibration and held-out data (issue 12).

Quantizes MODEL with onnxruntime.quantization.quantize_static (after ORT's
quant_pre_process) once per calibration method (MinMax, Entropy, Percentile,
ORT's default settings for each), calibrating on CALIB, and scores each quantized
model against the FP32 model on EVAL with mpq's metrics (OutputComparison.swift):
output SQNR over all float outputs and samples, top-1 agreement of [N, C] logits,
cosine similarity of [N, C] rows or of [N, S, H] outputs pooled over the tokens
where attention_mask != 0. The FP32 reference is MODEL run by ORT.

Quantization: QDQ format, per-channel symmetric weights (QInt8; QInt4 for w4),
asymmetric per-tensor activations (QUInt8; QUInt16 for a16), reduce_range=False.
Each quantized model is run in two ORT sessions: "exact" (graph optimizations
disabled: every QuantizeLinear/DequantizeLinear evaluated as written, in float)
and "default" (ORT's default optimizations: QDQ groups fused into integer kernels
where ORT has them).

Prints markdown rows `| model | config | techniques | output SQNR (dB) |
top-1 agreement | cosine similarity | seconds |` (bench/uniform_baselines.sh's
table): one per method in the exact session, then the default session's best
method by held-out SQNR. A method whose quantize_static raises gets a row with
the error instead of figures; a config whose types this ORT lacks gets one
"unsupported" row. Seconds per row: pre-processing and the FP32 reference run,
calibration and quantization with that method, and the quantized model's run
on EVAL in that session.

Note: ORT's Entropy calibration histograms all calibration outputs at once into
128 bins and searches thresholds of 128 quantized bins, so it has one candidate
(the whole range) and yields MinMax's ranges; quantize_static cannot change
either number.

Usage: bench/ort_quantize_static.py MODEL CALIB EVAL --config w8a8|w8a16|w4a8
           [--name NAME] [--methods MinMax,Entropy,Percentile] [--op-types MatMul,...]
CALIB, EVAL: .npy (the batch for the model's only input) or .npz (one array per
model input, by name), samples along axis 0.
"""
import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime import quantization as oq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Scripts"))
from ort_run_model import with_dynamic_batch  # noqa: E402

CALIBRATION_BATCH = 8
EVAL_BATCH = 16
# config -> (weight type, activation type), by QuantType attribute name.
CONFIGS = {"w8a8": ("QInt8", "QUInt8"), "w8a16": ("QInt8", "QUInt16"), "w4a8": ("QInt4", "QUInt8")}
METHODS = ("MinMax", "Entropy", "Percentile")


def load_feeds(path, input_names):
    """The arrays of a .npy/.npz data file keyed by model input name."""
    if path.endswith(".npz"):
        with np.load(path) as data:
            feeds = {name: data[name] for name in input_names if name in data}
        missing = sorted(set(input_names) - set(feeds))
        if missing:
            raise SystemExit(f"{path}: no arrays for model inputs {', '.join(missing)}")
        return feeds
    if len(input_names) != 1:
        raise SystemExit(f"{path}: a .npy file feeds one input, the model has {len(input_names)}; use .npz")
    return {input_names[0]: np.load(path)}


def batches(feeds, size):
    """`feeds` split along axis 0 into dicts of at most `size` samples."""
    total = len(next(iter(feeds.values())))
    return [{k: v[start:start + size] for k, v in feeds.items()} for start in range(0, total, size)]


class Reader(oq.CalibrationDataReader):
    """Calibration batches for quantize_static, in order."""

    def __init__(self, feeds):
        self.pending = iter(batches(feeds, CALIBRATION_BATCH))

    def get_next(self):
        return next(self.pending, None)


def session(model_path, exact):
    """A CPU session; `exact`: graph optimizations off, so Q/DQ nodes run as written."""
    options = ort.SessionOptions()
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def run(model_path, feeds, exact):
    """Outputs by name over all of `feeds`, EVAL_BATCH samples per run."""
    s = session(model_path, exact)
    names = [o.name for o in s.get_outputs()]
    parts = [s.run(None, chunk) for chunk in batches(feeds, EVAL_BATCH)]
    return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}


def compare(reference, quantized, feeds):
    """mpq's OutputComparison: (SQNR dB, top-1 agreement or None, cosine or None); [N, S, H] outputs
    count only the tokens the attention mask keeps."""
    signal = noise = 0.0
    agreements = rows = 0
    cosines = []
    for name in sorted(reference):
        r, q = reference[name], quantized.get(name)
        if r.dtype != np.float32 or q is None or q.shape != r.shape:
            continue
        mask = feeds.get("attention_mask")
        tokens = mask != 0 if r.ndim == 3 and mask is not None and mask.shape == r.shape[:2] else None
        kept = (slice(None),) if tokens is None else (tokens,)
        signal += float(np.sum(np.square(r[kept], dtype=np.float64)))
        noise += float(np.sum(np.square((r[kept] - q[kept]).astype(np.float64))))
        if r.ndim == 2 and r.shape[1] > 1:
            agreements += int(np.sum(r.argmax(1) == q.argmax(1)))
            rows += r.shape[0]
            cosines += list(cosine_rows(r.astype(np.float64), q.astype(np.float64)))
        elif r.ndim == 3:
            tokens = np.ones(r.shape[:2], bool) if tokens is None else tokens
            cosines += list(cosine_rows(pooled(r, tokens), pooled(q, tokens)))
    sqnr = float("inf") if noise == 0 else float(10 * np.log10(signal / noise))
    return sqnr, (agreements / rows if rows else None), (float(np.mean(cosines)) if cosines else None)


def pooled(x, tokens):
    """[N, S, H] -> [N, H]: the sum over the tokens marked in the [N, S] bool `tokens` (float64)."""
    return np.einsum("nsh,ns->nh", x.astype(np.float64), tokens.astype(np.float64))


def cosine_rows(a, b):
    """Cosine similarity of each row pair; 1 where either row is zero (as mpq)."""
    norms = np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))
    dots = np.sum(a * b, 1)
    return np.where(norms == 0, 1.0, dots / np.where(norms == 0, 1.0, norms))


def markdown_row(name, config, techniques, metrics, seconds):
    """One table row, the figures formatted as `mpq eval` prints them."""
    sqnr, top1, cosine = metrics
    top1_text = "" if top1 is None else f"{top1 * 100:.2f}%"
    cosine_text = "" if cosine is None else f"{cosine:.5f}"
    return f"| {name} | {config} | {techniques} | {sqnr:.2f} | {top1_text} | {cosine_text} | {seconds:.0f} |"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("eval")
    ap.add_argument("--config", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--name", help="model column (default: MODEL's file name without .onnx)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--op-types", help="comma-separated op types to quantize (default: all ORT quantizes)")
    args = ap.parse_args(argv)
    for path in (args.model, args.calib, args.eval):
        if not os.path.isfile(path):
            ap.error(f"{path}: no such file")
    for path in (args.calib, args.eval):
        if not path.endswith((".npy", ".npz")):
            ap.error(f"{path}: expected a .npy or .npz file")
    args.methods = args.methods.split(",")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown --methods {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    args.op_types = args.op_types.split(",") if args.op_types else None
    args.name = args.name or os.path.basename(args.model).removesuffix(".onnx")
    return args


def prepare(model_path, tmp):
    """MODEL with a dynamic batch dim, and that after ORT's quant_pre_process: (fp32 path, prepared path)."""
    fp32, prepared = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "prepared.onnx")
    model = onnx.load_from_string(with_dynamic_batch(model_path))
    del model.graph.value_info[:]  # shapes inferred with the fixed batch would contradict the dynamic one
    onnx.save(model, fp32)
    # Symbolic shape inference needs sympy, which is not in scripts/requirements.lock.
    oq.quant_pre_process(fp32, prepared, skip_symbolic_shape=True)
    return fp32, prepared


def quantize(prepared, out, calib, method, weight_type, activation_type, op_types):
    """quantize_static into `out`; None, or the one-line error ORT raised."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the histogram calibrators print progress
            oq.quantize_static(prepared, out, Reader(calib), quant_format=oq.QuantFormat.QDQ,
                               op_types_to_quantize=op_types, per_channel=True, reduce_range=False,
                               activation_type=getattr(oq.QuantType, activation_type),
                               weight_type=getattr(oq.QuantType, weight_type),
                               calibrate_method=getattr(oq.CalibrationMethod, method))
    except Exception as error:  # noqa: BLE001 - reported in the table
        first_line = (str(error).splitlines() or [""])[0]
        return f"{type(error).__name__}: {first_line}".replace("|", "\\|")
    return None


def main(argv):
    args = parse_args(argv)
    ort.set_default_logger_severity(3)  # errors only
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice
    weight_type, activation_type = CONFIGS[args.config]
    technique = "ORT quantize_static {}" + (f", {'+'.join(args.op_types)} only" if args.op_types else "")
    missing = [t for t in (weight_type, activation_type) if not hasattr(oq.QuantType, t)]
    if missing:
        note = f"ORT quantize_static: unsupported by ORT {ort.__version__} (no QuantType.{missing[0]})"
        print(f"| {args.name} | {args.config} | {note} |  |  |  |  |")
        return
    scored = {}  # (method, exact) -> (metrics, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fp32, prepared = prepare(args.model, tmp)
        input_names = [i.name for i in onnx.load(prepared, load_external_data=False).graph.input]
        calib, held_out = load_feeds(args.calib, input_names), load_feeds(args.eval, input_names)
        reference = run(fp32, held_out, exact=False)
        shared_seconds = time.perf_counter() - start
        for method in args.methods:
            start = time.perf_counter()
            quantized = os.path.join(tmp, f"{method}.onnx")
            error = quantize(prepared, quantized, calib, method, weight_type, activation_type, args.op_types)
            quantize_seconds = shared_seconds + time.perf_counter() - start
            if error:
                print(f"| {args.name} | {args.config} | {technique.format(method)}: failed ({error}) "
                      f"|  |  |  | {quantize_seconds:.0f} |")
                continue
            for exact in (True, False):
                start = time.perf_counter()
                metrics = compare(reference, run(quantized, held_out, exact), held_out)
                scored[method, exact] = metrics, quantize_seconds + time.perf_counter() - start
            metrics, seconds = scored[method, True]
            print(markdown_row(args.name, args.config, technique.format(method) + " (exact QDQ session)",
                               metrics, seconds))
    candidates = [m for m in args.methods if (m, False) in scored]
    if candidates:
        best = max(candidates, key=lambda m: np.nan_to_num(scored[m, False][0][0], nan=-np.inf))
        metrics, seconds = scored[best, False]
        label = f" (ORT default session; best of {'/'.join(candidates)} by SQNR)" if len(candidates) > 1 \
            else " (ORT default session)"
        print(markdown_row(args.name, args.config, technique.format(best) + label, metrics, seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
