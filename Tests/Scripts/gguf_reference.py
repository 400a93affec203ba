#!/usr/bin/env python3
"""Reference data for the MPQGGUF tests, produced with llama.cpp's gguf-py (gguf 0.19.0).

Subcommands:
  dequant-cases DIR SEED   for every ggml type: DIR/<type>.bin (raw blocks) and DIR/<type>.ref
                           (float32 from gguf.quants.dequantize)
  quant-cases DIR SEED     DIR/input.f32 (rows of 256 floats) and DIR/<type>.q from gguf.quants.quantize
                           for every type gguf-py can quantize
  write-gguf PATH [ALIGN]  a GGUF file with every metadata value type and tensors of several types
  check-gguf A B           reads both with GGUFReader; exits non-zero unless metadata and tensors agree
  describe-imatrix PATH    prints the metadata and tensor layout of a GGUF imatrix file as JSON
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

# Offsets of the fp16 scale fields in each block, so random blocks get finite scales.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
}
QUANTIZABLE = [T.BF16, T.F16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]


def random_halves(rng, n):
    """Finite float16 values spanning normal and subnormal magnitudes, both signs."""
    mag = np.exp2(rng.uniform(-26, 15, n)).astype(np.float32)
    h = (mag * rng.choice([-1, 1], n)).astype(np.float16)
    h[~np.isfinite(h)] = np.float16(1.0)
    return h


def dequant_cases(folder, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    nblocks = 64
    for t in [T.F32, T.F16, T.BF16] + list(HALF_FIELDS):
        block, size = GGML_QUANT_SIZES[t]
        if t == T.F32:
            bits = rng.integers(0, 2**32, nblocks * 256, dtype=np.uint64).astype(np.uint32)
            bits[(bits & 0x7F800000) == 0x7F800000] &= 0xFF7FFFFF   # no NaN/Inf
            raw = bits.view(np.uint8)
        elif t in (T.F16, T.BF16):
            bits = rng.integers(0, 2**16, nblocks * 256, dtype=np.uint32).astype(np.uint16)
            if t == T.F16:
                nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
            else:
                nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
            bits[nan] &= 0xBFFF
            raw = bits.view(np.uint8)
        else:
            blocks = rng.integers(0, 256, (nblocks, size), dtype=np.uint16).astype(np.uint8)
            for off in HALF_FIELDS[t]:
                blocks[:, off:off + 2] = random_halves(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
            raw = blocks.reshape(-1)
            if t in QUANTIZABLE:
                # Also blocks produced by gguf-py's own quantiser.
                x = rng.standard_normal(nblocks * block).astype(np.float32)
                raw = np.concatenate([raw, gguf.quants.quantize(x.reshape(-1, block), t).reshape(-1)])
        count = raw.size // size * block
        ref = gguf.quants.dequantize(raw.reshape(-1, size) if t not in (T.F32, T.F16, T.BF16) else raw, t)
        ref = np.asarray(ref, dtype=np.float32).reshape(-1)
        assert ref.size == count, (t.name, ref.size, count)
        raw.tofile(os.path.join(folder, f"{t.name}.bin"))
        ref.tofile(os.path.join(folder, f"{t.name}.ref"))


def test_rows(rng, nrows, n):
    """Rows with varied distributions: normal, heavy tails, positive-only, zeros, constants, outliers."""
    rows = []
    for r in range(nrows):
        kind = r % 8
        if kind == 0:
            x = rng.standard_normal(n)
        elif kind == 1:
            x = rng.standard_t(3, n) * 0.02
        elif kind == 2:
            x = rng.uniform(0, 5, n)
        elif kind == 3:
            x = np.zeros(n)
            x[rng.integers(0, n, 8)] = rng.standard_normal(8)
        elif kind == 4:
            x = np.full(n, rng.uniform(-3, 3))
        elif kind == 5:
            x = rng.standard_normal(n) * 1e-3
            x[rng.integers(0, n, 4)] *= 1000
        elif kind == 6:
            x = -rng.exponential(1.0, n)
        else:
            x = rng.standard_normal(n) * 50
        rows.append(x)
    return np.array(rows, dtype=np.float32)


def quant_cases(folder, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    x = test_rows(rng, 64, 256)
    x.tofile(os.path.join(folder, "input.f32"))
    for t in QUANTIZABLE:
        q = gguf.quants.quantize(x, t)
        np.asarray(q).view(np.uint8).reshape(-1).tofile(os.path.join(folder, f"{t.name}.q"))


def write_gguf(path, alignment=None):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, arch="testarch")
    if alignment is not None:
        w.add_custom_alignment(int(alignment))
    V = gguf.GGUFValueType
    w.add_key_value("test.u8", 200, V.UINT8)
    w.add_key_value("test.i8", -100, V.INT8)
    w.add_key_value("test.u16", 60000, V.UINT16)
    w.add_key_value("test.i16", -30000, V.INT16)
    w.add_key_value("test.u32", 4000000000, V.UINT32)
    w.add_key_value("test.i32", -2000000000, V.INT32)
    w.add_key_value("test.u64", 18000000000000000000, V.UINT64)
    w.add_key_value("test.i64", -9000000000000000000, V.INT64)
    w.add_key_value("test.f32", 3.25, V.FLOAT32)
    w.add_key_value("test.f64", -1.0e-300, V.FLOAT64)
    w.add_key_value("test.bool_true", True, V.BOOL)
    w.add_key_value("test.bool_false", False, V.BOOL)
    w.add_key_value("test.string", "héllo wörld ✓", V.STRING)
    w.add_key_value("test.empty_string", "", V.STRING)
    w.add_key_value("test.arr_i32", [1, -2, 3], V.ARRAY, V.INT32)
    w.add_key_value("test.arr_f32", [0.5, -1.5], V.ARRAY, V.FLOAT32)
    w.add_key_value("test.arr_str", ["a", "bc", ""], V.ARRAY, V.STRING)
    w.add_key_value("test.arr_bool", [True, False, True], V.ARRAY, V.BOOL)
    w.add_key_value("test.arr_u8", [0, 255], V.ARRAY, V.UINT8)
    w.add_key_value("test.nested", [[1, 2], [3]], V.ARRAY, V.ARRAY)
    w.add_tensor("f32.2d", rng.standard_normal((3, 64)).astype(np.float32))
    w.add_tensor("f16.1d", rng.standard_normal(40).astype(np.float16))
    x = rng.standard_normal((2, 2, 64)).astype(np.float32)
    w.add_tensor("q8_0.3d", gguf.quants.quantize(x, T.Q8_0), raw_dtype=T.Q8_0)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    w.add_tensor("bf16.2d", gguf.quants.quantize(x, T.BF16), raw_dtype=T.BF16)
    kq = rng.integers(0, 256, (2, 144), dtype=np.uint16).astype(np.uint8)
    kq[:, 0:4] = np.array([[0.01, 0.001]] * 2, dtype=np.float16).view(np.uint8).reshape(2, 4)
    w.add_tensor("q4_k.2d", kq, raw_dtype=T.Q4_K)
    w.add_tensor("f32.4d", rng.standard_normal((2, 1, 3, 8)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def field_value(f):
    """A comparable value for a GGUFReader field: its raw parts' bytes, plus the decoded value
    where gguf-py can decode it (it cannot decode non-UTF-8 strings or some nested arrays)."""
    raw = tuple(np.asarray(p).tobytes() for p in f.parts)
    try:
        return raw, f.contents()
    except Exception:
        return raw, None


def check_gguf(a, b):
    ra, rb = gguf.GGUFReader(a), gguf.GGUFReader(b)
    fa = [(k, v.types, field_value(v)) for k, v in ra.fields.items()]
    fb = [(k, v.types, field_value(v)) for k, v in rb.fields.items()]
    if fa != fb:
        for x, y in zip(fa, fb):
            if x != y:
                print(f"field differs: {x} vs {y}", file=sys.stderr)
        sys.exit(f"metadata differs ({len(fa)} vs {len(fb)} fields)")
    if len(ra.tensors) != len(rb.tensors):
        sys.exit("tensor count differs")
    for ta, tb in zip(ra.tensors, rb.tensors):
        if (ta.name, ta.tensor_type, list(ta.shape)) != (tb.name, tb.tensor_type, list(tb.shape)):
            sys.exit(f"tensor info differs: {ta.name} vs {tb.name}")
        if not np.array_equal(np.asarray(ta.data).view(np.uint8), np.asarray(tb.data).view(np.uint8)):
            sys.exit(f"tensor data differs: {ta.name}")
    print("ok")


def describe_imatrix(path):
    r = gguf.GGUFReader(path)
    out = {
        "fields": {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")},
        "tensors": [{"name": t.name, "type": t.tensor_type.name, "shape": [int(s) for s in t.shape],
                     "data": np.asarray(t.data, dtype=np.float32).reshape(-1).tolist()} for t in r.tensors],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "dequant-cases":
        dequant_cases(sys.argv[2], int(sys.argv[3]))
    elif cmd == "quant-cases":
        quant_cases(sys.argv[2], int(sys.argv[3]))
    elif cmd == "write-gguf":
        write_gguf(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif cmd == "check-gguf":
        check_gguf(sys.argv[2], sys.argv[3])
    elif cmd == "describe-imatrix":
        describe_imatrix(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
