import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// One node (or a short chain) whose gradients are checked against central
/// finite differences of the loss L = <y, r>, r ~ N(0, I) (a random linear head).
struct GradientCase: CustomStringConvertible {
    var name: String
    var nodes: [Node]
    /// Graph inputs (run-time values) and initializers, by name.
    var inputs: [String: Tensor]
    var initializers: [String: Tensor] = [:]
    /// Values whose gradients are checked (inputs or initializers).
    var wrt: [String]
    var output = "y"
    var opset = 17
    /// Finite-difference step.
    var step: Float = 1e-2
    /// Allowed max |analytic - numeric| over checked coordinates, relative to max |numeric|.
    var tolerance: Double = 1e-2

    var description: String { name }

    /// A single-node case: inputs named "a", "b", ... (nil: omitted), output "y".
    init(_ name: String, _ opType: String, _ attributes: [String: Attribute] = [:], inputs: [Tensor?],
         constants: Set<Int> = [], wrt: [Int]? = nil, outputs: Int = 1, opset: Int = 17, step: Float = 1e-2) {
        self.name = name
        let names = inputs.indices.map { inputs[$0] == nil ? "" : String(UnicodeScalar(UInt8(97 + $0))) }
        var feeds: [String: Tensor] = [:], constant: [String: Tensor] = [:]
        for (index, tensor) in inputs.enumerated() {
            guard let tensor else { continue }
            if constants.contains(index) || tensor.dtype != .float32 { constant[names[index]] = tensor } else { feeds[names[index]] = tensor }
        }
        let outputNames = outputs == 1 ? ["y"] : (0..<outputs).map { "y\($0)" }
        nodes = [Node(name: "node", opType: opType, inputs: names, outputs: outputNames, attributes: attributes)]
        self.inputs = feeds
        initializers = constant
        self.wrt = (wrt ?? inputs.indices.filter { inputs[$0]?.dtype == .float32 }).map { names[$0] }
        output = outputNames[0]
        self.opset = opset
        self.step = step
    }

    init(_ name: String, nodes: [Node], inputs: [String: Tensor], initializers: [String: Tensor] = [:], wrt: [String],
         output: String = "y", opset: Int = 17) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.initializers = initializers
        self.wrt = wrt
        self.output = output
        self.opset = opset
    }

    func graph(initializers: [String: Tensor]) -> Graph {
        Graph(name: name, nodes: nodes,
              inputs: inputs.keys.sorted().map { ValueInfo(name: $0, dtype: inputs[$0]!.dtype, shape: nil) },
              outputs: [ValueInfo(name: output, dtype: .float32, shape: nil)],
              initializers: initializers, opset: opset)
    }
}

/// Loss <y, r> of the head the analytic gradients used (same seed), for a forward output.
private func linearLoss(_ output: Tensor) throws -> Double {
    try TaskLoss.randomProjection(count: 1, seed: 7).evaluate(output: output, feeds: [:]).headLosses[0].reduce(0, +)
}

