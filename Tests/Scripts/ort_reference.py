"""Runs every case folder under DIR with ONNX Runtime: DIR/<case>/model.onnx on
DIR/<case>/inputs.npz, writing DIR/<case>/out_<i>.npy, or error.txt on failure."""
import os
import sys
import traceback

import numpy as np
import onnxruntime as ort


def main(root):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for case in sorted(os.listdir(root)):
        folder = os.path.join(root, case)
        try:
            session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
            feeds = dict(np.load(os.path.join(folder, "inputs.npz")))
            outputs = session.run(None, feeds)
            for i, value in enumerate(outputs):
                np.save(os.path.join(folder, f"out_{i}.npy"), np.asarray(value))
        except Exception:
            with open(os.path.join(folder, "error.txt"), "w") as f:
                f.write(traceback.format_exc(limit=1).strip().splitlines()[-1])


if __name__ == "__main__":
    main(sys.argv[1])
