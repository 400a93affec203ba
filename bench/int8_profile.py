#!/usr/bin/env python3
# Run with the project's Python: .venv/bin/python bench/int8_profile.py
"""Where the time of mpq's int8 execution goes, from oneDNN's own timers
(ONEDNN_VERBOSE=1): `mpq bench --config` on MobileNetV2 (or any model), every
executed primitive grouped by kind, implementation, data types and whether it
is a depthwise convolution, summed over all timed runs of all sessions the
bench runs (float32, simulation, int8, int8 except depthwise, int8 deployed).

Usage: bench/int8_profile.py [--mpq .build/release/mpq] [--batch 16] [--repetitions 3]
       (set DNNL_MAX_CPU_ISA=AVX2 to see the AVX2 kernels)
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from compare_ort import image_inputs  # noqa: E402


def category(fields):
    # onednn_verbose,exec,cpu,KIND,IMPL,PROP,MEMORY DESCS,ATTRS,ALG,PROBLEM,MS
    kind, impl, memories, problem = fields[3], fields[4], fields[6], fields[-2]
    types = re.findall(r"(src|dst)_?0?_(\w+?):", memories)
    dtypes = "/".join(f"{name}_{dtype}" for name, dtype in types[:3])
    depthwise = ""
    match = re.match(r"g(\d+)mb\d+_ic(\d+)", problem)
    if kind == "convolution" and match and match.group(1) == match.group(2):
        depthwise = " depthwise"
    return f"{kind}{depthwise} {impl} {dtypes}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpq", default=os.path.join(ROOT, ".build/release/mpq"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, ".fixtures"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--config", default="w7a8")
    args = ap.parse_args()
    model = args.model or os.path.join(args.fixtures, "models/mobilenetv2.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        calib = os.path.join(tmp, "calib.npy")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_image_calib.py"), calib, "--count", "32",
                        "--images", os.path.join(args.fixtures, "data/images")], check=True, capture_output=True)
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, **image_inputs(args.batch))
        env = dict(os.environ, ONEDNN_VERBOSE="1")
        out = subprocess.run([args.mpq, "bench", model, "--inputs", inputs, "--threads", str(args.threads),
                              "--warmup", "1", "--repetitions", str(args.repetitions), "--config", args.config,
                              "--calib", calib], env=env, check=True, capture_output=True, text=True).stdout
    totals = collections.defaultdict(lambda: [0.0, 0])
    for line in out.splitlines():
        if not line.startswith("onednn_verbose,exec,cpu,"):
            continue
        fields = line.split(",")
        key = category(fields)
        totals[key][0] += float(fields[-1])
        totals[key][1] += 1
    total = sum(value[0] for value in totals.values())
    print(f"oneDNN ISA limit {os.environ.get('DNNL_MAX_CPU_ISA', 'none (native)')}; all sessions of `mpq bench --config "
          f"{args.config}`, {args.repetitions} timed runs + 1 warm-up each; total {total:.0f} ms")
    print(f"{'ms':>9} {'share':>6} {'calls':>6}  primitive implementation types")
    for key, (ms, calls) in sorted(totals.items(), key=lambda item: -item[1][0])[:25]:
        print(f"{ms:9.1f} {100 * ms / total:5.1f}% {calls:6d}  {key}")
    print("\n" + "\n".join(line for line in out.splitlines() if not line.startswith("onednn_verbose")))


if __name__ == "__main__":
    main()
