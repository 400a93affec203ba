import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// One LSTM / GRU node: inputs X, W, R, B, sequence_lens, initial_h,
/// initial_c, P (nil: omitted), and which of Y, Y_h, Y_c the node names.
private struct RecurrentCase {
    var name: String
    var opType: String
    var attributes: [String: Attribute] = [:]
    var inputs: [Tensor?]
    var outputs: [Bool]
    var opset = 14

    var batchFirst: Bool { if case .int(1)? = attributes["layout"] { return true } else { return false } }

    /// Input names: W, R, B and P are initializers, the others graph inputs.
    private var inputNames: [String] { inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" } }
    private static let constantInputs: Set<Int> = [1, 2, 3, 7]

    var feeds: [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        for (index, tensor) in inputs.enumerated() where !Self.constantInputs.contains(index) {
            if let tensor { feeds["in\(index)"] = tensor }
        }
        return feeds
    }

    var requestedOutputs: [String] { outputs.indices.filter { outputs[$0] }.map { "out\($0)" } }

    /// The node itself (what mpq runs), or for ONNX Runtime, which lacks
    /// layout 1, the same node in layout 0 between Transposes.
    func graph(forReference: Bool) -> Graph {
        var initializers: [String: Tensor] = [:]
        var graphInputs: [ValueInfo] = []
        for (index, tensor) in inputs.enumerated() {
            guard let tensor else { continue }
            if Self.constantInputs.contains(index) {
                initializers["in\(index)"] = tensor
            } else {
                graphInputs.append(ValueInfo(name: "in\(index)", dtype: tensor.dtype, shape: tensor.shape.map { .fixed($0) }))
            }
        }
        let outputNames = outputs.indices.map { outputs[$0] ? "out\($0)" : "" }
        var nodes: [Node] = []
        var nodeInputs = inputNames, nodeOutputs = outputNames, attributes = self.attributes
        if forReference && batchFirst {
            attributes["layout"] = .int(0)
            for index in [0, 5, 6] where index < inputs.count && inputs[index] != nil {
                nodes.append(Node(name: "to_time_major\(index)", opType: "Transpose", inputs: [nodeInputs[index]],
                                  outputs: ["t\(index)"], attributes: ["perm": .ints([1, 0, 2])]))
                nodeInputs[index] = "t\(index)"
            }
            for index in outputs.indices where outputs[index] {
                nodeOutputs[index] = "time_major\(index)"
                nodes.append(Node(name: "to_batch_major\(index)", opType: "Transpose", inputs: [nodeOutputs[index]],
                                  outputs: [outputNames[index]], attributes: ["perm": .ints(index == 0 ? [2, 0, 1, 3] : [1, 0, 2])]))
            }
        }
        nodes.insert(Node(name: "rnn", opType: opType, inputs: nodeInputs, outputs: nodeOutputs, attributes: attributes),
                     at: forReference && batchFirst ? nodes.count - outputs.filter { $0 }.count : 0)
        return Graph(name: name, nodes: nodes, inputs: graphInputs,
                     outputs: requestedOutputs.map { ValueInfo(name: $0, dtype: .float32, shape: nil) },
                     initializers: initializers, opset: opset)
    }
}

/// Runs every case in mpq and in ONNX Runtime; records an issue per mismatch
/// and returns the largest error relative to max(1, max |ORT|).
private func expectRecurrentMatchesOnnxRuntime(_ cases: [RecurrentCase], tolerance: Double = 1e-5,
                                               sourceLocation: SourceLocation = #_sourceLocation) throws -> Double {
    var ours: [String: [Tensor]] = [:]
    for c in cases {
        do {
            let session = try InferenceSession(graph: c.graph(forReference: false), options: SessionOptions(threads: 2))
            let results = try session.run(c.feeds)
            ours[c.name] = c.requestedOutputs.map { results[$0]! }
        } catch {
            Issue.record("\(c.name): mpq failed: \(error)", sourceLocation: sourceLocation)
        }
    }
    var worst = 0.0
    for (c, reference) in zip(cases, try onnxRuntimeOutputs(cases.map { ($0.graph(forReference: true), $0.feeds) })) {
        switch reference {
        case .failure(let error):
            Issue.record("\(c.name): ONNX Runtime failed: \(error)", sourceLocation: sourceLocation)
        case .success(let expected):
            guard let mine = ours[c.name] else { continue }
            if mine.count != expected.count {
                Issue.record("\(c.name): mpq gave \(mine.count) outputs, ONNX Runtime \(expected.count)", sourceLocation: sourceLocation)
            }
            for (i, (actual, expected)) in zip(mine, expected).enumerated() {
                if let problem = compare(actual, expected, tolerance: tolerance) {
                    Issue.record("\(c.name) output \(c.requestedOutputs[i]): \(problem)", sourceLocation: sourceLocation)
                } else {
                    let e = expected.doubles(), scale = max(1, e.map(abs).max() ?? 1)
                    worst = max(worst, zip(actual.doubles(), e).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0)
                }
            }
        }
    }
    return worst
}

/// Inputs for an LSTM / GRU of `gates` blocks: X, W, R, B?, sequence_lens?, initial_h?, initial_c?, P?.
private struct RecurrentInputs {
    var rng: SeededGenerator
    let gates: Int

