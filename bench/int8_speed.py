#!/usr/bin/env python3
# Run with the project's Python: .venv/bin/python bench/int8_speed.py
"""Real int8 execution in mpq against float32 in mpq and against ONNX Runtime
running the QDQ model mpq exports, all measured in the same run.

MobileNetV2 at batch 16, 32 calibration crops, candidate w7a8 (7-bit per-channel
weights, the exact int8 width of oneDNN on CPUs without VNNI; uint8 activations).
mpq times float32, the fake-quantized simulation, int8 for every layer and int8
without depthwise layers in one process (`mpq bench --config`); ONNX Runtime
times the float32 model and the exported model.qdq.onnx (its graph optimizer
turns QDQ pairs into QLinearConv int8 kernels).

Usage: bench/int8_speed.py [--mpq .build/release/mpq] [--fixtures .fixtures] [--threads N]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from compare_ort import image_inputs, mpq_bench, ort_median  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpq", default=os.path.join(ROOT, ".build/release/mpq"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, ".fixtures"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repetitions", type=int, default=10)
    args = ap.parse_args()
    if not os.path.exists(args.mpq):
        sys.exit(f"{args.mpq} not found: run `swift build -c release` first")
    model = os.path.join(args.fixtures, "models/mobilenetv2.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        calib = os.path.join(tmp, "calib.npy")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_image_calib.py"), calib, "--count", "32", "--images", os.path.join(args.fixtures, "data/images")],
                       check=True, capture_output=True)
        subprocess.run([args.mpq, "quantize", model, "--calib", calib, "--config", "w7a8", "--per-channel",
                        "--out", os.path.join(tmp, "q")], check=True, capture_output=True)
        qdq = os.path.join(tmp, "q", "model.qdq.onnx")
        feeds = image_inputs(args.batch)
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, **feeds)
        best = {}
        for _ in range(args.rounds):
            info = mpq_bench(args.mpq, model, inputs, args.threads, 3, args.repetitions,
                             extra=["--config", "w7a8", "--calib", calib])
            timings = {"mpq float32": info["median_ms"], "mpq simulation": info["simulation_median_ms"],
                       "mpq int8": info["int8_median_ms"], "mpq int8 except depthwise": info["int8_dense_median_ms"],
                       "ORT float32": ort_median(model, feeds, args.threads, 3, args.repetitions),
                       "ORT QDQ (mpq export)": ort_median(qdq, feeds, args.threads, 3, args.repetitions)}
            for key, value in timings.items():
                best[key] = min(best.get(key, float("inf")), value)
    print(f"mobilenetv2 batch {args.batch}, threads {args.threads}, {args.rounds} rounds x {args.repetitions} runs, "
          f"best median; int8 layers: {info['int8_lowered_layers']} (all), {info['int8_dense_lowered_layers']} (dense)")
    print(f"{'configuration':28} {'ms':>9} {'vs mpq fp32':>12} {'vs ORT fp32':>12}")
    for key, value in best.items():
        print(f"{key:28} {value:9.2f} {best['mpq float32'] / value:11.2f}x {best['ORT float32'] / value:11.2f}x")


if __name__ == "__main__":
    main()
