"""Runs MODEL with ONNX Runtime on the arrays of INPUTS.npz, BATCH samples at a
time along axis 0, and writes all outputs (concatenated) to OUT.npz.
Usage: ort_run_model.py MODEL INPUTS.npz OUT.npz BATCH [--exact]"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def with_dynamic_batch(path):
    """The model's bytes with a leading input/output dim of 1 made symbolic, so
    ONNX Runtime accepts any batch (mpq does this itself)."""
    model = onnx.load(path)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "batch"
    return model.SerializeToString()


def main(model, inputs, out, batch, exact=False):
    """`exact` turns ONNX Runtime's graph optimizations off, so QDQ models run
    as written (QuantizeLinear/DequantizeLinear in float) instead of through
    fused integer kernels."""
    options = ort.SessionOptions()
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(with_dynamic_batch(model), options, providers=["CPUExecutionProvider"])
    feeds = dict(np.load(inputs))
    total = next(iter(feeds.values())).shape[0]
    names = [o.name for o in session.get_outputs()]
    parts = {n: [] for n in names}
    for start in range(0, total, batch):
        chunk = {k: v[start:start + batch] for k, v in feeds.items()}
        for name, value in zip(names, session.run(None, chunk)):
            parts[name].append(value)
    np.savez(out, **{n: np.concatenate(v) for n, v in parts.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), exact="--exact" in sys.argv[5:])