    mutating func make(sequence t: Int, batch n: Int, input i: Int, hidden h: Int, directions d: Int,
                       bias: Bool = true, lengths: [Int32]? = nil, initialHidden: Bool = false,
                       initialCell: Bool = false, peepholes: Bool = false, batchFirst: Bool = false) -> [Tensor?] {
        var inputs: [Tensor?] = [
            .random(batchFirst ? [n, t, i] : [t, n, i], in: -1...1, using: &rng),
            .random([d, gates * h, i], in: -0.6...0.6, using: &rng),
            .random([d, gates * h, h], in: -0.6...0.6, using: &rng),
            bias ? .random([d, 2 * gates * h], in: -0.5...0.5, using: &rng) : nil,
            lengths.map { Tensor(shape: [n], scalars: $0) },
            initialHidden ? .random(batchFirst ? [n, d, h] : [d, n, h], in: -1...1, using: &rng) : nil,
            initialCell ? .random(batchFirst ? [n, d, h] : [d, n, h], in: -1...1, using: &rng) : nil,
            peepholes ? .random([d, 3 * h], in: -0.5...0.5, using: &rng) : nil,
        ]
        while inputs.last != nil && inputs.last! == nil { inputs.removeLast() }
        return inputs
    }
}

/// `extra` with hidden_size and direction (a forward node with other attributes leaves direction to its default).
private func directionAttributes(_ direction: String, hidden: Int, _ extra: [String: Attribute] = [:]) -> [String: Attribute] {
    var attributes = extra
    attributes["hidden_size"] = .int(hidden)
    if direction != "forward" || extra.isEmpty { attributes["direction"] = .string(direction) }
    return attributes
}

/// A gradient check of one LSTM / GRU node whose loss reads output `loss`
/// (0: Y, 1: Y_h, 2: Y_c); inputs named a...h, float ones differentiated
/// (graph inputs, or initializers where listed in `constants`).
private func recurrentGradientCase(_ name: String, _ opType: String, _ attributes: [String: Attribute], _ inputs: [Tensor?],
                                   loss output: Int = 0, constants: Set<Int> = []) -> GradientCase {
    let names = inputs.indices.map { inputs[$0] == nil ? "" : String(UnicodeScalar(UInt8(97 + $0))) }
    var feeds: [String: Tensor] = [:], initializers: [String: Tensor] = [:]
    for (index, tensor) in inputs.enumerated() {
        guard let tensor else { continue }
        if tensor.dtype == .float32 && !constants.contains(index) { feeds[names[index]] = tensor } else { initializers[names[index]] = tensor }
    }
    let node = Node(name: "rnn", opType: opType, inputs: names, outputs: (0...output).map { $0 == output ? "y" : "" },
                    attributes: attributes)
    return GradientCase(name, nodes: [node], inputs: feeds, initializers: initializers,
                        wrt: inputs.indices.filter { inputs[$0]?.dtype == .float32 }.map { names[$0] }, opset: 14)
}

@Suite struct RecurrentOperatorTests {
    @Test func lstmMatchesOnnxRuntime() throws {
        var source = RecurrentInputs(rng: SeededGenerator(seed: 41), gates: 4)
        var cases: [RecurrentCase] = []
        func lstm(_ name: String, _ attributes: [String: Attribute], _ inputs: [Tensor?], outputs: [Bool] = [true, true, true], opset: Int = 14) {
            cases.append(RecurrentCase(name: "LSTM \(name)", opType: "LSTM", attributes: attributes, inputs: inputs,
                                       outputs: outputs, opset: opset))
        }
        for (direction, d) in [("forward", 1), ("reverse", 1), ("bidirectional", 2)] {
            lstm("\(direction) with B", directionAttributes(direction, hidden: 4),
                 source.make(sequence: 5, batch: 3, input: 6, hidden: 4, directions: d))
            lstm("\(direction) no B", directionAttributes(direction, hidden: 3),
                 source.make(sequence: 4, batch: 2, input: 5, hidden: 3, directions: d, bias: false), opset: 7)
            lstm("\(direction) initial states", directionAttributes(direction, hidden: 4),
                 source.make(sequence: 5, batch: 3, input: 2, hidden: 4, directions: d, initialHidden: true, initialCell: true),
                 opset: 22)
            lstm("\(direction) sequence_lens", directionAttributes(direction, hidden: 4),
                 source.make(sequence: 6, batch: 4, input: 3, hidden: 4, directions: d, lengths: [6, 3, 1, 0],
                             initialHidden: true, initialCell: true))
            lstm("\(direction) sequence_lens only Y_h", directionAttributes(direction, hidden: 3),
                 source.make(sequence: 6, batch: 3, input: 3, hidden: 3, directions: d, lengths: [2, 6, 4], initialHidden: true),
                 outputs: [false, true])
            lstm("\(direction) peepholes", directionAttributes(direction, hidden: 4),
                 source.make(sequence: 5, batch: 3, input: 4, hidden: 4, directions: d, lengths: [5, 2, 4],
                             initialHidden: true, initialCell: true, peepholes: true))
            lstm("\(direction) input_forget", directionAttributes(direction, hidden: 3, ["input_forget": .int(1)]),
                 source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: d, initialCell: true, peepholes: true))
            lstm("\(direction) clip", directionAttributes(direction, hidden: 4, ["clip": .float(0.4)]),
                 source.make(sequence: 5, batch: 2, input: 4, hidden: 4, directions: d))
            lstm("\(direction) layout 1", directionAttributes(direction, hidden: 3, ["layout": .int(1)]),
                 source.make(sequence: 5, batch: 3, input: 4, hidden: 3, directions: d, lengths: [5, 1, 3],
                             initialHidden: true, initialCell: true, batchFirst: true))
        }
        lstm("only Y_c", directionAttributes("forward", hidden: 3),
             source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1, initialCell: true), outputs: [false, false, true])
        lstm("HardSigmoid LeakyRelu ScaledTanh", directionAttributes("forward", hidden: 4, [
            "activations": .strings(["HardSigmoid", "LeakyRelu", "ScaledTanh"]),
            "activation_alpha": .floats([0.3, 0.05, 1.5]), "activation_beta": .floats([0.4, 0.7]),
        ]), source.make(sequence: 5, batch: 2, input: 3, hidden: 4, directions: 1))
        lstm("bidirectional Softplus Affine ThresholdedRelu / Relu Elu Softsign", directionAttributes("bidirectional", hidden: 3, [
            "activations": .strings(["Softplus", "Affine", "ThresholdedRelu", "relu", "elu", "Softsign"]),
            "activation_alpha": .floats([0.8, 0.1, 0.9]), "activation_beta": .floats([0.2]),
        ]), source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 2, initialHidden: true))
        lstm("default alphas (HardSigmoid, LeakyRelu, Elu)", directionAttributes("reverse", hidden: 3, [
            "activations": .strings(["HardSigmoid", "LeakyRelu", "Elu"]),
        ]), source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1))
        let worst = try expectRecurrentMatchesOnnxRuntime(cases)
        print("LSTM: \(cases.count) cases match ONNX Runtime, max relative error \(worst)")
    }

    @Test func gruMatchesOnnxRuntime() throws {
        var source = RecurrentInputs(rng: SeededGenerator(seed: 42), gates: 3)
        var cases: [RecurrentCase] = []
        func gru(_ name: String, _ attributes: [String: Attribute], _ inputs: [Tensor?], outputs: [Bool] = [true, true], opset: Int = 14) {
            cases.append(RecurrentCase(name: "GRU \(name)", opType: "GRU", attributes: attributes, inputs: inputs,
                                       outputs: outputs, opset: opset))
        }
        for (direction, d) in [("forward", 1), ("reverse", 1), ("bidirectional", 2)] {
            for linear in [0, 1] {
                let lbr: [String: Attribute] = ["linear_before_reset": .int(linear)]
                let tag = "\(direction) linear_before_reset \(linear)"
                gru("\(tag) with B", directionAttributes(direction, hidden: 4, lbr),
                    source.make(sequence: 5, batch: 3, input: 6, hidden: 4, directions: d))
                gru("\(tag) no B", directionAttributes(direction, hidden: 3, lbr),
                    source.make(sequence: 4, batch: 2, input: 5, hidden: 3, directions: d, bias: false), opset: 7)
                gru("\(tag) initial_h", directionAttributes(direction, hidden: 4, lbr),
                    source.make(sequence: 5, batch: 3, input: 2, hidden: 4, directions: d, initialHidden: true), opset: 22)
                gru("\(tag) sequence_lens", directionAttributes(direction, hidden: 4, lbr),
                    source.make(sequence: 6, batch: 4, input: 3, hidden: 4, directions: d, lengths: [6, 3, 1, 0], initialHidden: true))
                gru("\(tag) sequence_lens only Y_h", directionAttributes(direction, hidden: 3, lbr),
                    source.make(sequence: 6, batch: 3, input: 3, hidden: 3, directions: d, lengths: [2, 6, 4], initialHidden: true),
                    outputs: [false, true])
                gru("\(tag) clip", directionAttributes(direction, hidden: 4, lbr.merging(["clip": .float(0.3)]) { a, _ in a }),
                    source.make(sequence: 5, batch: 2, input: 4, hidden: 4, directions: d))
                gru("\(tag) layout 1", directionAttributes(direction, hidden: 3, lbr.merging(["layout": .int(1)]) { a, _ in a }),
                    source.make(sequence: 5, batch: 3, input: 4, hidden: 3, directions: d, lengths: [5, 1, 3],
                                initialHidden: true, batchFirst: true))
            }
        }
        gru("HardSigmoid Softsign", directionAttributes("forward", hidden: 4, [
            "activations": .strings(["HardSigmoid", "Softsign"]), "activation_alpha": .floats([0.25]), "activation_beta": .floats([0.45]),
        ]), source.make(sequence: 5, batch: 2, input: 3, hidden: 4, directions: 1, initialHidden: true))
        gru("bidirectional Relu Tanh / Sigmoid ScaledTanh", directionAttributes("bidirectional", hidden: 3, [
            "activations": .strings(["Relu", "Tanh", "Sigmoid", "ScaledTanh"]), "activation_alpha": .floats([1.2]),
            "activation_beta": .floats([0.8]), "linear_before_reset": .int(1),
        ]), source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 2, lengths: [4, 2]))
        gru("Elu Affine", directionAttributes("reverse", hidden: 3, [
            "activations": .strings(["Elu", "Affine"]), "activation_alpha": .floats([0.5, 0.7]), "activation_beta": .floats([0.1]),
        ]), source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1))
        let worst = try expectRecurrentMatchesOnnxRuntime(cases)
        print("GRU: \(cases.count) cases match ONNX Runtime, max relative error \(worst)")
    }

    /// Backpropagation through time against central differences, for X, W, R, B, initial states and peepholes.
    @Test func lstmGradientsMatchFiniteDifferences() throws {
        var source = RecurrentInputs(rng: SeededGenerator(seed: 43), gates: 4)
        let cases = [
            recurrentGradientCase("LSTM forward, B, states, peepholes: Y", "LSTM", ["hidden_size": .int(3)],
                                  source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1,
                                              initialHidden: true, initialCell: true, peepholes: true)),
            recurrentGradientCase("LSTM bidirectional sequence_lens: Y", "LSTM", ["direction": .string("bidirectional")],
                                  source.make(sequence: 4, batch: 3, input: 2, hidden: 3, directions: 2, lengths: [4, 2, 0],
                                              initialHidden: true, initialCell: true), constants: [1, 2, 3]),
            recurrentGradientCase("LSTM reverse sequence_lens peepholes: Y_h", "LSTM", ["direction": .string("reverse")],
                                  source.make(sequence: 4, batch: 2, input: 3, hidden: 2, directions: 1, lengths: [3, 4],
                                              initialHidden: true, initialCell: true, peepholes: true), loss: 1),
            recurrentGradientCase("LSTM bidirectional input_forget: Y_c", "LSTM",
                                  ["direction": .string("bidirectional"), "input_forget": .int(1)],
                                  source.make(sequence: 3, batch: 2, input: 3, hidden: 3, directions: 2,
                                              initialHidden: true, initialCell: true, peepholes: true), loss: 2),
            recurrentGradientCase("LSTM layout 1 bidirectional sequence_lens: Y", "LSTM",
                                  ["direction": .string("bidirectional"), "layout": .int(1)],
                                  source.make(sequence: 4, batch: 2, input: 3, hidden: 2, directions: 2, lengths: [2, 4],
                                              initialHidden: true, initialCell: true, batchFirst: true)),
            recurrentGradientCase("LSTM Softsign ScaledTanh Softplus, clip: Y", "LSTM", [
                "activations": .strings(["Softsign", "ScaledTanh", "Softplus"]), "activation_alpha": .floats([1.3]),
                "activation_beta": .floats([0.7]), "clip": .float(5),
            ], source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1, initialHidden: true)),
        ]
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func gruGradientsMatchFiniteDifferences() throws {
        var source = RecurrentInputs(rng: SeededGenerator(seed: 44), gates: 3)
        var cases: [GradientCase] = []
        for linear in [0, 1] {
            let lbr: [String: Attribute] = ["linear_before_reset": .int(linear)]
            cases.append(recurrentGradientCase("GRU forward linear_before_reset \(linear): Y", "GRU", lbr,
                                               source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1, initialHidden: true)))
            cases.append(recurrentGradientCase("GRU bidirectional sequence_lens linear_before_reset \(linear): Y", "GRU",
                                               lbr.merging(["direction": .string("bidirectional")]) { a, _ in a },
                                               source.make(sequence: 4, batch: 3, input: 2, hidden: 3, directions: 2,
                                                           lengths: [4, 1, 0], initialHidden: true), constants: [1, 2, 3]))
            cases.append(recurrentGradientCase("GRU reverse sequence_lens linear_before_reset \(linear): Y_h", "GRU",
                                               lbr.merging(["direction": .string("reverse")]) { a, _ in a },
                                               source.make(sequence: 4, batch: 2, input: 3, hidden: 2, directions: 1,
                                                           lengths: [2, 4], initialHidden: true), loss: 1))
            cases.append(recurrentGradientCase("GRU layout 1 linear_before_reset \(linear): Y_h", "GRU",
                                               lbr.merging(["layout": .int(1), "direction": .string("bidirectional")]) { a, _ in a },
                                               source.make(sequence: 3, batch: 2, input: 3, hidden: 2, directions: 2,
                                                           initialHidden: true, batchFirst: true), loss: 1))
        }
        cases.append(recurrentGradientCase("GRU Softsign Affine, clip: Y", "GRU", [
            "activations": .strings(["Softsign", "Affine"]), "activation_alpha": .floats([0.9]),
            "activation_beta": .floats([0.1]), "clip": .float(4),
        ], source.make(sequence: 4, batch: 2, input: 3, hidden: 3, directions: 1, initialHidden: true)))
        for testCase in cases { try checkGradients(testCase) }
    }

    /// A CNN feeding an LSTM (as in OCR models): gradients reach the convolution's weights and the image.
    @Test func gradientsFlowThroughLSTMIntoConvolution() throws {
        var rng = SeededGenerator(seed: 45)
        // image [N 2, C 1, 1, W 6] -> Conv 1x3 -> [2, 4, 1, 4] -> Reshape [2, 4, 4] -> Transpose [T 4, N 2, C 4] -> LSTM.
        let nodes = [
            Node(name: "conv", opType: "Conv", inputs: ["image", "kernel"], outputs: ["features"]),
            Node(name: "reshape", opType: "Reshape", inputs: ["features", "shape"], outputs: ["flat"]),
            Node(name: "transpose", opType: "Transpose", inputs: ["flat"], outputs: ["sequence"], attributes: ["perm": .ints([2, 0, 1])]),
            Node(name: "lstm", opType: "LSTM", inputs: ["sequence", "w", "r", "b"], outputs: ["y"],
                 attributes: ["hidden_size": .int(3), "direction": .string("bidirectional")]),
        ]
        let testCase = GradientCase("Conv -> LSTM", nodes: nodes, inputs: ["image": .random([2, 1, 1, 6], in: -1...1, using: &rng)],
                                    initializers: ["kernel": .random([4, 1, 1, 3], in: -0.6...0.6, using: &rng),
                                                   "shape": Tensor(shape: [3], scalars: [Int64(2), 4, 4]),
                                                   "w": .random([2, 12, 4], in: -0.6...0.6, using: &rng),
                                                   "r": .random([2, 12, 3], in: -0.6...0.6, using: &rng),
                                                   "b": .random([2, 24], in: -0.5...0.5, using: &rng)],
                                    wrt: ["image", "kernel", "w", "r"])
        try checkGradients(testCase)
    }

    /// Malformed nodes and inputs end in one clear error, before any work, never a trap.
    @Test(arguments: [
        ("W rows for another hidden_size", "LSTM", ["hidden_size": Attribute.int(4)], [3, 2, 5], [1, 12, 5], [1, 16, 4], "W has shape [1, 12, 5]"),
        ("hidden_size differs from R", "GRU", ["hidden_size": .int(5)], [3, 2, 5], [1, 12, 5], [1, 12, 4], "R has shape [1, 12, 4]"),
        ("W input size differs from X", "GRU", ["hidden_size": .int(4)], [3, 2, 5], [1, 12, 6], [1, 12, 4], "input size from X"),
        ("bidirectional with one direction of weights", "LSTM", ["direction": .string("bidirectional")], [3, 2, 5], [1, 16, 5], [1, 16, 4], "expected [2, 4 x 4, 4]"),
        ("X of rank 2", "LSTM", [:], [3, 5], [1, 16, 5], [1, 16, 4], "X must have rank 3"),
        ("unknown activation", "LSTM", ["activations": .strings(["Sigmoid", "Swish", "Tanh"])], [3, 2, 5], [1, 16, 5], [1, 16, 4], "activation 'Swish' is not one of"),
        ("three activations for bidirectional", "LSTM", ["direction": .string("bidirectional"), "activations": .strings(["Sigmoid", "Tanh", "Tanh"])],
         [3, 2, 5], [2, 16, 5], [2, 16, 4], "takes 6 (3 per direction)"),
        ("unknown direction", "GRU", ["direction": .string("sideways")], [3, 2, 5], [1, 12, 5], [1, 12, 4], "direction 'sideways'"),
        ("negative clip", "GRU", ["clip": .float(-1)], [3, 2, 5], [1, 12, 5], [1, 12, 4], "clip -1.0 must be a positive number"),
        ("hidden_size 0", "GRU", ["hidden_size": .int(0)], [3, 2, 5], [1, 12, 5], [1, 12, 4], "hidden_size 0 is out of range"),
        ("huge hidden_size", "LSTM", ["hidden_size": .int(1 << 40)], [3, 2, 5], [1, 16, 5], [1, 16, 4], "hidden_size 1099511627776 is out of range"),
        ("opset 6", "GRU", [:], [3, 2, 5], [1, 12, 5], [1, 12, 4], "before opset 7"),
    ] as [(String, String, [String: Attribute], [Int], [Int], [Int], String)])
    func malformedNodeIsRejected(_ name: String, _ opType: String, _ attributes: [String: Attribute],
                                 _ x: [Int], _ w: [Int], _ r: [Int], _ message: String) throws {
        var rng = SeededGenerator(seed: 5)
        let graph = Graph(name: name, nodes: [Node(name: "rnn", opType: opType, inputs: ["x", "w", "r"], outputs: ["y"], attributes: attributes)],
                          inputs: [ValueInfo(name: "x", dtype: .float32, shape: x.map { .fixed($0) })],
                          outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
                          initializers: ["w": .random(w, using: &rng), "r": .random(r, using: &rng)], opset: name == "opset 6" ? 6 : 14)
        let error = #expect(throws: MPQError.self) {
            let session = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
            _ = try session.run(["x": .random(x, using: &rng)])
        }
        #expect(error.map { "\($0)" }?.contains(message) == true, "\(name): \(error.map { "\($0)" } ?? "no error")")
    }

    /// Bad run-time inputs: sequence_lens values and state shapes.
    @Test func badRunTimeInputsAreRejected() throws {
        var rng = SeededGenerator(seed: 6)
        let graph = Graph(name: "lstm", nodes: [Node(name: "rnn", opType: "LSTM", inputs: ["x", "w", "r", "b", "lens", "h0"],
                                                     outputs: ["y", "yh"], attributes: ["hidden_size": .int(4)])],
                          inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil), ValueInfo(name: "lens", dtype: .int32, shape: nil),
                                   ValueInfo(name: "h0", dtype: .float32, shape: nil)],
                          outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil), ValueInfo(name: "yh", dtype: .float32, shape: nil)],
                          initializers: ["w": .random([1, 16, 5], using: &rng), "r": .random([1, 16, 4], using: &rng),
                                         "b": .random([1, 32], using: &rng)], opset: 14)
        let session = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
        let x = Tensor.random([3, 2, 5], using: &rng), h0 = Tensor.random([1, 2, 4], using: &rng)
        for (lens, state, message) in [
            ([3, 4] as [Int32], h0, "sequence_lens[1] = 4 is outside 0...3"),
            ([-1, 2], h0, "sequence_lens[0] = -1 is outside 0...3"),
            ([3, 2, 1], h0, "sequence_lens has shape [3], expected [2]"),
            ([3, 2], Tensor.random([1, 3, 4], using: &rng), "initial_h has shape [1, 3, 4], expected [1, 2, 4]"),
        ] {
            let error = #expect(throws: MPQError.self) {
                _ = try session.run(["x": x, "lens": Tensor(shape: [lens.count], scalars: lens), "h0": state])
            }
            #expect(error.map { "\($0)" }?.contains(message) == true, "\(error.map { "\($0)" } ?? "no error") lacks \(message)")
        }
        let bias = #expect(throws: MPQError.self) {
            var bad = graph
            bad.initializers["b"] = .random([1, 16], using: &rng)
            _ = try InferenceSession(graph: bad, options: SessionOptions(threads: 1)).run(["x": x, "lens": Tensor(shape: [2], scalars: [Int32(3), 2]), "h0": h0])
        }
        #expect(bias.map { "\($0)" }?.contains("B has shape [1, 16], expected [1, 32]") == true)
    }
}
