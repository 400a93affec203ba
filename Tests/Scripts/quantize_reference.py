"""Reference quantize / dequantize results for mpq's QuantizationFormatTests.

Usage: quantize_reference.py ROOT

Every folder under ROOT holds x.npy (float32), scale.npy (float32) and zero_point.npy (int64) in ONNX's
layout ([] per-tensor, [C] per-channel, x's shape with dim `axis` divided by `block` per-group) and
case.json: {"format": "integer" | "float16" | "bfloat16" | "float8e4m3fn" | "float8e5m2",
"qmin": int, "qmax": int, "axis": int, "block": int (0 unless per-group)}.

Writes, per folder:
- y_numpy.npy, q_numpy.npy: numpy formulas (integers: q = clip(rint(x / s) + zp, qmin, qmax) with NaN
  giving qmin as ONNX Runtime does, y = (q - zp) * s; floats: the float16 / ml_dtypes cast, saturating
  for float8 via onnx.numpy_helper.saturate_cast), q as int64 codes or the float bit patterns;
- y_onnx.npy, q_onnx.npy: onnx.reference's QuantizeLinear + DequantizeLinear (opset 21), for the formats
  ONNX has (int2/4/8/16, uint2/4/8/16 full range, float8);
- y_ort.npy: ONNX Runtime running the same QDQ model (all of those but int2/uint2);
- error.txt instead when something fails.
"""

import json
import os
import sys
import traceback
import warnings

import ml_dtypes
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

warnings.filterwarnings("ignore")

INTEGER_TYPES = {
    (-128, 127): (TensorProto.INT8, np.int8),
    (0, 255): (TensorProto.UINT8, np.uint8),
    (-32768, 32767): (TensorProto.INT16, np.int16),
    (0, 65535): (TensorProto.UINT16, np.uint16),
    (-8, 7): (TensorProto.INT4, ml_dtypes.int4),
    (0, 15): (TensorProto.UINT4, ml_dtypes.uint4),
    (-2, 1): (TensorProto.INT2, ml_dtypes.int2),
    (0, 3): (TensorProto.UINT2, ml_dtypes.uint2),
}
FLOAT_TYPES = {
    "float16": (TensorProto.FLOAT16, np.float16, np.uint16),
    "bfloat16": (TensorProto.BFLOAT16, ml_dtypes.bfloat16, np.uint16),
    "float8e4m3fn": (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn, np.uint8),
    "float8e5m2": (TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2, np.uint8),
}


def broadcast(p, shape, axis, block):
    """A scale / zero point tensor broadcast against x (ONNX per-axis and blocked semantics)."""
    if p.ndim == 0:
        return p
    if block:
        return np.repeat(p, block, axis=axis)
    view = [1] * len(shape)
    view[axis] = -1
    return p.reshape(view)


def numpy_reference(x, scale, zero_point, case):
    s = broadcast(scale, x.shape, case["axis"], case["block"])
    v = x / s
    if case["format"] == "integer":
        z = broadcast(zero_point, x.shape, case["axis"], case["block"])
        q = np.clip(np.rint(v).astype(np.float64) + z, case["qmin"], case["qmax"])
        q = np.where(np.isnan(v), case["qmin"], q).astype(np.int64)
        return (q - z).astype(np.float32) * s, q
    _, dtype, bits = FLOAT_TYPES[case["format"]]
    if case["format"].startswith("float8"):
        cast = numpy_helper.saturate_cast(v, dtype)
    else:
        cast = v.astype(dtype)
    return cast.astype(np.float32) * s, cast.view(bits)


def qdq_model(x, scale, zero_point, case):
    """QuantizeLinear + DequantizeLinear with q and y as outputs, or None when ONNX has no such type."""
    if case["format"] == "integer":
        types = INTEGER_TYPES.get((case["qmin"], case["qmax"]))
        if types is None:
            return None
        tensor_type, dtype = types
        zero = zero_point.astype(dtype)
    elif case["format"].startswith("float8"):
        tensor_type, dtype, _ = FLOAT_TYPES[case["format"]]
        zero = np.zeros(zero_point.shape, dtype)
    else:
        return None
    attributes = {"axis": case["axis"]}
    if case["block"]:
        attributes["block_size"] = case["block"]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attributes),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attributes),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("q", tensor_type, None)],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), tensor_type


def run_case(folder):
    x = np.load(os.path.join(folder, "x.npy"))
    scale = np.load(os.path.join(folder, "scale.npy"))
    zero_point = np.load(os.path.join(folder, "zero_point.npy"))
    with open(os.path.join(folder, "case.json")) as f:
        case = json.load(f)
    y, q = numpy_reference(x, scale, zero_point, case)
    np.save(os.path.join(folder, "y_numpy.npy"), y)
    np.save(os.path.join(folder, "q_numpy.npy"), q)
    built = qdq_model(x, scale, zero_point, case)
    if built is None:
        return
    model, tensor_type = built
    y, q = ReferenceEvaluator(model).run(None, {"x": x})
    np.save(os.path.join(folder, "y_onnx.npy"), y)
    codes = q.view(np.uint8) if case["format"].startswith("float8") else q.astype(np.int64)
    np.save(os.path.join(folder, "q_onnx.npy"), codes)
    if tensor_type in (TensorProto.INT2, TensorProto.UINT2):
        return
    # ONNX Runtime cannot hand sub-byte or float8 tensors back to numpy: read only y.
    model.graph.output.pop()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.save(os.path.join(folder, "y_ort.npy"), session.run(["y"], {"x": x})[0])


def main():
    root = sys.argv[1]
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        try:
            run_case(folder)
        except Exception:
            with open(os.path.join(folder, "error.txt"), "w") as f:
                f.write(traceback.format_exc())


if __name__ == "__main__":
    main()
