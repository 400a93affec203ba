"""Milliseconds per token of GGUF models in llama.cpp, timed by llama-bench: decoding (-n tokens, one
at a time) and prompt processing (-p tokens, batched). The models are interleaved over rounds so
that a slow spell of a shared machine hits all of them; each figure is the median of every round's
samples, with the median absolute deviation as its spread.

Usage: python3 bench/llama_bench_times.py LLAMA_BENCH OUT.json MODEL.gguf...
Environment: THREADS (default 1), ROUNDS (3), REPETITIONS (5 per round), DECODE (128), PREFILL (512).
OUT.json: {"cpu_info", "threads", "models": {path: {decode_ms_per_token, decode_spread_ms, decode_runs,
prefill_ms_per_token, prefill_spread_ms, prefill_runs}}}.
"""
import json
import os
import statistics
import subprocess
import sys

bench, out, models = sys.argv[1], sys.argv[2], sys.argv[3:]
threads = os.environ.get("THREADS", "1")
rounds = int(os.environ.get("ROUNDS", "3"))
repetitions = os.environ.get("REPETITIONS", "5")
phases = {"decode": ["-p", "0", "-n", os.environ.get("DECODE", "128")],
          "prefill": ["-p", os.environ.get("PREFILL", "512"), "-n", "0"]}
samples, cpu = {}, "unknown"
for r in range(rounds):
    for phase, arguments in phases.items():
        command = [bench, *[a for m in models for a in ("-m", m)], *arguments, "-t", threads, "-r", repetitions, "-o", "json"]
        rows = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        for row in rows:
            tokens = row["n_gen"] if phase == "decode" else row["n_prompt"]
            samples.setdefault(row["model_filename"], {}).setdefault(phase, []).extend(ns / 1e6 / tokens for ns in row["samples_ns"])
            cpu = row["cpu_info"]
    print(f"round {r + 1} of {rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
result = {}
for path, by_phase in samples.items():
    entry = {}
    for phase, values in by_phase.items():
        median = statistics.median(values)
        entry[f"{phase}_ms_per_token"] = round(median, 6)
        entry[f"{phase}_spread_ms"] = round(statistics.median(abs(v - median) for v in values), 6)
        entry[f"{phase}_runs"] = len(values)
    result[path] = entry
json.dump({"cpu_info": cpu, "threads": int(threads), "models": result}, open(out, "w"), indent=2, sort_keys=True)
