"""Helpers of bench/llm_reference.sh.

  llm_reference.py texts JARGON.txt TAIL_OUT HEAD_OUT
      The Jargon File split of examples/tiny-llama-jargon (prep_data.py): each line stripped;
      held-out tail = from the first line break after the 75% mark to the end (sha256 checked);
      calibration head = the first 60% of the characters, up to the first line break after the mark.
  llm_reference.py report WORK CHUNKS CI_CHUNKS THREADS OUT.json
      Parses the logs in WORK/logs, prints the comparison tables and writes OUT.json.
"""
import hashlib
import json
import os
import re
import sys

TAIL_SHA256 = "fd46e81f3e129e426aeed580ead7f193e0c66f0b60dbee35d0b4f2fda04afe8d"


def texts(jargon, tail_out, head_out):
    data = "\n".join(l.strip() for l in open(jargon, encoding="utf-8").read().split("\n"))
    n = len(data)
    cut = int(n * 0.75) + data[int(n * 0.75):].index("\n") + 1
    tail = data[cut:]
    digest = hashlib.sha256(tail.encode("utf-8")).hexdigest()
    if digest != TAIL_SHA256:
        sys.exit(f"jargon tail sha256 {digest}, expected {TAIL_SHA256}")
    head = data[:int(n * 0.6) + data[int(n * 0.6):].index("\n") + 1]
    for path, text in ((tail_out, tail), (head_out, head)):
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            open(path, "w", encoding="utf-8").write(text)


def read(path):
    return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""


def num(pattern, text, group=1):
    m = re.search(pattern, text, re.M)
    return float(m.group(group)) if m else None


def llama(work, name):
    log, tm = read(f"{work}/logs/llama-{name}.log"), read(f"{work}/logs/llama-{name}.time")
    if not log:
        return None
    r = {
        "perplexity": num(r"Final estimate: PPL = ([\d.]+)", log) or num(r"^Mean PPL\(Q\)\s*:\s*([\d.]+)", log),
        "perplexity_error": num(r"Final estimate: PPL = [\d.]+ \+/- ([\d.]+)", log)
        or num(r"^Mean PPL\(Q\)\s*:\s*[\d.]+ ±\s*([\d.]+)", log),
        "reference_perplexity": num(r"^Mean PPL\(base\)\s*:\s*([\d.]+)", log),
        "kld": num(r"^Mean    KLD:\s*([-\d.]+)", log),
        "kld_error": num(r"^Mean    KLD:\s*[-\d.]+ ±\s*([\d.]+)", log),
        "kld_median": num(r"^Median  KLD:\s*([-\d.]+)", log),
        "kld_p99": num(r"^99\.0%   KLD:\s*([-\d.]+)", log),
        "same_top_percent": num(r"^Same top p:\s*([\d.]+)", log),
        "chunks": num(r"over (\d+) chunks, n_ctx", log),
        "peak_rss_mib": (num(r"Maximum resident set size \(kbytes\): (\d+)", tm) or 0) / 1024 or None,
        "wall_seconds": wall(tm),
    }
    # Speed: llama_perf_context_print's prompt-eval figure is not logged by this build's llama-perplexity
    # at default verbosity, so: tokens of the chunks / (wall time - the log's timestamp of the start of
    # the computation). The log stamps are minutes.seconds.milliseconds.microseconds since start.
    m = re.search(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) I \S+: (?:calculating perplexity|computing) over (\d+) chunks, n_ctx=(\d+)", log, re.M)
    if m and r.get("wall_seconds"):
        start = int(m.group(1)) * 60 + int(m.group(2)) + int(m.group(3)) / 1e3 + int(m.group(4)) / 1e6
        if r["wall_seconds"] > start:
            r["tokens_per_second"] = int(m.group(5)) * int(m.group(6)) / (r["wall_seconds"] - start)
    return {k: v for k, v in r.items() if v is not None}


def mpq(work, name):
    log, tm = read(f"{work}/logs/mpq-{name}.log"), read(f"{work}/logs/mpq-{name}.time")
    if not log:
        return None
    r = {
        "perplexity": num(r"^perplexity: ([\d.]+)", log),
        "perplexity_error": num(r"^perplexity: [\d.]+ \+/- ([\d.]+)", log),
        "reference_perplexity": num(r"^reference perplexity: ([\d.]+)", log),
        "kld": num(r"^mean KLD: ([-\d.]+)", log),
        "kld_error": num(r"^mean KLD: [-\d.]+ \+/- ([\d.]+)", log),
        "kld_median": num(r"^median KLD: ([-\d.]+)", log),
        "kld_p99": num(r"99\.0% KLD: ([-\d.]+)", log),
        "same_top_percent": num(r"^same top token: ([\d.]+)", log),
        "chunks": num(r"^perplexity: .* over (\d+) chunks", log),
        "tokens_per_second": num(r"^speed: ([\d.]+) tokens/s", log),
        "peak_rss_mib": (num(r"Maximum resident set size \(kbytes\): (\d+)", tm) or 0) / 1024 or None,
        "wall_seconds": wall(tm),
    }
    return {k: v for k, v in r.items() if v is not None}


