#!/usr/bin/env python3
# Run with the project's Python: .venv/bin/python bench/deployed_accuracy.py
"""What the deployed model delivers (issue 11): mpq's simulated output SQNR of a
W8A8 per-channel export for the host's deployment target, beside ONNX Runtime
running that same model.qdq.onnx in its default session (optimisations on: QDQ
fused into integer kernels, as users run it) and in an exact session
(optimisations off: every Q/DQ as written).

- mobilenetv2: 64 calibration crops (seed 0), 128 held-out crops (seed 1).
- all-MiniLM-L6-v2: 64 Jargon File sentences calibrate, 128 Hamlet sentences
  are held out; SQNR over the tokens the attention mask keeps.

Every figure is on the held-out data and uses mpq's metrics
(bench/ort_quantize_static.py's `compare`, the same as OutputComparison.swift).

Usage: bench/deployed_accuracy.py [--mpq .build/release/mpq] [--fixtures .fixtures] [--config w8a8]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import ort_quantize_static as oqs  # noqa: E402
import onnxruntime  # noqa: E402
from ort_run_model import with_dynamic_batch  # noqa: E402


def dynamic_batch_copy(path, copy):
    """Writes to `copy` the model at `path` with a symbolic batch dimension; returns `copy`."""
    with open(copy, "wb") as f:
        f.write(with_dynamic_batch(path))
    return copy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpq", default=os.path.join(ROOT, ".build/release/mpq"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, ".fixtures"))
    ap.add_argument("--config", default="w8a8")
    args = ap.parse_args()
    onnxruntime.set_default_logger_severity(3)  # the exports' fixed batch-1 output shapes warn per run
    python = sys.executable
    with tempfile.TemporaryDirectory() as work:
        images = os.path.join(args.fixtures, "data/images")
        tokenizer = os.path.join(args.fixtures, "models/all-MiniLM-L6-v2-tokenizer/tokenizer.json")
        text = os.path.join(args.fixtures, "data/text")
        image_script, text_script = "scripts/make_image_calib.py", "Tests/Scripts/make_text_inputs.py"
        # Per model: the commands that write its calibration and held-out data ({} is the file).
        data = {
            "mobilenetv2": [
                [image_script, "{}", "--count", "64", "--seed", "0", "--images", images],
                [image_script, "{}", "--count", "128", "--seed", "1", "--images", images],
            ],
            "all-MiniLM-L6-v2": [
                [text_script, tokenizer, os.path.join(text, "jargon.txt"), "{}", "64"],
                [text_script, tokenizer, os.path.join(text, "hamlet_gut.txt"), "{}", "128"],
            ],
        }
        print("| model | config | deploy target | mpq simulated SQNR (dB) | ORT default session | ORT exact session |"
              " ORT default vs mpq (dB) |")
        print("|---|---|---|---|---|---|---|")
        for model, commands in data.items():
            calib, held_out = (os.path.join(work, f"{model}-{role}{'.npz' if 'MiniLM' in model else '.npy'}")
                               for role in ("calib", "eval"))
            for command, path in zip(commands, (calib, held_out)):
                subprocess.run([python] + [path if a == "{}" else a for a in command], check=True, cwd=ROOT,
                               stdout=subprocess.DEVNULL)
            onnx_path = os.path.join(args.fixtures, "models", f"{model}.onnx")
            out = os.path.join(work, f"{model}-out")
            subprocess.run([args.mpq, "quantize", onnx_path, "--calib", calib, "--eval", held_out, "--config", args.config,
                            "--per-channel", "--out", out], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(out, "report.json")) as f:
                report = json.load(f)
            simulated = report["output"]["sqnr_db"]
            target = "host (default)" + "".join(f"; {note}" for note in report.get("deployment_notes", []))
            fp32 = dynamic_batch_copy(onnx_path, os.path.join(work, f"{model}-fp32.onnx"))
            qdq = dynamic_batch_copy(os.path.join(out, "model.qdq.onnx"), os.path.join(work, f"{model}-qdq.onnx"))
            feeds = oqs.load_feeds(held_out, [i.name for i in oqs.session(fp32, exact=True).get_inputs()])
            reference = oqs.run(fp32, feeds, exact=True)
            default = oqs.compare(reference, oqs.run(qdq, feeds, exact=False), feeds)[0]
            exact = oqs.compare(reference, oqs.run(qdq, feeds, exact=True), feeds)[0]
            print(f"| {model} | {args.config} per-channel | {target} | {simulated:.2f} | {default:.2f} | {exact:.2f} |"
                  f" {default - simulated:+.2f} |")


if __name__ == "__main__":
    main()
