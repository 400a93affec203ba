import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct ConvolutionOperatorTests {
    @Test func matchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 11)
        var cases: [OperatorCase] = []
        func conv(_ name: String, x: [Int], w: [Int], bias: Bool = true, _ attributes: [String: Attribute] = [:],
                  opset: Int = 17, weightsConstant: Bool = true) {
            var inputs: [Tensor?] = [.random(x, using: &rng), .random(w, in: -0.5...0.5, using: &rng)]
            if bias { inputs.append(.random([w[0]], using: &rng)) }
            cases.append(OperatorCase(name: name, opType: "Conv", attributes: attributes, inputs: inputs,
                                      constantInputs: weightsConstant ? [1, 2] : [], opset: opset, tolerance: 1e-4))
        }
        conv("conv2d 3x3 pad", x: [2, 3, 9, 9], w: [8, 3, 3, 3], ["pads": .ints([1, 1, 1, 1])])
        conv("conv2d stride 2 asymmetric pads", x: [1, 4, 10, 11], w: [6, 4, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([0, 1, 1, 0])])
        conv("conv2d 1x1 no bias", x: [3, 16, 7, 7], w: [24, 16, 1, 1], bias: false)
        conv("depthwise", x: [2, 8, 12, 12], w: [8, 1, 3, 3], ["group": .int(8), "pads": .ints([1, 1, 1, 1])])
        conv("grouped dilated", x: [1, 8, 15, 15], w: [12, 4, 3, 3], ["group": .int(2), "dilations": .ints([2, 2])])
        conv("same upper", x: [1, 3, 10, 10], w: [4, 3, 4, 4], ["auto_pad": .string("SAME_UPPER"), "strides": .ints([3, 3])])
        conv("same lower", x: [1, 3, 10, 10], w: [4, 3, 4, 4], ["auto_pad": .string("SAME_LOWER"), "strides": .ints([2, 2])])
        conv("valid", x: [1, 3, 8, 8], w: [4, 3, 3, 3], ["auto_pad": .string("VALID")])
        conv("conv1d", x: [2, 5, 20], w: [7, 5, 3], ["pads": .ints([1, 2])], opset: 11)
        conv("conv3d", x: [1, 2, 6, 6, 6], w: [3, 2, 3, 3, 3], ["pads": .ints([1, 1, 1, 1, 1, 1])], opset: 21)
        conv("runtime weights", x: [1, 3, 6, 6], w: [4, 3, 3, 3], weightsConstant: false)

        func deconv(_ name: String, x: [Int], w: [Int], _ attributes: [String: Attribute] = [:], group: Int = 1) {
            let inputs: [Tensor?] = [.random(x, using: &rng), .random(w, in: -0.5...0.5, using: &rng),
                                     .random([w[1] * group], using: &rng)]
            cases.append(OperatorCase(name: name, opType: "ConvTranspose", attributes: attributes, inputs: inputs,
                                      constantInputs: [1, 2], tolerance: 1e-4))
        }
        deconv("deconv stride 2", x: [1, 4, 5, 5], w: [4, 3, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]),
                                                                     "output_padding": .ints([1, 1])])
        deconv("deconv grouped", x: [2, 6, 4, 4], w: [6, 2, 2, 2], ["group": .int(3), "strides": .ints([2, 2])], group: 3)
        deconv("deconv 1d dilated", x: [1, 3, 7], w: [3, 5, 3], ["dilations": .ints([2])])
        try expectMatchesOnnxRuntime(cases)
    }
}

@Suite struct PoolingOperatorTests {
    @Test func matchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 12)
        var cases: [OperatorCase] = []
        func pool(_ name: String, _ op: String, x: [Int], _ attributes: [String: Attribute], opset: Int = 17) {
            cases.append(OperatorCase(name: name, opType: op, attributes: attributes, inputs: [.random(x, using: &rng)], opset: opset))
        }
        pool("max 3x3 s2", "MaxPool", x: [2, 3, 11, 11], ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2])])
        pool("max pads ceil", "MaxPool", x: [1, 2, 10, 10], ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]),
                                                             "pads": .ints([1, 1, 1, 1]), "ceil_mode": .int(1)])
        pool("max dilated", "MaxPool", x: [1, 2, 9, 9], ["kernel_shape": .ints([2, 2]), "dilations": .ints([2, 2])], opset: 12)
        pool("max same upper", "MaxPool", x: [1, 2, 7, 7], ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]),
                                                             "auto_pad": .string("SAME_UPPER")])
        pool("avg exclude pad", "AveragePool", x: [2, 3, 8, 8], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])])
        pool("avg include pad", "AveragePool", x: [2, 3, 8, 8], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1]),
                                                                 "count_include_pad": .int(1)], opset: 11)
        pool("avg 1d", "AveragePool", x: [2, 3, 9], ["kernel_shape": .ints([2]), "strides": .ints([2])], opset: 19)
        pool("global avg", "GlobalAveragePool", x: [2, 5, 7, 7], [:])
        pool("global max 3d", "GlobalMaxPool", x: [2, 3, 3, 4, 5], [:])
        try expectMatchesOnnxRuntime(cases)
    }
}
