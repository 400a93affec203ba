"""Calibration and held-out texts of the tiny-llama benchmarks, split as the ladder's prep_text.py
splits the Jargon File: lines stripped; calibration = the first 60% of the characters, evaluation =
from the first line break after the 75% mark to the end.

Usage: python3 bench/llm_texts.py JARGON.txt OUT_DIR   (writes calib.txt and eval_jargon_tail25.txt)
"""
import hashlib
import sys

text = "\n".join(line.strip() for line in open(sys.argv[1], encoding="utf-8").read().split("\n"))
calibration = text[: int(len(text) * 0.6)]
tail = text[text.index("\n", int(len(text) * 0.75)) + 1 :]
open(f"{sys.argv[2]}/calib.txt", "w", encoding="utf-8").write(calibration)
open(f"{sys.argv[2]}/eval_jargon_tail25.txt", "w", encoding="utf-8").write(tail)
print("evaluation text sha256", hashlib.sha256(tail.encode()).hexdigest())