def wall(tm):
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", tm)
    if not m:
        return None
    return round(int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)), 2)


def pct(a, b):
    return None if a is None or b is None or b == 0 else 100.0 * (a - b) / b


def fnv1a64(chunks):
    h = 0xcbf29ce484222325
    for data in chunks:
        for byte in data:
            h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def gguf_tensors(path):
    import gguf
    reader = gguf.GGUFReader(path)
    return [(t.name, t.tensor_type.name, bytes(t.data.tobytes())) for t in reader.tensors]


def fmt(x, digits=4):
    return "-" if x is None else f"{x:.{digits}f}"


def report(work, chunks, ci_chunks, threads, out_json):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    version = read(f"{work}/llama-cpp-version.txt").strip()
    commit = re.search(r"\(([0-9a-f]{40})", version)
    models = f"{work}/models"
    paths = {
        "smollm2-135m/Q4_1": os.path.join(root, ".fixtures/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "smollm2-135m/F16": f"{models}/smol-F16.gguf",
        "smollm2-135m/Q4_K_M": f"{models}/smol-Q4_K_M.gguf",
        "tiny-llama-jargon/F16": os.path.join(root, "examples/tiny-llama-jargon/model-F16.gguf"),
    }
    ladder = ["Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]
    for t in ladder:
        paths[f"tiny-llama-jargon/{t}"] = f"{models}/tiny-{t}.gguf"
    paths["tiny-llama-jargon/search-lm-5.0bpw"] = f"{work}/search-lm/model.gguf"
    logname = {"smollm2-135m": "smol", "tiny-llama-jargon": "tiny"}

    cases = []
    for case, path in paths.items():
        family, kind = case.split("/")
        name = f"{logname[family]}-{kind.replace('search-lm-5.0bpw', 'search-lm')}"
        l, m = llama(work, name), mpq(work, name)
        if kind == "F16":  # the reference run's perplexity is the same; the plain run has speed and memory
            base = llama(work, name + ".kldbase") or {}
            if l is not None and "perplexity" not in l and "perplexity" in base:
                l["perplexity"] = base["perplexity"]
        if l is None and m is None:
            continue
        c = {"case": case, "file": os.path.relpath(path, root) if path.startswith(root) else os.path.basename(path),
             "file_bytes": os.path.getsize(path) if os.path.exists(path) else None,
             "kld_reference": None if kind == "F16" else f"{family}/F16",
             "llama_cpp": l, "mpq": m}
        if l and m:
            c["perplexity_difference_percent"] = pct(m.get("perplexity"), l.get("perplexity"))
            c["kld_difference_percent"] = pct(m.get("kld"), l.get("kld"))
            if l.get("tokens_per_second") and m.get("tokens_per_second"):
                c["speed_ratio_llama_over_mpq"] = l["tokens_per_second"] / m["tokens_per_second"]
        cases.append(c)

    speed = []
    for case in ("tiny-F16", "tiny-Q4_K_M", "smol-F16", "smol-Q4_K_M"):
        l, m = llama(work, "speed-" + case), mpq(work, "speed-" + case)
        if l and m:
            speed.append({"case": case.replace("tiny", "tiny-llama-jargon").replace("smol", "smollm2-135m").replace("-F16", "/F16").replace("-Q4_K_M", "/Q4_K_M"),
                          "chunks": l.get("chunks"), "llama_cpp_tokens_per_second": l.get("tokens_per_second"),
                          "mpq_tokens_per_second": m.get("tokens_per_second"),
                          "ratio_llama_over_mpq": l["tokens_per_second"] / m["tokens_per_second"]
                          if l.get("tokens_per_second") and m.get("tokens_per_second") else None,
                          "llama_cpp_peak_rss_mib": l.get("peak_rss_mib"), "mpq_peak_rss_mib": m.get("peak_rss_mib"),
                          "llama_cpp_wall_seconds": l.get("wall_seconds"), "mpq_wall_seconds": m.get("wall_seconds")})

    # The CI test: tiny-llama F16 and Q4_K_M, CI_CHUNKS chunks; the Q4_K_M's tensor types (the test
    # rebuilds it with mpq's quantizers from the F16 and the imatrix) and a checksum of its tensor data
    # (tensors by name: llama-quantize writes them in llama.cpp's order, not the source file's).
    ci = None
    q4 = paths["tiny-llama-jargon/Q4_K_M"]
    if os.path.exists(q4) and read(f"{work}/logs/llama-ci-tiny-Q4_K_M.log"):
        tensors = gguf_tensors(q4)
        base_types = dict((n, t) for n, t, _ in gguf_tensors(paths["tiny-llama-jargon/F16"]))
        ci = {
            "context": 512, "chunks": ci_chunks,
            "model": "examples/tiny-llama-jargon/model-F16.gguf",
            "imatrix": "bench/reference/tiny-llama-imatrix.gguf",
            "text": "jargon.txt held-out tail (last 25%), as bench/llm_reference.py texts makes it",
            "text_characters": len(read(f"{work}/jargon_tail25.txt")),
            "q4_k_m": {
                "file_bytes": os.path.getsize(q4),
                "tensor_types": {n: t.lower() for n, t, _ in tensors
                                 if base_types.get(n) != t},
                "tensor_data_fnv1a64": f"{fnv1a64(d for _, _, d in sorted(tensors)):016x}",
            },
            "llama_cpp": {
                "f16_perplexity": llama(work, "ci-tiny-F16.kldbase").get("perplexity"),
                "q4_k_m_perplexity": llama(work, "ci-tiny-Q4_K_M").get("perplexity"),
                "q4_k_m_kld": llama(work, "ci-tiny-Q4_K_M").get("kld"),
                "q4_k_m_kld_error": llama(work, "ci-tiny-Q4_K_M").get("kld_error"),
            },
            "mpq_release": mpq(work, "ci-tiny-Q4_K_M"),
        }
        rounding = read(f"{work}/logs/numpy-ci-tiny-Q4_K_M.log")
        m = re.search(r"float activations ([\d.]+); llama.cpp CPU activation rounding ([\d.]+)", rounding)
        if m:
            ci["activation_rounding"] = {
                "source": "bench/llm_activation_rounding.py (numpy reference, float64), same chunks",
                "kld_float_activations": float(m.group(1)), "kld_llama_cpp_rounding": float(m.group(2)),
                "factor": float(m.group(2)) / float(m.group(1))}

    bytematch = {}
    for im in ("none", "imatrix"):
        log = read(f"{work}/logs/bytematch-{im}.log")
        rows = {}
        for m in re.finditer(r"gguf_quantize_match (\S+): (\d+)/(\d+) tensors identical, (\d+)/(\d+) bytes identical", log):
            rows[m.group(1)] = {"tensors_identical": int(m.group(2)), "tensors": int(m.group(3)),
                                "bytes_identical": int(m.group(4)), "bytes": int(m.group(5))}
        if rows:
            issues = sorted(set(re.findall(r"Expectation failed: .*?\n?.*?(\S+\.gguf \S+ \(\S+\))", log)))
            bytematch[im] = {"types": rows, "failures": issues[:50],
                             "passed": "Test run with" in log and "passed" in log.split("Test run with")[-1]}

    search = {}
    tt = read(f"{work}/search-lm/tensor-types.txt")
    if tt:
        counts = {}
        for line in tt.split():
            counts[line.rsplit("=", 1)[1]] = counts.get(line.rsplit("=", 1)[1], 0) + 1
        rounding = re.search(r"(\d+) chunk\(s\) of \d+: float activations ([\d.]+); llama.cpp CPU activation rounding ([\d.]+)",
                             read(f"{work}/logs/numpy-search-lm.log"))
        search = {"activation_rounding_numpy": None if not rounding else {
                      "chunks": int(rounding.group(1)), "kld_float_activations": float(rounding.group(2)),
                      "kld_llama_cpp_rounding": float(rounding.group(3)),
                      "factor": float(rounding.group(3)) / float(rounding.group(2))},
                  "command": "mpq search-lm model-F16.gguf --text jargon_head60.txt --target-bpw 5.0 --context 256 --chunks 1 "
                             "--types q3_K,q4_K,q5_K,q6_K --eval-text jargon_tail25.txt --eval-chunks 1 --no-cache", "type_counts": counts}

    result = {
        "llama_cpp": {"version": version, "commit": commit.group(1) if commit else None,
                      "source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp (bench/build-llama-cpp.sh)",
                      "build": "CPU, Release, GGML_NATIVE default (on), OpenMP, static"},
        "settings": {"text": "Jargon File held-out tail (examples/tiny-llama-jargon: last 25%, sha256 " + TAIL_SHA256 + ")",
                     "calibration": "Jargon File head 60% (imatrix, search-lm)", "context": 512, "chunks": chunks,
                     "threads": threads,
                     "llama_cpp_command": "llama-perplexity -m M -f TAIL -c 512 --chunks N -t T [--kl-divergence-base F16.kld [--kl-divergence]]",
                     "mpq_command": "mpq eval-lm M --text TAIL --context 512 --chunks N --threads T [--reference F16.gguf]",
                     "note": "llama.cpp's CPU matmuls round activations to 8-bit blocks (q8_0/q8_K) for quantized weights; "
                             "mpq eval-lm computes in float32 and has no option to simulate that rounding."},
        "cases": cases,
        "speed_paired": speed,
        "byte_match": bytematch,
        "search_lm": search,
        "ci": ci,
    }
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")

    # ---- text report
    print(f"# llama.cpp reference for mpq's LLM path (bench/llm_reference.sh)\n")
    print(f"{version}\ntext: Jargon tail 25%, context 512, {chunks} chunks, {threads} threads\n")
    print("## perplexity and KLD (mpq eval-lm vs llama-perplexity)\n")
    print(f"{'case':38} {'chunks':>6} {'bytes':>11} {'ppl llama':>10} {'ppl mpq':>10} {'diff %':>7} {'KLD llama':>10} {'KLD mpq':>10} {'diff %':>7}")
    for c in cases:
        l, m = c["llama_cpp"] or {}, c["mpq"] or {}
        print(f"{c['case']:38} {int(l.get('chunks') or m.get('chunks') or 0):>6} {c['file_bytes'] or 0:>11,} {fmt(l.get('perplexity')):>10} {fmt(m.get('perplexity')):>10} "
              f"{fmt(c.get('perplexity_difference_percent'), 3):>7} {fmt(l.get('kld'), 6):>10} {fmt(m.get('kld'), 6):>10} "
              f"{fmt(c.get('kld_difference_percent'), 2):>7}")
    print("\n## speed (tokens/s in the forward passes) and peak RSS\n")
    print(f"{'case':38} {'tok/s llama':>11} {'tok/s mpq':>10} {'llama/mpq':>9} {'RSS llama MiB':>13} {'RSS mpq MiB':>11}")
    for c in cases:
        l, m = c["llama_cpp"] or {}, c["mpq"] or {}
        print(f"{c['case']:38} {fmt(l.get('tokens_per_second'), 1):>11} {fmt(m.get('tokens_per_second'), 1):>10} "
              f"{fmt(c.get('speed_ratio_llama_over_mpq'), 2):>9} {fmt(l.get('peak_rss_mib'), 1):>13} {fmt(m.get('peak_rss_mib'), 1):>11}")
    print("(Each run shared the CPU with other work: these speeds are not comparable; see the paired runs below.")
    print(" RSS of runs with --kl-divergence / --reference includes the reference's logits or model.)")
    if speed:
        print("\n## speed and peak RSS, paired plain runs (llama-perplexity, then mpq eval-lm right after)\n")
        print(f"{'case':28} {'chunks':>6} {'tok/s llama':>11} {'tok/s mpq':>10} {'llama/mpq':>9} {'RSS llama MiB':>13} {'RSS mpq MiB':>11}")
        for r in speed:
            print(f"{r['case']:28} {int(r['chunks'] or 0):>6} {fmt(r['llama_cpp_tokens_per_second'], 1):>11} {fmt(r['mpq_tokens_per_second'], 1):>10} "
                  f"{fmt(r['ratio_llama_over_mpq'], 2):>9} {fmt(r['llama_cpp_peak_rss_mib'], 1):>13} {fmt(r['mpq_peak_rss_mib'], 1):>11}")
    for im, b in bytematch.items():
        print(f"\n## byte identity with llama-quantize --pure, tiny-llama F16, imatrix: {im}\n")
        for t, r in b["types"].items():
            print(f"{t:8} tensors {r['tensors_identical']}/{r['tensors']}  bytes {r['bytes_identical']}/{r['bytes']} "
                  f"({100.0 * r['bytes_identical'] / max(1, r['bytes']):.4f} %)")
        for f in b["failures"]:
            print("  differs:", f)
    if search:
        print(f"\n## search-lm mix: {search['command']}\ntypes: {search['type_counts']}")
        print(f"KLD added by llama.cpp's activation rounding (numpy): {json.dumps(search['activation_rounding_numpy'])}")
    if ci:
        print(f"\n## CI test figures (tiny-llama, {ci_chunks} chunks): {json.dumps(ci['llama_cpp'])}")
        print(f"Q4_K_M tensor data FNV-1a 64: {ci['q4_k_m']['tensor_data_fnv1a64']}")
        if "activation_rounding" in ci:
            print(f"KLD added by llama.cpp's activation rounding (numpy): {json.dumps(ci['activation_rounding'])}")


if __name__ == "__main__":
    if sys.argv[1] == "texts":
        texts(*sys.argv[2:5])
    elif sys.argv[1] == "report":
        w, ch, cich, th, out = sys.argv[2:7]
        report(w, int(ch), int(cich), int(th), out)