/// Checks analytic gradients of `testCase` against central differences on up to 16 coordinates per value.
func checkGradients(_ testCase: GradientCase) throws {
    let graph = testCase.graph(initializers: testCase.initializers)
    let computation = try GradientComputation(graph: graph, options: SessionOptions(threads: 1))
    let result = try computation.run(testCase.inputs, loss: TaskLoss.randomProjection(count: 1, seed: 7), wrt: Set(testCase.wrt))
    var rng = SeededGenerator(seed: 99)
    for name in testCase.wrt {
        let analytic = try #require(result.gradients[name], "\(testCase.name): no gradient for \(name)")
        let value = try #require(testCase.inputs[name] ?? testCase.initializers[name])
        #expect(analytic.shape == value.shape, "\(testCase.name): gradient of \(name) has shape \(analytic.shape)")
        let count = value.count
        let coordinates = count <= 16 ? Array(0..<count) : (0..<16).map { _ in Int.random(in: 0..<count, using: &rng) }
        let a = analytic.floats()
        var worst = 0.0, scale = 0.0
        for coordinate in coordinates {
            var losses: [Double] = []
            for sign: Float in [1, -1] {
                var scalars = value.floats()
                scalars[coordinate] += sign * testCase.step
                let perturbed = Tensor(shape: value.shape, scalars: scalars)
                var feeds = testCase.inputs, initializers = testCase.initializers
                if feeds[name] != nil { feeds[name] = perturbed } else { initializers[name] = perturbed }
                let session = try InferenceSession(graph: testCase.graph(initializers: initializers), options: SessionOptions(threads: 1))
                losses.append(try linearLoss(try #require(try session.run(feeds)[testCase.output])))
            }
            let numeric = (losses[0] - losses[1]) / (2 * Double(testCase.step))
            worst = max(worst, abs(Double(a[coordinate]) - numeric))
            scale = max(scale, abs(numeric))
        }
        let relative = worst / max(scale, 1e-3)
        #expect(relative <= testCase.tolerance, "\(testCase.name): d/d\(name) differs from finite differences by \(relative) (relative)")
    }
}

/// Random values at least `gap` away from zero (smooth for kinked functions) in ±`range`.
private func awayFromZero(_ shape: [Int], gap: Float = 0.1, range: Float = 2, using rng: inout SeededGenerator) -> Tensor {
    Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in
        Float.random(in: gap...range, using: &rng) * (Bool.random(using: &rng) ? 1 : -1)
    })
}

/// Distinct values 0.05 apart in random order (no ties near a maximum).
private func distinct(_ shape: [Int], using rng: inout SeededGenerator) -> Tensor {
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, scalars: (0..<count).map { Float($0) * 0.05 - Float(count) * 0.025 }.shuffled(using: &rng))
}

private func ints(_ shape: [Int], _ values: [Int64]) -> Tensor { Tensor(shape: shape, scalars: values) }

