"""Writes hostile and careless inputs for BadInputTests into a folder.

usage: make_bad_models.py OUT_DIR

Every model is a small variation of one Conv network (input x [1, 3, 8, 8]).
Files are written with onnx.save without running the checker, since most of
them are invalid on purpose. Also writes x.npy (a good input), a few bad .npy
files and bad JSON configs.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def path(name):
    return os.path.join(out, name)


def weight(name="w", shape=(4, 3, 3, 3)):
    return numpy_helper.from_array(np.full(shape, 0.1, dtype=np.float32), name)


def x_info(shape=(1, 3, 8, 8)):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def y_info(name="y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def save(name, nodes, inputs=None, outputs=None, initializers=None, opset=17):
    graph = helper.make_graph(nodes, name.replace(".onnx", ""), inputs if inputs is not None else [x_info()],
                              outputs if outputs is not None else [y_info()],
                              initializer=initializers if initializers is not None else [weight()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_bad_models")
    model.ir_version = 8
    onnx.save(model, path(name))


def conv(**attributes):
    return helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attributes)


# The good model and input (sanity: this must run).
save("good.onnx", [conv(pads=[1, 1, 1, 1])])
np.save(path("x.npy"), np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32))
np.save(path("calib.npy"), np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32))

# Symbolic dims (for --dim).
save("symbolic.onnx", [conv(pads=[1, 1, 1, 1])],
     inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])])

# Window attributes.
save("conv_pads_1e9.onnx", [conv(pads=[10**9] * 4)])
save("conv_pads_int32max.onnx", [conv(pads=[2**31 - 1] * 4)])
save("conv_strides_zero.onnx", [conv(strides=[0, 0])])
save("conv_strides_negative.onnx", [conv(strides=[-1, 1])])
save("conv_dilations_zero.onnx", [conv(dilations=[0, 1])])
save("conv_pads_negative.onnx", [conv(pads=[-5, 0, 0, 0])])
save("conv_pads_odd_count.onnx", [conv(pads=[1, 1, 1])])
save("conv_auto_pad_bogus.onnx", [conv(auto_pad="SAME_SIDEWAYS")])
save("conv_kernel_too_big.onnx", [conv()], initializers=[weight(shape=(4, 3, 9, 9))])
save("conv_pads_large.onnx", [conv(pads=[2**20] * 4)])  # allowed attribute, output too large
save("maxpool_stride_zero.onnx", [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[0, 0])],
     initializers=[])
save("maxpool_kernel_zero.onnx", [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[0, 2])],
     initializers=[])
save("convtranspose_output_padding_huge.onnx",
     [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", output_padding=[10**12, 0])],
     initializers=[weight(shape=(3, 4, 3, 3))])
save("softmax_axis_out_of_range.onnx", [helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=9)],
     initializers=[])

# Sizes that overflow or exceed memory.
shape = numpy_helper.from_array(np.array([10**6, 10**6, 10**6], dtype=np.int64), "shape")
save("expand_huge.onnx", [helper.make_node("ConstantOfShape", ["shape"], ["y"], name="fill")],
     inputs=[], initializers=[shape])
save("expand_runtime_shape.onnx", [helper.make_node("Expand", ["x", "s"], ["y"], name="expand")],
     inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
     initializers=[])
np.save(path("one.npy"), np.ones((1,), dtype=np.float32))
np.save(path("shape_huge.npy"), np.array([10**6, 10**6, 10**6], dtype=np.int64))
np.save(path("shape_overflow.npy"), np.array([2**40, 2**40, 2**40], dtype=np.int64))
save("constantofshape_runtime.onnx", [helper.make_node("ConstantOfShape", ["s"], ["y"], name="fill")],
     inputs=[helper.make_tensor_value_info("s", TensorProto.INT64, [3])], initializers=[])
save("tile_runtime.onnx", [helper.make_node("Tile", ["x", "s"], ["y"], name="tile")],
     inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1]), helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
     initializers=[])
save("pad_runtime.onnx", [helper.make_node("Pad", ["x", "p"], ["y"], name="pad")],
     inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1]), helper.make_tensor_value_info("p", TensorProto.INT64, [6])],
     initializers=[])
save("range_runtime.onnx", [helper.make_node("Range", ["a", "b", "c"], ["y"], name="range")],
     inputs=[helper.make_tensor_value_info(n, TensorProto.INT64, []) for n in "abc"], initializers=[])
np.save(path("ones3.npy"), np.ones((1, 1, 1), dtype=np.float32))
np.save(path("pads_huge.npy"), np.array([10**6] * 6, dtype=np.int64))
np.save(path("zero.npy"), np.array(0, dtype=np.int64))
np.save(path("big.npy"), np.array(2**62, dtype=np.int64))
np.save(path("step1.npy"), np.array(1, dtype=np.int64))
np.save(path("step0.npy"), np.array(0, dtype=np.int64))
# Index and shape values that arrive at run time.
save("gather_runtime.onnx", [helper.make_node("Gather", ["t", "i"], ["y"], name="gather", axis=0)],
     inputs=[helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 3]), helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
     initializers=[])
save("reshape_runtime.onnx", [helper.make_node("Reshape", ["t", "s"], ["y"], name="reshape")],
     inputs=[helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 3]), helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
     initializers=[])
save("slice_runtime.onnx", [helper.make_node("Slice", ["t", "a", "b", "ax", "st"], ["y"], name="slice")],
     inputs=[helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 3])]
     + [helper.make_tensor_value_info(n, TensorProto.INT64, [1]) for n in ["a", "b", "ax", "st"]], initializers=[])
np.save(path("t.npy"), np.ones((4, 3), dtype=np.float32))
np.save(path("index_huge.npy"), np.array([0, 10**6], dtype=np.int64))
np.save(path("index_negative.npy"), np.array([0, -10**6], dtype=np.int64))
np.save(path("shape_negative.npy"), np.array([5, -3], dtype=np.int64))
np.save(path("shape_two_minus_one.npy"), np.array([-1, -1], dtype=np.int64))
np.save(path("i0.npy"), np.array([0], dtype=np.int64))
np.save(path("i4.npy"), np.array([4], dtype=np.int64))
np.save(path("i5.npy"), np.array([5], dtype=np.int64))
open(path("empty.onnx"), "wb").close()
with open(path("not_a_zip.npz"), "wb") as f:
    f.write(b"PK but not really a zip archive")
with open(path("not_a_model.onnx"), "wb") as f:
    f.write(b"\x08\x07\x12\x04junk\xff\xff\xff\xff\xff")
# .npz archives: an array stored twice, an entry inflating past its declared size.
import io, struct, warnings, zipfile
x_bytes = io.BytesIO()
np.save(x_bytes, np.ones((1, 3, 8, 8), dtype=np.float32))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with zipfile.ZipFile(path("duplicate_array.npz"), "w") as z:
        z.writestr("x.npy", x_bytes.getvalue())
        z.writestr("x.npy", x_bytes.getvalue())
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr("x.npy", x_bytes.getvalue())
data = bytearray(buffer.getvalue())
# Declare 100 bytes in the local header (offset 22) and the central directory entry (offset 24).
data[22:26] = struct.pack("<I", 100)
central = data.rfind(b"PK\x01\x02")
data[central + 24:central + 28] = struct.pack("<I", 100)
with open(path("inflates_past_size.npz"), "wb") as f:
    f.write(bytes(data))
huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**40, 2**40])
save("initializer_dims_overflow.onnx", [conv()], initializers=[huge])
save("input_dims_huge.onnx", [conv()], inputs=[x_info((1, 3, 10**7, 10**7))])

# Graph structure (what onnx.checker rejects).
save("duplicate_graph_outputs.onnx", [conv()], outputs=[y_info(), y_info()])
save("two_writers.onnx", [conv(), helper.make_node("Relu", ["x"], ["y"], name="relu")])
save("no_outputs.onnx", [conv()], outputs=[])
save("output_not_produced.onnx", [conv()], outputs=[y_info(), y_info("ghost")])
save("cycle.onnx", [helper.make_node("Relu", ["b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second"),
                    helper.make_node("Add", ["x", "b"], ["y"], name="add")], initializers=[])
save("duplicate_initializer.onnx", [conv()], initializers=[weight(), weight()])
save("initializer_type_mismatch.onnx", [conv()],
     inputs=[x_info(), helper.make_tensor_value_info("w", TensorProto.INT64, [4, 3, 3, 3])])
save("node_output_twice.onnx", [helper.make_node("Split", ["x"], ["y", "y"], name="split", axis=1, num_outputs=2)],
     initializers=[], opset=18)
save("duplicate_inputs.onnx", [conv()], inputs=[x_info(), x_info()])


def external(name, location, offset=None, length=None):
    tensor = weight()
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = [("location", location)]
    if offset is not None:
        entries.append(("offset", str(offset)))
    if length is not None:
        entries.append(("length", str(length)))
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    save(name, [conv()], initializers=[tensor])


# External data: confined to the model's folder, inside the file.
weights_bytes = np.full((4, 3, 3, 3), 0.1, dtype=np.float32).tobytes()
outside = os.path.join(os.path.dirname(os.path.abspath(out)), os.path.basename(os.path.abspath(out)) + "-secret.bin")
with open(outside, "wb") as f:
    f.write(weights_bytes)
with open(path("weights.bin"), "wb") as f:
    f.write(weights_bytes)
external("external_good.onnx", "weights.bin")
external("external_dotdot.onnx", "../" + os.path.basename(outside))
external("external_absolute.onnx", outside)
if os.path.lexists(path("link.bin")):
    os.remove(path("link.bin"))
os.symlink(outside, path("link.bin"))
external("external_symlink.onnx", "link.bin")
external("external_past_end.onnx", "weights.bin", offset=len(weights_bytes) - 8)
external("external_offset_overflow.onnx", "weights.bin", offset=2**63 - 8)
external("external_offset_garbage.onnx", "weights.bin", offset="12abc")
external("external_length_wrong.onnx", "weights.bin", length=4)
os.makedirs(path("folder.bin"), exist_ok=True)
external("external_folder.onnx", "folder.bin")

# Bad .npy files.
np.save(path("scalar.npy"), np.float32(3.0))
np.save(path("labels_float.npy"), np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32))
np.save(path("labels_negative.npy"), np.array([0, -1, 2, 3], dtype=np.int64))
np.save(path("labels_out_of_range.npy"), np.array([0, 1, 2, 4000], dtype=np.int64))
np.save(path("labels_count.npy"), np.array([0, 1], dtype=np.int64))
with open(path("huge_header.npy"), "wb") as f:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())

# Bad JSON configs.
with open(path("config_unknown_key.json"), "w") as f:
    json.dump({"weights": "int8", "activations": "uint8", "weight_bits": 4}, f)
with open(path("config_unknown_tensor.json"), "w") as f:
    json.dump({"weights": "int8", "activations": "uint8", "tensors": {"no_such_tensor": "int4"}}, f)
print("ok")
