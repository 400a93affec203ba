#!/usr/bin/env python3
# Run with the project's Python: .venv/bin/python bench/int8_speed.py
"""Real int8 execution in mpq against float32 in mpq and against ONNX Runtime
running the QDQ model mpq exports, all measured in the same run.

- MobileNetV2 at batch 16, 32 calibration crops, candidate w7a8 (7-bit
  per-channel weights, the exact int8 width of oneDNN on CPUs without VNNI;
  uint8 activations).
- all-MiniLM-L6-v2 at batch 8 x 128 tokens, 16 calibration sentences, W8A8
  on its MatMuls (w8a8 where oneDNN uses VNNI, w7a8 where it does not, e.g.
  under DNNL_MAX_CPU_ISA=AVX2: 8-bit weights saturate there and would not be
  lowered).

mpq times (`mpq bench --config`, one process per row group) float32, the
fake-quantized simulation, int8 for every layer the kernels run exactly with
the other quantizers simulated, the same without depthwise layers, and int8 as
deployed (other layers plain float32); each int8 figure with activations
handed over as uint8 codes (the default) and, for comparison, as float32 that
every int8 layer quantizes again (MPQ_INT8_CHAINING=0). ONNX Runtime times
the float32 model and the exported model.qdq.onnx (its graph optimizer turns
QDQ pairs into int8 kernels). DNNL_MAX_CPU_ISA limits only oneDNN (mpq), not
ONNX Runtime.

Usage: bench/int8_speed.py [--mpq .build/release/mpq] [--fixtures .fixtures] [--threads N] [--models mobilenetv2,minilm]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from compare_ort import image_inputs, mpq_bench, ort_median, text_inputs  # noqa: E402


def mpq_timings(args, model, inputs, config, calib, chaining):
    os.environ["MPQ_INT8_CHAINING"] = "1" if chaining else "0"
    try:
        return mpq_bench(args.mpq, model, inputs, args.threads, 3, args.repetitions,
                         extra=["--config", config, "--calib", calib])
    finally:
        del os.environ["MPQ_INT8_CHAINING"]


def run_model(args, tmp, name, model, calib, config, feeds, simulated_rows):
    subprocess.run([args.mpq, "quantize", model, "--calib", calib, "--config", config, "--per-channel",
                    "--out", os.path.join(tmp, name)], check=True, capture_output=True)
    qdq = os.path.join(tmp, name, "model.qdq.onnx")
    inputs = os.path.join(tmp, name + "-inputs.npz")
    np.savez(inputs, **feeds)
    best = {}
    for _ in range(args.rounds):
        chained = mpq_timings(args, model, inputs, config, calib, True)
        unchained = mpq_timings(args, model, inputs, config, calib, False)
        timings = {"mpq float32": min(chained["median_ms"], unchained["median_ms"]),
                   "mpq simulation": chained["simulation_median_ms"]}
        if simulated_rows:
            timings.update({
                "mpq int8 (uint8 between layers)": chained["int8_median_ms"],
                "mpq int8 (float32 between layers)": unchained["int8_median_ms"],
                "mpq int8 except depthwise": chained["int8_dense_median_ms"],
            })
        timings.update({
            "mpq int8 deployed (uint8 between)": chained["int8_deployed_median_ms"],
            "mpq int8 deployed (float32 between)": unchained["int8_deployed_median_ms"],
            "ORT float32": ort_median(model, feeds, args.threads, 3, args.repetitions),
            "ORT QDQ (mpq export)": ort_median(qdq, feeds, args.threads, 3, args.repetitions),
        })
        for key, value in timings.items():
            best.setdefault(key, []).append(value)
    print(f"\n{name}, config {config}, threads {args.threads}, oneDNN ISA limit "
          f"{os.environ.get('DNNL_MAX_CPU_ISA', 'none (native)')}, {args.rounds} rounds x {args.repetitions} runs: "
          f"best median (spread of the round medians); int8 layers: {chained['int8_deployed_lowered_layers']}")
    fastest = {key: min(values) for key, values in best.items()}
    print(f"{'configuration':38} {'ms':>9} {'spread':>13} {'vs mpq fp32':>12} {'vs ORT fp32':>12} {'vs ORT QDQ':>11}")
    for key, values in best.items():
        value = fastest[key]
        print(f"{key:38} {value:9.2f} {min(values):6.1f}-{max(values):<6.1f} {fastest['mpq float32'] / value:11.2f}x "
              f"{fastest['ORT float32'] / value:11.2f}x {fastest['ORT QDQ (mpq export)'] / value:10.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpq", default=os.path.join(ROOT, ".build/release/mpq"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, ".fixtures"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--models", default="mobilenetv2,minilm")
    ap.add_argument("--minilm-config", default=None,
                    help="default: w8a8, or w7a8 when DNNL_MAX_CPU_ISA names an ISA without VNNI")
    args = ap.parse_args()
    if not os.path.exists(args.mpq):
        sys.exit(f"{args.mpq} not found: run `swift build -c release` first")
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "mobilenetv2" in models:
            calib = os.path.join(tmp, "calib.npy")
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_image_calib.py"), calib, "--count", "32",
                            "--images", os.path.join(args.fixtures, "data/images")], check=True, capture_output=True)
            run_model(args, tmp, f"mobilenetv2 batch {args.batch}", os.path.join(args.fixtures, "models/mobilenetv2.onnx"),
                      calib, "w7a8", image_inputs(args.batch), simulated_rows=True)
        if "minilm" in models:
            calib = os.path.join(tmp, "text.npz")
            subprocess.run([sys.executable, os.path.join(ROOT, "Tests/Scripts/make_text_inputs.py"),
                            os.path.join(args.fixtures, "models/all-MiniLM-L6-v2-tokenizer/tokenizer.json"),
                            os.path.join(args.fixtures, "data/text/hamlet_gut.txt"), calib, "16"], check=True, capture_output=True)
            isa = os.environ.get("DNNL_MAX_CPU_ISA", "").upper()
            config = args.minilm_config or ("w7a8" if isa and "VNNI" not in isa and "AMX" not in isa else "w8a8")
            run_model(args, tmp, "MiniLM-L6 batch 8 x 128", os.path.join(args.fixtures, "models/all-MiniLM-L6-v2.onnx"),
                      calib, config, text_inputs(8, 128), simulated_rows=False)


if __name__ == "__main__":
    main()
