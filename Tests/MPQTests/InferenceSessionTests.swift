import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct InferenceSessionTests {
    let mobileNet = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path

    /// Hooks see every computed value and can replace one for all its consumers.
    @Test func hooksReadAndReplaceIntermediateValues() throws {
        let model = try Model(contentsOf: mobileNet)
        let session = try InferenceSession(model: model, options: SessionOptions(threads: 2))
        var rng = SeededGenerator(seed: 3)
        let feeds = ["input": Tensor.random([2, 3, 224, 224], using: &rng)]
        let plain = try session.run(feeds)["logits"]!

        var seen: [String: [Int]] = [:]
        let observed = try session.run(feeds) { name, value in
            seen[name] = value.shape
            return nil
        }["logits"]!
        let produced = Set(model.graph.nodes.flatMap(\.outputs))
        #expect(Set(seen.keys) == produced, "every node output is visible to the hook")
        #expect(seen["logits"] == [2, 1000])
        // Fused (no hook) and unfused (hooked) plans agree up to float rounding order.
        #expect(maxAbsDifference(observed, plain) <= 1e-5 * Double(plain.floats().map(abs).max()!))

        let target = model.graph.nodes.first { $0.opType == "GlobalAveragePool" }!.outputs[0]
        let replaced = try session.run(feeds) { name, value in
            name == target ? Tensor(zeros: .float32, shape: value.shape) : nil
        }["logits"]!
        // With zero features the logits are the classifier bias alone.
        let bias = model.graph.initializers[model.graph.nodes.first { $0.opType == "Gemm" }!.inputs[2]]!
        #expect(replaced.floats().prefix(1000).elementsEqual(bias.floats()))
    }

    /// A graph exported at batch 1 with the batch hard-coded in a Reshape still
    /// runs larger batches (one sample at a time), and names its shapes in errors otherwise.
    @Test func hardCodedBatchOneFallsBackToPerSampleRuns() throws {
        let graph = Graph(
            name: "batch1",
            nodes: [
                Node(name: "reshape", opType: "Reshape", inputs: ["x", "shape"], outputs: ["r"]),
                Node(name: "relu", opType: "Relu", inputs: ["r"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(4)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.fixed(1), .fixed(2), .fixed(2)])],
            initializers: ["shape": Tensor(shape: [3], scalars: [Int64(1), 2, 2])], opset: 17)
        let session = try InferenceSession(graph: graph)
        let x = Tensor(shape: [3, 4], scalars: (0..<12).map { Float($0) - 6 })
        let y = try session.run(["x": x])["y"]!
        #expect(y.shape == [3, 2, 2])
        #expect(y.floats() == (0..<12).map { max(Float($0) - 6, 0) })
        #expect(throws: MPQError.self) { try session.run(["x": Tensor(zeros: .float32, shape: [1, 5])]) }
    }

    /// Each intermediate buffer is released right after its last use: while the
    /// model runs, only a handful of its 100 intermediate values are alive at once.
    @Test func buffersAreReleasedAfterLastUse() throws {
        let session = try InferenceSession(model: Model(contentsOf: mobileNet), options: SessionOptions(threads: 1))
        var rng = SeededGenerator(seed: 4)
        let feeds = ["input": Tensor.random([1, 3, 224, 224], using: &rng)]
        final class Weak { weak var storage: TensorStorage? }
        var tracked: [Weak] = []
        var mostAlive = 0
        _ = try session.run(feeds) { _, value in
            let reference = Weak()
            reference.storage = value.storage
            tracked.append(reference)
            mostAlive = max(mostAlive, tracked.filter { $0.storage != nil }.count)
            return nil
        }
        #expect(tracked.count == 100)
        #expect(mostAlive <= 4, "\(mostAlive) intermediate values alive at once")
        #expect(tracked.filter { $0.storage != nil }.isEmpty, "only the returned output may outlive the run")
    }

    /// The fused plan runs bias Adds, GELU subgraphs, residual Adds and ReLU6 inside the primitives.
    @Test func fusionFoldsEpiloguesIntoPrimitives() throws {
        let miniLM = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path)
        let shapes = ["input_ids": [2, 16], "attention_mask": [2, 16], "token_type_ids": [2, 16]]
        let specialized = try InferenceSession(model: miniLM).specialize(inputShapes: shapes)
        let fused = try OperatorFusion.fuse(specialized, outputs: ["last_hidden_state"])
        func count(_ graph: SpecializedGraph, _ op: String) -> Int { graph.nodes.filter { $0.node.opType == op }.count }
        #expect(count(specialized, "Erf") == 6 && count(fused, "Erf") == 0)
        // Per layer: 6 bias Adds (Q, K, V, output, two feed-forward) and the GELU's "+ 1".
        #expect(count(specialized, "Add") - count(fused, "Add") == 42)
        #expect(count(fused, "MatMul") == 48)

        let mobileNet = try Model(contentsOf: mobileNet)
        let cnn = try InferenceSession(model: mobileNet).specialize(inputShapes: ["input": [1, 3, 224, 224]])
        let fusedCNN = try OperatorFusion.fuse(cnn, outputs: ["logits"])
        #expect(count(fusedCNN, "Clip") == 0 && count(fusedCNN, "Add") == 0 && count(fusedCNN, "Conv") == 52)
    }
}
