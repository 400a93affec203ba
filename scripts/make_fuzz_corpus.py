#!/usr/bin/env python3
"""Writes the fuzzing seed corpus, Fuzz/corpus/{onnx,npy,npz,gguf}/ (see scripts/fuzz.sh).

Seeds are small valid files (each well under the fuzzer's -max_len) that reach deep into each
reader: ONNX models whose specialisation folds Shape/Gather/Concat chains, .npy files of every
dtype and header version mpq reads, .npz archives stored and deflated, GGUF files with one block of
every ggml type mpq dequantises and with each tokenizer family. Files are raw (no dispatch byte):
the folder names the target. Deterministic: rerunning rewrites identical bytes.

    .venv/bin/python scripts/make_fuzz_corpus.py
"""
import io
import os
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fuzz", "corpus")
rng = np.random.default_rng(20261129)


def out(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- ONNX

def model(graph, opset=17):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mpq-fuzz")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def f32(name, shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def conv_relu():
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1], name="conv"),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("GlobalAveragePool", ["p"], ["g"]),
            helper.make_node("Flatten", ["g"], ["y"], axis=1),
        ],
        "conv_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [f32("w", [2, 1, 3, 3]), f32("b", [2])],
    )
    return model(g)


def matmul_reshape():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape: folded once the batch is known.
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["a"]),
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
            helper.make_node("Concat", ["n1", "rest"], ["shape"], axis=0),
            helper.make_node("Reshape", ["a", "shape"], ["r"]),
            helper.make_node("Softmax", ["r"], ["y"], axis=-1),
        ],
        "matmul_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 3])],
        [
            f32("w", [4, 6]), f32("b", [6]),
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "rest"),
        ],
    )
    return model(g, opset=13)


def mixed_ops():
    # Constant nodes, Gemm, Transpose, reductions, Cast, Where, LayerNormalization.
    g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.FLOAT, [3], [0.5, -1.0, 2.0])),
            helper.make_node("Constant", [], ["two"], value_float=2.0),
            helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1, alpha=0.5),
            helper.make_node("Mul", ["g", "k"], ["gk"]),
            helper.make_node("Pow", ["gk", "two"], ["sq"]),
            helper.make_node("LayerNormalization", ["sq", "scale", "bias"], ["ln"], axis=-1, epsilon=1e-5),
            helper.make_node("Transpose", ["ln"], ["t"], perm=[1, 0]),
            helper.make_node("ReduceMean", ["t"], ["rm"], axes=[1], keepdims=1),
            helper.make_node("Greater", ["rm", "zero"], ["pos"]),
            helper.make_node("Cast", ["pos"], ["posf"], to=TensorProto.FLOAT),
            helper.make_node("Where", ["pos", "rm", "posf"], ["y"]),
        ],
        "mixed_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1])],
        [f32("w", [3, 5]), f32("b", [3]), f32("scale", [3]), f32("bias", [3]),
         numpy_helper.from_array(np.array(0, dtype=np.float32), "zero")],
    )
    return model(g, opset=17)


def shape_ops():
    # Slice, Split, Pad, Expand, Tile, Squeeze/Unsqueeze, Concat, ReduceSum, Resize on small shapes.
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, dtype=np.int64), name)
    g = helper.make_graph(
        [
            helper.make_node("Slice", ["x", "starts", "ends", "axes1"], ["s"]),
            helper.make_node("Split", ["s", "split"], ["s0", "s1"], axis=1),
            helper.make_node("Pad", ["s0", "pads"], ["p"], mode="reflect"),
            helper.make_node("Expand", ["s1", "eshape"], ["e"]),
            helper.make_node("Tile", ["e", "reps"], ["t"]),
            helper.make_node("Unsqueeze", ["t", "axes0"], ["u"]),
            helper.make_node("Squeeze", ["u", "axes0"], ["q"]),
            helper.make_node("ReduceSum", ["q", "axes1"], ["r"], keepdims=1),
            helper.make_node("Concat", ["p", "r"], ["c"], axis=1),
            helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="nearest"),
        ],
        "shape_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [
            i64("starts", [1]), i64("ends", [5]), i64("axes1", [1]), i64("split", [2, 2]),
            i64("pads", [0, 1, 0, 1]), i64("eshape", [2, 2]), i64("reps", [1, 2]), i64("axes0", [0]),
            numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "scales"),
        ],
    )
    return model(g, opset=18)


out("onnx", "conv_relu.onnx", conv_relu())
out("onnx", "matmul_reshape.onnx", matmul_reshape())
out("onnx", "mixed_ops.onnx", mixed_ops())
out("onnx", "shape_ops.onnx", shape_ops())

# ---------------------------------------------------------------- NPY


