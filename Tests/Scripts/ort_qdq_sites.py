"""Runs a QDQ model with ONNX Runtime, graph optimizations off (the QDQ graph as
written), and saves the dequantized value of every quantizer: for a site V
the output of its DequantizeLinear (V_dequantized, or V itself for graph
outputs). Usage: ort_qdq_sites.py MODEL.qdq.onnx INPUTS.npz SITES.txt OUT.npz"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from ort_run_model import with_dynamic_batch


def main(model_path, inputs, sites_file, out):
    model = onnx.load_from_string(with_dynamic_batch(model_path))
    outputs = {o.name for o in model.graph.output}
    produced = {name for node in model.graph.node for name in node.output}
    sites = [s for s in open(sites_file).read().split("\n") if s]
    names = {}
    for site in sites:
        name = site if site in outputs else site + "_dequantized"
        if name not in produced and site not in outputs:
            continue
        names[site] = name
        if name not in outputs:
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, dict(np.load(inputs)))))
    np.savez(out, **{f"site{i}": values[names[s]] for i, s in enumerate(sites) if s in names})


if __name__ == "__main__":
    main(*sys.argv[1:5])