@Suite struct GradientTests {
    @Test func elementwiseMatchesFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 1)
        let x = awayFromZero([2, 3, 4], using: &rng)
        let positive = Tensor.random([2, 3, 4], in: 0.5...3, using: &rng)
        var cases: [GradientCase] = []
        for op in ["Neg", "Abs", "Exp", "Relu", "Sigmoid", "Tanh", "Erf", "HardSwish", "Identity"] {
            cases.append(GradientCase(op, op, inputs: [x], opset: 14))
        }
        for op in ["Sqrt", "Log", "Reciprocal"] { cases.append(GradientCase(op, op, inputs: [positive])) }
        cases.append(GradientCase("LeakyRelu", "LeakyRelu", ["alpha": .float(0.3)], inputs: [x]))
        cases.append(GradientCase("HardSigmoid", "HardSigmoid", ["alpha": .float(0.4), "beta": .float(0.3)], inputs: [x]))
        cases.append(GradientCase("Gelu none", "Gelu", inputs: [x], opset: 20))
        cases.append(GradientCase("Gelu tanh", "Gelu", ["approximate": .string("tanh")], inputs: [x], opset: 20))
        cases.append(GradientCase("Clip inputs", "Clip", inputs: [x, Tensor(scalar: Float(-0.95)), Tensor(scalar: Float(1.05))],
                                  constants: [1, 2], wrt: [0], step: 1e-3))
        cases.append(GradientCase("Clip attributes", "Clip", ["min": .float(-1.05), "max": .float(0.95)], inputs: [x],
                                  opset: 6, step: 1e-3))
        cases.append(GradientCase("Cast", "Cast", ["to": .int(1)], inputs: [x]))
        cases.append(GradientCase("Dropout", "Dropout", inputs: [x], opset: 13))
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func binaryBroadcastingMatchesFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 2)
        let pairs: [([Int], [Int])] = [([2, 3, 4], [3, 1]), ([1, 4], [2, 3, 4]), ([2, 3, 4], [2, 3, 4])]
        var cases: [GradientCase] = []
        for (left, right) in pairs {
            let a = awayFromZero(left, gap: 0.5, using: &rng), b = awayFromZero(right, gap: 0.5, using: &rng)
            for op in ["Add", "Sub", "Mul", "Div"] {
                cases.append(GradientCase("\(op) \(left) \(right)", op, inputs: [a, b]))
            }
            let base = Tensor.random(left, in: 0.5...2, using: &rng)
            cases.append(GradientCase("Pow \(left) \(right)", "Pow", inputs: [base, Tensor.random(right, in: -2...2, using: &rng)]))
        }
        cases.append(GradientCase("PRelu", "PRelu", inputs: [awayFromZero([2, 3, 4], using: &rng), Tensor.random([3, 1], in: 0.1...0.5, using: &rng)]))
        cases.append(GradientCase("Sum", "Sum", inputs: [Tensor.random([2, 3], using: &rng), Tensor.random([3], using: &rng),
                                                          Tensor.random([2, 1], using: &rng)]))
        let spread = distinct([2, 3, 4], using: &rng)
        for op in ["Min", "Max"] {
            // Offset by half the spacing: no ties between the operands either.
            let other = GradientMath.map(distinct([3, 4], using: &rng)) { $0 + 0.025 }
            cases.append(GradientCase(op, op, inputs: [spread, other], step: 1e-3))
        }
        let condition = Tensor(shape: [2, 3, 4], scalars: (0..<24).map { _ in Bool.random(using: &rng) })
        cases.append(GradientCase("Where", "Where", inputs: [condition, Tensor.random([2, 3, 4], using: &rng), Tensor.random([4], using: &rng)]))
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func matrixProductsMatchFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 3)
        var cases: [GradientCase] = []
        let shapes: [([Int], [Int])] = [([3, 4], [4, 5]), ([2, 3, 4], [4, 5]), ([2, 1, 3, 4], [3, 4, 5]), ([4], [4, 5]),
                                         ([2, 3, 4], [4]), ([2, 3, 4], [2, 4, 5])]
        for (left, right) in shapes {
            cases.append(GradientCase("MatMul \(left) \(right)", "MatMul",
                                      inputs: [Tensor.random(left, using: &rng), Tensor.random(right, using: &rng)]))
        }
        for (transA, transB) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let a = Tensor.random(transA == 1 ? [4, 3] : [3, 4], using: &rng)
            let b = Tensor.random(transB == 1 ? [5, 4] : [4, 5], using: &rng)
            let c = Tensor.random(transA == transB ? [5] : [3, 1], using: &rng)
            cases.append(GradientCase("Gemm transA \(transA) transB \(transB)", "Gemm",
                                      ["transA": .int(transA), "transB": .int(transB), "alpha": .float(0.7), "beta": .float(1.3)],
                                      inputs: [a, b, c]))
        }
        cases.append(GradientCase("Gemm weights as initializers", "Gemm", ["transB": .int(1)],
                                  inputs: [Tensor.random([2, 6], using: &rng), Tensor.random([3, 6], using: &rng), Tensor.random([3], using: &rng)],
                                  constants: [1, 2], wrt: [0, 1, 2]))
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func convolutionsMatchFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 4)
        var cases: [GradientCase] = []
        func conv(_ name: String, input: [Int], weights: [Int], bias: Bool = true, _ attributes: [String: Attribute],
                  transposed: Bool = false) {
            let x = Tensor.random(input, in: -1...1, using: &rng)
            let w = Tensor.random(weights, in: -1...1, using: &rng)
            let channels = transposed ? weights[1] * ((attributes["group"].flatMap { if case .int(let g) = $0 { g } else { nil } }) ?? 1) : weights[0]
            let b = bias ? Tensor.random([channels], using: &rng) : nil
            cases.append(GradientCase(name, transposed ? "ConvTranspose" : "Conv", attributes, inputs: [x, w, b],
                                      constants: [1, 2], wrt: bias ? [0, 1, 2] : [0, 1]))
        }
        conv("Conv 3x3 pad 1", input: [2, 3, 6, 6], weights: [4, 3, 3, 3], ["pads": .ints([1, 1, 1, 1])])
        conv("Conv stride 2 dilation 2 asymmetric pads", input: [1, 2, 9, 8], weights: [3, 2, 3, 2], bias: false,
             ["strides": .ints([2, 2]), "dilations": .ints([2, 1]), "pads": .ints([1, 0, 2, 1])])
        conv("Conv groups 2", input: [1, 4, 5, 5], weights: [6, 2, 3, 3], ["group": .int(2), "pads": .ints([1, 1, 1, 1])])
        conv("Conv depthwise stride 2", input: [2, 4, 7, 7], weights: [4, 1, 3, 3],
             ["group": .int(4), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
        conv("Conv 1-D", input: [2, 3, 10], weights: [2, 3, 3], ["strides": .ints([2])])
        conv("Conv 1x1", input: [1, 8, 4, 4], weights: [5, 8, 1, 1], [:])
        conv("ConvTranspose stride 2", input: [1, 3, 4, 4], weights: [3, 2, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
             transposed: true)
        conv("ConvTranspose groups 2", input: [1, 4, 3, 3], weights: [4, 3, 2, 2], ["group": .int(2)], transposed: true)
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func poolingAndReductionsMatchFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 5)
        let x = Tensor.random([2, 3, 6, 5], using: &rng)
        let spread = distinct([2, 3, 6, 5], using: &rng)
        let cases: [GradientCase] = [
            GradientCase("GlobalAveragePool", "GlobalAveragePool", inputs: [x]),
            GradientCase("GlobalMaxPool", "GlobalMaxPool", inputs: [spread], step: 1e-3),
            GradientCase("AveragePool pads", "AveragePool", ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
                         inputs: [x]),
            GradientCase("AveragePool count_include_pad ceil", "AveragePool",
                         ["kernel_shape": .ints([2, 3]), "strides": .ints([2, 2]), "pads": .ints([0, 1, 1, 0]),
                          "count_include_pad": .int(1), "ceil_mode": .int(1)], inputs: [x]),
            GradientCase("MaxPool", "MaxPool", ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 1]), "pads": .ints([1, 1, 1, 1])],
                         inputs: [spread], step: 1e-3),
            GradientCase("MaxPool dilations ceil", "MaxPool",
                         ["kernel_shape": .ints([2, 2]), "dilations": .ints([2, 1]), "strides": .ints([2, 2]), "ceil_mode": .int(1)],
                         inputs: [spread], step: 1e-3),
            GradientCase("ReduceSum axes input", "ReduceSum", inputs: [x, ints([2], [1, -1])], opset: 13),
            GradientCase("ReduceSum all", "ReduceSum", inputs: [x], opset: 13),
            GradientCase("ReduceMean axes attribute", "ReduceMean", ["axes": .ints([2]), "keepdims": .int(0)], inputs: [x], opset: 13),
            GradientCase("ReduceMean axes input", "ReduceMean", inputs: [x, ints([1], [0])], opset: 18),
            GradientCase("ReduceMax", "ReduceMax", ["axes": .ints([1, 3])], inputs: [spread], opset: 13, step: 1e-3),
        ]
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func normalizationsMatchFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 6)
        let x = Tensor.random([2, 3, 4, 5], using: &rng)
        let cases: [GradientCase] = [
            GradientCase("Softmax axis 1", "Softmax", ["axis": .int(1)], inputs: [x], opset: 13),
            GradientCase("Softmax last", "Softmax", inputs: [x], opset: 13),
            GradientCase("Softmax opset 11 flattens", "Softmax", ["axis": .int(2)], inputs: [x], opset: 11),
            GradientCase("LogSoftmax axis 2", "LogSoftmax", ["axis": .int(2)], inputs: [x], opset: 13),
            GradientCase("LayerNormalization last", "LayerNormalization",
                         inputs: [x, Tensor.random([5], using: &rng), Tensor.random([5], using: &rng)], constants: [1, 2], wrt: [0, 1, 2]),
            GradientCase("LayerNormalization axis 2", "LayerNormalization", ["axis": .int(2), "epsilon": .float(1e-3)],
                         inputs: [x, Tensor.random([4, 5], using: &rng), Tensor.random([5], using: &rng)], constants: [1, 2], wrt: [0, 1, 2]),
            GradientCase("BatchNormalization", "BatchNormalization",
                         inputs: [x, Tensor.random([3], using: &rng), Tensor.random([3], using: &rng), Tensor.random([3], using: &rng),
                                  Tensor.random([3], in: 0.5...2, using: &rng)], constants: [1, 2, 3, 4], wrt: [0, 1, 2, 3, 4]),
            GradientCase("InstanceNormalization", "InstanceNormalization",
                         inputs: [x, Tensor.random([3], using: &rng), Tensor.random([3], using: &rng)], constants: [1, 2], wrt: [0, 1, 2]),
        ]
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func shapeOperatorsMatchFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 7)
        let x = Tensor.random([2, 3, 4], using: &rng)
        var cases: [GradientCase] = [
            GradientCase("Reshape", "Reshape", inputs: [x, ints([2], [4, 6])]),
            GradientCase("Flatten", "Flatten", ["axis": .int(2)], inputs: [x]),
            GradientCase("Squeeze", "Squeeze", inputs: [Tensor.random([2, 1, 3], using: &rng), ints([1], [1])]),
            GradientCase("Unsqueeze", "Unsqueeze", inputs: [x, ints([2], [0, 3])]),
            GradientCase("Transpose", "Transpose", ["perm": .ints([2, 0, 1])], inputs: [x]),
            GradientCase("Expand", "Expand", inputs: [Tensor.random([3, 1], using: &rng), ints([3], [2, 3, 4])]),
            GradientCase("Tile", "Tile", inputs: [x, ints([3], [2, 1, 3])]),
            GradientCase("Slice steps", "Slice", inputs: [x, ints([2], [3, 0]), ints([2], [0, 2]), ints([2], [2, 0]), ints([2], [-2, 1])]),
            GradientCase("Slice clamped", "Slice", inputs: [x, ints([1], [1]), ints([1], [100]), ints([1], [1])]),
            GradientCase("Concat", "Concat", ["axis": .int(1)],
                         inputs: [x, Tensor.random([2, 1, 4], using: &rng), Tensor.random([2, 2, 4], using: &rng)]),
            GradientCase("Gather axis 1", "Gather", ["axis": .int(1)], inputs: [x, ints([2, 2], [2, -3, 0, 2])]),
            GradientCase("Gather rows", "Gather", inputs: [Tensor.random([5, 3], using: &rng), ints([3], [4, 4, 1])]),
        ]
        for mode in ["constant", "reflect", "edge"] {
            cases.append(GradientCase("Pad \(mode)", "Pad", ["mode": .string(mode)],
                                      inputs: [x, ints([6], [0, 2, 1, 0, 1, -1]), Tensor(scalar: Float(0.5))], constants: [2], wrt: [0]))
        }
        cases.append(GradientCase("Resize nearest", "Resize", ["mode": .string("nearest")],
                                  inputs: [Tensor.random([1, 2, 3, 3], using: &rng), nil, Tensor(shape: [4], scalars: [1, 1, 2, 1.5] as [Float])],
                                  constants: [2], wrt: [0], opset: 13))
        // Split is checked through a Concat of its outputs in another order.
        let split = Node(name: "split", opType: "Split", inputs: ["a", "sizes"], outputs: ["p", "q", "r"], attributes: ["axis": .int(2)])
        let join = Node(name: "join", opType: "Concat", inputs: ["r", "p", "q"], outputs: ["y"], attributes: ["axis": .int(2)])
        cases.append(GradientCase("Split", nodes: [split, join], inputs: ["a": x], initializers: ["sizes": ints([3], [1, 2, 1])], wrt: ["a"]))
        for testCase in cases { try checkGradients(testCase) }
    }

    @Test func unusedOutputsAndSharedValuesAccumulate() throws {
        var rng = SeededGenerator(seed: 8)
        // y = a * a + Relu(a) @ W: two paths into `a`, one into the weight.
        let nodes = [
            Node(name: "square", opType: "Mul", inputs: ["a", "a"], outputs: ["s"]),
            Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["r"]),
            Node(name: "mm", opType: "MatMul", inputs: ["r", "w"], outputs: ["m"]),
            Node(name: "add", opType: "Add", inputs: ["s", "m"], outputs: ["y"]),
        ]
        try checkGradients(GradientCase("shared value", nodes: nodes, inputs: ["a": awayFromZero([3, 4], using: &rng)],
                                        initializers: ["w": Tensor.random([4, 4], using: &rng)], wrt: ["a", "w"]))
    }
}
