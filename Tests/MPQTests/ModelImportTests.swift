import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// ONNX import variants and graph-level passes on the real models.
@Suite struct ModelImportTests {
    let folder = temporaryFolder("mpq-import")

    /// The same MobileNetV2 stored with external data, with typed-field initializers,
    /// with initializers turned into Constant nodes, and converted to opsets 11,
    /// 12 and 21 gives identical outputs.
    @Test func storageVariantsGiveIdenticalOutputs() throws {
        let source = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path
        let script = """
        import onnx, sys, os
        from onnx import numpy_helper, helper
        src, d = sys.argv[1], sys.argv[2]
        m = onnx.load(src)
        os.makedirs(f"{d}/ext", exist_ok=True)
        onnx.save_model(m, f"{d}/ext/model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
        typed = onnx.load(src)
        for t in typed.graph.initializer:
            a = numpy_helper.to_array(t)
            t.ClearField("raw_data")
            t.float_data.extend(a.flatten().tolist())
        onnx.save(typed, f"{d}/typed.onnx")
        const = onnx.load(src)
        nodes = [helper.make_node("Constant", [], [t.name], value=t) for t in const.graph.initializer]
        del const.graph.initializer[:]
        rest = list(const.graph.node)
        del const.graph.node[:]
        const.graph.node.extend(nodes + rest)
        onnx.save(const, f"{d}/constants.onnx")
        from onnx import version_converter
        onnx.save(version_converter.convert_version(onnx.load(src), 21), f"{d}/opset21.onnx")
        # Every op of this model means the same at opsets 11 and 12 (the converter cannot go down).
        for opset, ir in ((11, 6), (12, 7)):
            old = onnx.load(src)
            old.opset_import[0].version = opset
            old.ir_version = ir
            onnx.checker.check_model(old)
            onnx.save(old, f"{d}/opset{opset}.onnx")
        """
        try runPython(["-c", script, source, folder.path])
        var rng = SeededGenerator(seed: 5)
        let input = ["input": Tensor.random([2, 3, 224, 224], using: &rng)]
        let reference = try InferenceSession(model: Model(contentsOf: source)).run(input)["logits"]!
        for variant in ["ext/model.onnx", "typed.onnx", "constants.onnx", "opset11.onnx", "opset12.onnx", "opset21.onnx"] {
            let model = try Model(contentsOf: folder.appendingPathComponent(variant).path)
            #expect(model.graph.parameterCount == 3_487_816, "\(variant)")
            let logits = try InferenceSession(model: model).run(input)["logits"]!
            #expect(maxAbsDifference(logits, reference) == 0, "\(variant)")
        }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("ext/weights.bin"))
        #expect(throws: MPQError.self) { try Model(contentsOf: folder.appendingPathComponent("ext/model.onnx").path) }
    }

    /// Once input shapes are known the Shape/Gather/Concat/Reshape chains of the
    /// transformer export fold into constants.
    @Test func constantFoldingRemovesShapeChains() throws {
        let model = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path)
        let summary = try ModelSummary(graph: model.graph, dimensions: ["b": 2, "s": 16])
        #expect(summary.outputShapes["last_hidden_state"] == [2, 16, 384])
        let remaining = try InferenceSession(model: model)
            .specialize(inputShapes: ["input_ids": [2, 16], "attention_mask": [2, 16], "token_type_ids": [2, 16]]).nodes
        var histogram: [String: Int] = [:]
        for entry in remaining { histogram[entry.node.opType, default: 0] += 1 }
        for shapeOp in ["Shape", "Concat", "Unsqueeze", "ConstantOfShape", "Range", "Equal"] {
            #expect(histogram[shapeOp] == nil, "\(shapeOp) left after folding: \(histogram)")
        }
        // What stays is the arithmetic: 6 layers of attention and feed-forward.
        #expect(histogram["MatMul"] == 48 && histogram["LayerNormalization"] == 13 && histogram["Softmax"] == 6)
        #expect(remaining.count <= 250, "\(remaining.count) of \(model.graph.nodes.count) nodes left: \(histogram)")
        // 6 layers x (4 projections + 2 attention products + 2 feed-forward) MatMuls, 2 x 16 tokens.
        #expect(summary.layers.filter { $0.opType == "MatMul" }.count == 48)
    }

    @Test func mobileNetSummaryCountsMACs() throws {
        let model = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path)
        let summary = try ModelSummary(graph: model.graph)
        #expect(summary.parameterCount == 3_487_816)
        // torchvision reports 300.8 M multiply-adds for MobileNetV2 at 224x224.
        #expect(abs(Double(summary.totalMACs) / 1e6 - 300.8) < 1.5, "\(summary.totalMACs)")
        #expect(summary.layers.count == 53)
    }
}
