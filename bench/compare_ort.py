#!/usr/bin/env python3
# Run with the project's Python: .venv/bin/python bench/compare_ort.py
"""mpq vs ONNX Runtime latency on the same inputs, measured in the same run.

For each configuration both runtimes time `--repetitions` runs after warm-up
(median), alternating for `--rounds` rounds; the best median of each is kept
and the ratio mpq / ORT printed (< 1 means mpq is faster). Also prints mpq's
peak resident memory against weights + largest live activations.

Usage: bench/compare_ort.py [--mpq .build/release/mpq] [--fixtures .fixtures] [--threads N]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Scripts"))
from ort_run_model import with_dynamic_batch  # noqa: E402


def ort_median(model, feeds, threads, warmup, repetitions):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(with_dynamic_batch(model), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def mpq_bench(binary, model, inputs, threads, warmup, repetitions, extra=()):
    out = subprocess.run([binary, "bench", model, "--inputs", inputs, "--threads", str(threads),
                          "--warmup", str(warmup), "--repetitions", str(repetitions), "--json", *extra],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def image_inputs(batch):
    rng = np.random.default_rng(0)
    return {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}


def text_inputs(batch, tokens):
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(1000, 30000, (batch, tokens), dtype=np.int64),
            "attention_mask": np.ones((batch, tokens), dtype=np.int64),
            "token_type_ids": np.zeros((batch, tokens), dtype=np.int64)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpq", default=os.path.join(ROOT, ".build/release/mpq"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, ".fixtures"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repetitions", type=int, default=20)
    args = ap.parse_args()
    if not os.path.exists(args.mpq):
        sys.exit(f"{args.mpq} not found: run `swift build -c release` first")
    configs = [
        ("mobilenetv2 batch 1", "models/mobilenetv2.onnx", image_inputs(1)),
        ("mobilenetv2 batch 16", "models/mobilenetv2.onnx", image_inputs(16)),
        ("MiniLM-L6 batch 8 x 128", "models/all-MiniLM-L6-v2.onnx", text_inputs(8, 128)),
    ]
    print(f"threads {args.threads}, {args.rounds} rounds x {args.repetitions} runs, best median per runtime")
    print(f"{'configuration':28} {'ORT ms':>9} {'mpq ms':>9} {'mpq/ORT':>8}  peak RSS (weights + live activations)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, feeds in configs:
            model = os.path.join(args.fixtures, model)
            inputs = os.path.join(tmp, "inputs.npz")
            np.savez(inputs, **feeds)
            ort_ms, mpq_ms, mpq_info = [], [], None
            for _ in range(args.rounds):
                ort_ms.append(ort_median(model, feeds, args.threads, 3, args.repetitions))
                mpq_info = mpq_bench(args.mpq, model, inputs, args.threads, 3, args.repetitions)
                mpq_ms.append(mpq_info["median_ms"])
            best_ort, best_mpq = min(ort_ms), min(mpq_ms)
            rss = mpq_info["peak_rss_bytes"] / 2**20
            floor = (mpq_info["weight_bytes"] + mpq_info["peak_activation_bytes"]) / 2**20
            print(f"{name:28} {best_ort:9.2f} {best_mpq:9.2f} {best_mpq / best_ort:8.2f}  "
                  f"{rss:.0f} MiB ({floor:.0f} MiB, ratio {rss / floor:.2f})")


if __name__ == "__main__":
    main()