def npy(array, version=None):
    buf = io.BytesIO()
    if version is None:
        np.lib.format.write_array(buf, array, allow_pickle=False)
    else:
        np.lib.format.write_array(buf, array, version=version, allow_pickle=False)
    return buf.getvalue()


out("npy", "f4_2x3.npy", npy(np.arange(6, dtype=np.float32).reshape(2, 3)))
out("npy", "f8_fortran.npy", npy(np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))))
out("npy", "i8_scalar.npy", npy(np.array(-7, dtype=np.int64)))
out("npy", "b1.npy", npy(np.array([True, False, True])))
out("npy", "u1_empty.npy", npy(np.zeros((0, 3), dtype=np.uint8)))
out("npy", "f2_v2.npy", npy(np.linspace(-1, 1, 5).astype(np.float16), version=(2, 0)))
out("npy", "i4_v3.npy", npy(np.arange(4, dtype=np.int32).reshape(2, 1, 2), version=(3, 0)))
out("npy", "i1.npy", npy(np.array([-128, 0, 127], dtype=np.int8)))
out("npy", "u8.npy", npy(np.array([1, 2**63], dtype=np.uint64)))
out("npy", "big_endian_f4.npy", npy(np.arange(3, dtype=">f4")))

# ---------------------------------------------------------------- NPZ


def npz(arrays, compression):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            z.writestr(info, npy(array))
    return buf.getvalue()


out("npz", "stored.npz", npz({"a": np.arange(4, dtype=np.float32), "b": np.array([[1, 2]], dtype=np.int64)},
                              zipfile.ZIP_STORED))
out("npz", "deflated.npz", npz({"x": np.zeros((3, 3), dtype=np.float32), "y": np.array([True])},
                                zipfile.ZIP_DEFLATED))
out("npz", "single.npz", npz({"only": np.array(1.5, dtype=np.float64)}, zipfile.ZIP_DEFLATED))

# ---------------------------------------------------------------- GGUF

import gguf  # noqa: E402  (gguf-py, as pinned in scripts/requirements.lock)
from gguf import GGMLQuantizationType as Q  # noqa: E402


def gguf_bytes(fill):
    path = os.path.join(ROOT, ".tmp.gguf")
    w = gguf.GGUFWriter(path, "llama")
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


def tensors(w):
    w.add_name("fuzz")
    w.add_uint32("llama.context_length", 16)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("general.flag", True)
    w.add_array("general.tags", ["a", "bc"])
    w.add_array("general.ints", [1, -2, 3])
    w.add_tensor("f32", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.add_tensor("f16", np.arange(4, dtype=np.float16))
    for t in (Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
              Q.IQ4_NL, Q.IQ4_XS, Q.I8, Q.I32):
        block, size = gguf.GGML_QUANT_SIZES[t]
        raw = rng.integers(0, 256, size=size, dtype=np.uint8)
        if t in (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.IQ4_NL, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_XS):
            raw[:2] = [0x00, 0x3C]  # a float16 scale of 1.0 where the block starts with one
        w.add_tensor(t.name.lower(), raw, raw_dtype=t)  # shape from the byte count: one block


out("gguf", "tensors.gguf", gguf_bytes(tensors))

BYTES = [bytes([b]) for b in range(256)]


def bpe_tokenizer(pre):
    def fill(w):
        # Byte-level BPE: GPT-2's byte-to-unicode mapping for printable ASCII is the identity.
        vocab = ["<s>", "</s>", "Ġ"] + [chr(c) for c in range(33, 127)] + ["He", "ll", "llo", "Hello", "Ġw", "Ġworld", "12"]
        merges = ["H e", "l l", "ll o", "He llo", "Ġ w", "Ġw o", "r l", "Ġwo rl", "1 2"]
        types = [3, 3] + [1] * (len(vocab) - 2)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(vocab)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(0)
        w.add_eos_token_id(1)
        w.add_add_bos_token(True)
    return fill


def spm_tokenizer(w):
    vocab = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["▁", "▁Hello", "▁world", "H", "e", "l", "o", "▁w"]
    types = [2, 3, 3] + [6] * 256 + [1] * 8
    scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]
    w.add_tokenizer_model("llama")
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_space_prefix(True)


for pre in ("gpt-2", "llama3", "qwen2", "smollm"):
    out("gguf", f"tokenizer_{pre}.gguf", gguf_bytes(bpe_tokenizer(pre)))
out("gguf", "tokenizer_spm.gguf", gguf_bytes(spm_tokenizer))

for target in ("onnx", "npy", "npz", "gguf"):
    folder = os.path.join(ROOT, target)
    for name in sorted(os.listdir(folder)):
        size = os.path.getsize(os.path.join(folder, name))
        print(f"{target}/{name}: {size} bytes", file=sys.stderr)
