import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct MatrixOperatorTests {
    @Test func matchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 13)
        var cases: [OperatorCase] = []
        func matmul(_ name: String, _ a: [Int], _ b: [Int], constantB: Bool = false) {
            cases.append(OperatorCase(name: name, opType: "MatMul", inputs: [.random(a, using: &rng), .random(b, using: &rng)],
                                      constantInputs: constantB ? [1] : [], tolerance: 1e-5))
        }
        matmul("2d", [5, 7], [7, 3])
        matmul("3d x 2d constant", [2, 6, 16], [16, 9], constantB: true)
        matmul("batched 4d", [2, 3, 5, 4], [2, 3, 4, 6])
        matmul("broadcast batch", [2, 1, 5, 4], [3, 4, 6])
        matmul("vector x matrix", [4], [2, 4, 3])
        matmul("matrix x vector", [2, 5, 4], [4])
        matmul("vector x vector", [6], [6])

        func gemm(_ name: String, a: [Int], b: [Int], c: [Int]?, _ attributes: [String: Attribute] = [:], opset: Int = 17) {
            var inputs: [Tensor?] = [.random(a, using: &rng), .random(b, using: &rng)]
            if let c { inputs.append(.random(c, using: &rng)) }
            cases.append(OperatorCase(name: name, opType: "Gemm", attributes: attributes, inputs: inputs,
                                      constantInputs: [1, 2], opset: opset))
        }
        gemm("gemm transB bias row", a: [4, 6], b: [5, 6], c: [5], ["transB": .int(1)])
        gemm("gemm transA", a: [6, 4], b: [6, 5], c: [4, 5], ["transA": .int(1)], opset: 11)
        gemm("gemm alpha beta", a: [3, 4], b: [4, 2], c: [3, 1], ["alpha": .float(0.5), "beta": .float(2)])
        gemm("gemm no C", a: [3, 4], b: [4, 2], c: nil, opset: 13)
        gemm("gemm scalar C", a: [3, 4], b: [4, 2], c: [])
        try expectMatchesOnnxRuntime(cases)
    }
}

@Suite struct NormalizationOperatorTests {
    @Test func matchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 14)
        var cases: [OperatorCase] = []
        let x = Tensor.random([2, 3, 4, 5], in: -5...5, using: &rng)
        for (op, opset, axis) in [("Softmax", 13, -1), ("Softmax", 17, 1), ("Softmax", 11, 1), ("Softmax", 12, -2),
                                  ("LogSoftmax", 13, 2), ("LogSoftmax", 11, 2)] {
            cases.append(OperatorCase(name: "\(op) opset \(opset) axis \(axis)", opType: op, attributes: ["axis": .int(axis)],
                                      inputs: [x], opset: opset))
        }
        cases.append(OperatorCase(name: "Softmax default axis opset 11", opType: "Softmax", inputs: [x], opset: 11))
        let hidden = Tensor.random([2, 7, 16], using: &rng)
        cases.append(OperatorCase(name: "LayerNorm last axis", opType: "LayerNormalization",
                                  attributes: ["epsilon": .float(1e-12)],
                                  inputs: [hidden, .random([16], using: &rng), .random([16], using: &rng)], constantInputs: [1, 2]))
        cases.append(OperatorCase(name: "LayerNorm axis 1 no bias", opType: "LayerNormalization", attributes: ["axis": .int(1)],
                                  inputs: [hidden, .random([7, 16], using: &rng)], constantInputs: [1], opset: 21))
        let image = Tensor.random([2, 4, 5, 5], using: &rng)
        cases.append(OperatorCase(name: "BatchNorm", opType: "BatchNormalization", attributes: ["epsilon": .float(1e-3)],
                                  inputs: [image, .random([4], using: &rng), .random([4], using: &rng),
                                           .random([4], using: &rng), .random([4], in: 0.1...2, using: &rng)],
                                  constantInputs: [1, 2, 3, 4], opset: 15))
        cases.append(OperatorCase(name: "InstanceNorm", opType: "InstanceNormalization",
                                  inputs: [image, .random([4], using: &rng), .random([4], using: &rng)], constantInputs: [1, 2]))
        try expectMatchesOnnxRuntime(cases)
    }
}
