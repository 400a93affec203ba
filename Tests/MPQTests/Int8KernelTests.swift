import CDNNL
import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Int8 Conv / MatMul / Gemm on oneDNN against the float32 operators run on
/// the dequantized input and weights (serialized, so that the timings
/// printed by `reportsSpeedAgainstFloat32` do not share the cores).
@Suite(.serialized) struct Int8KernelTests {
    /// One int8 problem and its float32 reference graph.
    struct Case {
        var name: String
        var node: Node
        var input: [Int]
        var weights: [Int]
        /// Axis of the output channels in the ONNX weights.
        var channelAxis = 0
        var bias = true
        var postOps: [PostOp] = []
    }

    static func conv(_ name: String, x: [Int], w: [Int], bias: Bool = true, _ attributes: [String: Attribute] = [:],
                     postOps: [PostOp] = []) -> Case {
        Case(name: name, node: Node(name: name, opType: "Conv", inputs: [], outputs: [], attributes: attributes),
             input: x, weights: w, bias: bias, postOps: postOps)
    }

    static func matMul(_ name: String, x: [Int], w: [Int], bias: Bool = false, postOps: [PostOp] = []) -> Case {
        Case(name: name, node: Node(name: name, opType: "MatMul", inputs: [], outputs: []),
             input: x, weights: w, channelAxis: 1, bias: bias, postOps: postOps)
    }

    static func gemm(_ name: String, x: [Int], w: [Int], _ attributes: [String: Attribute] = [:], postOps: [PostOp] = []) -> Case {
        let transB = attributes["transB"] != nil
        return Case(name: name, node: Node(name: name, opType: "Gemm", inputs: [], outputs: [], attributes: attributes),
                    input: x, weights: w, channelAxis: transB ? 0 : 1, postOps: postOps)
    }

    static let cases: [Case] = [
        conv("3x3 pads", x: [2, 16, 9, 9], w: [32, 16, 3, 3], ["pads": .ints([1, 1, 1, 1])]),
        conv("3 input channels", x: [2, 3, 12, 12], w: [16, 3, 3, 3], ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
        conv("stride 2 asymmetric pads", x: [1, 16, 10, 11], w: [16, 16, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([0, 1, 1, 0])]),
        conv("1x1 no bias", x: [3, 24, 7, 7], w: [40, 24, 1, 1], bias: false),
        conv("depthwise relu", x: [2, 32, 12, 12], w: [32, 1, 3, 3], ["group": .int(32), "pads": .ints([1, 1, 1, 1])], postOps: [.relu]),
        conv("depthwise stride 2 clip", x: [2, 32, 13, 13], w: [32, 1, 3, 3],
             ["group": .int(32), "strides": .ints([2, 2]), "pads": .ints([1, 1, 0, 0])], postOps: [.clip(min: 0, max: 6)]),
        conv("grouped dilated", x: [1, 16, 15, 15], w: [24, 8, 3, 3], ["group": .int(2), "dilations": .ints([2, 2]), "pads": .ints([2, 2, 2, 2])]),
        conv("small groups (reference kernel)", x: [1, 8, 15, 15], w: [12, 4, 3, 3], ["group": .int(2), "dilations": .ints([2, 2])]),
        conv("same upper stride 2", x: [1, 8, 10, 10], w: [16, 8, 4, 4], ["auto_pad": .string("SAME_UPPER"), "strides": .ints([2, 2])]),
        conv("conv1d", x: [2, 5, 20], w: [7, 5, 3], ["pads": .ints([1, 2])]),
        conv("conv3d", x: [1, 4, 6, 6, 6], w: [8, 4, 3, 3, 3], ["pads": .ints([1, 1, 1, 1, 1, 1])]),
        conv("residual sum then relu", x: [2, 16, 8, 8], w: [16, 16, 3, 3], ["pads": .ints([1, 1, 1, 1])], postOps: [.sum, .relu]),
        matMul("matmul 2-D bias", x: [64, 96], w: [96, 48], bias: true),
        matMul("matmul 3-D x 2-D relu", x: [3, 10, 64], w: [64, 40], postOps: [.relu]),
        matMul("matmul 1-D input", x: [64], w: [64, 8]),
        gemm("gemm transB alpha beta relu", x: [20, 72], w: [56, 72], ["transB": .int(1), "alpha": .float(0.5), "beta": .float(2)],
             postOps: [.relu]),
        gemm("gemm residual sum", x: [12, 40], w: [40, 24], postOps: [.sum]),
    ]

    /// Random weight codes spanning `bits`.
    static func weightCodes(_ shape: [Int], bits: Int, using rng: inout SeededGenerator) -> Tensor {
        let high = Int8((1 << (bits - 1)) - 1), low = -high - 1
        return Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Int8.random(in: low...high, using: &rng) })
    }

    /// The codes times their channel's scale (float32).
    static func dequantized(_ codes: Tensor, scales: [Float], axis: Int) -> Tensor {
        let inner = codes.shape[(axis + 1)...].reduce(1, *)
        let values = codes.scalars(as: Int8.self).enumerated().map { i, q in scales[i / inner % scales.count] * Float(q) }
        return Tensor(shape: codes.shape, scalars: values)
    }

    /// The case's float32 computation as a graph: the node on x, w (and bias),
    /// then an Add for a bias MatMul, an Add of the residual for `.sum`, Relu / Clip.
    static func reference(_ c: Case, x: Tensor, w: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        var node = c.node
        node.inputs = ["x", "w"] + (bias != nil && c.node.opType != "MatMul" ? ["b"] : [])
        node.outputs = ["y0"]
        var nodes = [node]
        var initializers = ["w": w]
        var feeds = ["x": x]
        func append(_ opType: String, _ inputs: [String]) {
            let output = "y\(nodes.count)"
            nodes.append(Node(name: output, opType: opType, inputs: [nodes.last!.outputs[0]] + inputs, outputs: [output]))
        }
        if let bias {
            initializers["b"] = bias
            if c.node.opType == "MatMul" { append("Add", ["b"]) }
        }
        for postOp in c.postOps {
            switch postOp {
            case .sum:
                feeds["r"] = residual
                append("Add", ["r"])
            case .relu:
                append("Relu", [])
            case .clip(let low, let high):
                initializers["low"] = Tensor(scalar: low)
                initializers["high"] = Tensor(scalar: high)
                append("Clip", ["low", "high"])
            case .gelu:
                append("Gelu", [])
            }
        }
        let output = nodes.last!.outputs[0]
        let graph = Graph(name: c.name, nodes: nodes,
                          inputs: feeds.map { ValueInfo(name: $0.key, dtype: .float32, shape: $0.value.shape.map { .fixed($0) }) },
                          outputs: [ValueInfo(name: output, dtype: .float32, shape: nil)], initializers: initializers, opset: 17)
        return try InferenceSession(graph: graph, options: SessionOptions(threads: 2)).run(feeds)[output]!
    }

    /// max |actual - expected| / max |expected|.
    static func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
        let a = actual.scalars(as: Float.self), e = expected.scalars(as: Float.self)
        let worst = zip(a, e).map { abs($0 - $1) }.max() ?? 0
        return worst / max(e.map(abs).max() ?? 0, .leastNormalMagnitude)
    }

    @Test(arguments: [7] + (CPUFeatures.current.int8WeightBits == 8 ? [8] : []))
    func matchesFloatOperatorsOnDequantizedValues(bits: Int) throws {
        var rng = SeededGenerator(seed: 21)
        let context = ExecutionContext(threads: 2)
        for c in Self.cases {
            // An asymmetric input range, so the zero point (64) is far from 0 and wrong padding would show.
            let input = try UInt8Quantization(scale: 4 / 255, zeroPoint: 64)
            let x = Tensor.random(c.input, in: -1.2...3.2, using: &rng)
            let codes = Self.weightCodes(c.weights, bits: bits, using: &rng)
            let channels = c.weights[c.channelAxis]
            let scales = (0..<channels).map { _ in Float.random(in: 0.002...0.02, using: &rng) }
            let bias = c.bias ? Tensor.random([channels], using: &rng) : nil
            let kernel = try Int8Kernel(node: c.node, inputShape: c.input, weights: codes, weightScales: scales,
                                        bias: bias, input: input, postOps: c.postOps, weightBits: bits)
            let residual = c.postOps.contains(.sum) ? Tensor.random(kernel.outputShape, using: &rng) : nil

            let inputCodes = try input.quantize(x, context: context)
            let expected = try Self.reference(c, x: input.dequantize(inputCodes),
                                              w: Self.dequantized(codes, scales: scales, axis: c.channelAxis),
                                              bias: bias, residual: residual)
            let actual = try kernel.run(x, residual: residual, context: context)
            #expect(actual.shape == expected.shape, "\(c.name)")
            let error = Self.relativeError(actual, expected)
            #expect(error <= 1e-4, "\(c.name) (\(kernel.implementation)): relative error \(error)")
            print("int8 \(bits)-bit weights, \(c.name): \(kernel.implementation), relative error \(error)")
            let fromCodes = try kernel.run(inputCodes, residual: residual, context: context)
            #expect(fromCodes.scalars(as: Float.self) == actual.scalars(as: Float.self), "\(c.name): uint8 input differs")
        }
    }

    /// Requantized output (uint8 codes in the kernel's own layout, what the
    /// next int8 layer reads): every code within one of quantizing the float32
    /// output, nearly all equal; a ReLU6 whose bounds are the quantizer's
    /// saturation limits is dropped, and the codes still match.
    @Test func requantizedOutputIsWithinOneCodeOfQuantizedFloatOutput() throws {
        var rng = SeededGenerator(seed: 33)
        let context = ExecutionContext(threads: 2)
        var cases = Self.cases.filter { !$0.postOps.contains(.sum) }
        cases.append(Self.conv("1x1 relu6 on the quantizer range", x: [2, 16, 7, 7], w: [24, 16, 1, 1], postOps: [.clip(min: 0, max: 6)]))
        for c in cases {
            let input = try UInt8Quantization(scale: 4 / 255, zeroPoint: 64)
            let x = Tensor.random(c.input, in: -1.2...3.2, using: &rng)
            let codes = Self.weightCodes(c.weights, bits: 7, using: &rng)
            let channels = c.weights[c.channelAxis]
            let scales = (0..<channels).map { _ in Float.random(in: 0.002...0.02, using: &rng) }
            let bias = c.bias ? Tensor.random([channels], using: &rng) : nil
            let floatKernel = try Int8Kernel(node: c.node, inputShape: c.input, weights: codes, weightScales: scales,
                                             bias: bias, input: input, postOps: c.postOps, weightBits: 7)
            let y = try floatKernel.run(x, context: context)
            let values = y.scalars(as: Float.self)
            // The output quantizer of the layer: calibrated on y's range (a clipped
            // output's range is its clip range), an odd zero point where y has negatives.
            let low = min(values.min()!, 0), high = max(values.max()!, 0)
            var output = try UInt8Quantization(scale: (high - low) / 255, zeroPoint: Int((-low / ((high - low) / 255)).rounded()))
            if c.name.contains("relu6") { output = try UInt8Quantization(scale: 6 / 255, zeroPoint: 0) }
            let kernel = try Int8Kernel(node: c.node, inputShape: c.input, weights: codes, weightScales: scales,
                                        bias: bias, input: input, postOps: c.postOps, output: output, weightBits: 7)
            let emitted = try kernel.run(x, context: context)
            #expect(emitted.dtype == .uint8 && emitted.shape == y.shape, "\(c.name)")
            let actual = try emitted.rowMajor().scalars(as: UInt8.self)
            let expected = try output.quantize(y, context: context).scalars(as: UInt8.self)
            let differences = zip(actual, expected).map { abs(Int($0) - Int($1)) }
            let off = differences.filter { $0 != 0 }.count
            #expect(differences.max()! <= 1, "\(c.name): a code is \(differences.max()!) off")
            #expect(off * 1000 <= actual.count, "\(c.name): \(off) of \(actual.count) codes off by one")
            if c.name.contains("relu6") {
                #expect(kernel.appliedPostOps.isEmpty, "ReLU6 on [0, 6] with a [0, 6] quantizer should clip for free")
            }
            // The next layer takes the codes as they are (same layout, no reorder).
            if c.node.opType == "Conv", c.input.count == 4 {
                let next = Self.conv("next", x: y.shape, w: [8, y.shape[1], 1, 1])
                let nextKernel = try Int8Kernel(node: next.node, inputShape: y.shape,
                                                weights: Self.weightCodes(next.weights, bits: 7, using: &rng),
                                                weightScales: Array(repeating: 0.01, count: 8), bias: nil, input: output, weightBits: 7)
                let fromCodes = try nextKernel.run(emitted, context: context).scalars(as: Float.self)
                let fromRowMajor = try nextKernel.run(try emitted.rowMajor(), context: context).scalars(as: Float.self)
                #expect(fromCodes == fromRowMajor, "\(c.name): codes in the kernel layout read differently")
            }
            print("int8 requantized \(c.name): \(kernel.implementation), \(off) of \(actual.count) codes off by one")
        }
    }

    /// The integer residual Add: codes within one of quantizing the float Add
    /// of the dequantized inputs, the float32 output equal to it up to rounding;
    /// inputs in a convolution's channels-last layout and row-major mixed.
    @Test func integerAddMatchesAddOfDequantizedInputs() throws {
        var rng = SeededGenerator(seed: 8)
        let context = ExecutionContext(threads: 2)
        let shape = [2, 24, 9, 11]
        // Scales with no simple ratios, as calibrated ones: decimal ones like 0.03 and 0.06 make
        // exact ties common (1.41 / 0.06 = 23.5), which the kernel may round either way.
        let a = try UInt8Quantization(scale: 0.031_137, zeroPoint: 117), b = try UInt8Quantization(scale: 0.047_291, zeroPoint: 98)
        let y = try UInt8Quantization(scale: 0.061_723, zeroPoint: 121)
        let x = Tensor.random(shape, in: -3...3, using: &rng)
        let codesB = try b.quantize(Tensor.random(shape, in: -4...4, using: &rng), context: context)
        // The first operand as a 1x1 convolution emits it: channels-last codes.
        let conv = Self.conv("1x1", x: shape, w: [24, 24, 1, 1])
        let identity = Tensor(shape: [24, 24, 1, 1], scalars: (0..<(24 * 24)).map { $0 / 24 == $0 % 24 ? Int8(50) : 0 })
        let source = try UInt8Quantization(scale: 0.031_137, zeroPoint: 0)
        let producer = try Int8Kernel(node: conv.node, inputShape: shape, weights: identity, weightScales: Array(repeating: 0.02, count: 24),
                                      bias: nil, input: source, output: a, weightBits: 7)
        let codesA = try producer.run(try source.quantize(x, context: context), context: context)
        let realA = try a.dequantize(try codesA.rowMajor()).scalars(as: Float.self)
        let realB = try b.dequantize(codesB).scalars(as: Float.self)
        let sum = Tensor(shape: shape, scalars: zip(realA, realB).map { $0 + $1 })
        let expected = try y.quantize(sum, context: context).scalars(as: UInt8.self)
        for (first, second) in [(codesA, codesB), (try codesA.rowMajor(), codesB), (codesB, codesA)] {
            let swapped = first.opaqueLayout == nil && second.opaqueLayout != nil
            let kernel = try Int8AddKernel(shape: shape, first: swapped ? b : a, second: swapped ? a : b, output: y)
            let actual = try kernel.run(first, second, context: context)
            #expect(actual.dtype == .uint8)
            let differences = zip(try actual.rowMajor().scalars(as: UInt8.self), expected).map { abs(Int($0) - Int($1)) }
            #expect(differences.max()! <= 1, "a code is \(differences.max()!) off")
            #expect(differences.filter { $0 != 0 }.count * 1000 <= differences.count)
            print("int8 add: \(kernel.implementation), \(differences.filter { $0 != 0 }.count) of \(differences.count) codes off by one")
            let floatKernel = try Int8AddKernel(shape: shape, first: swapped ? b : a, second: swapped ? a : b, output: nil)
            let float = try floatKernel.run(first, second, context: context)
            print("int8 add to float32: \(floatKernel.implementation) (a reference kernel is replaced by a plain loop)")
            #expect(float.dtype == .float32)
            let error = zip(try float.rowMajor().scalars(as: Float.self), sum.scalars(as: Float.self)).map { abs($0 - $1) }.max()!
            #expect(error <= 1e-5, "float32 output off by \(error)")
        }
    }

    /// A constant input through all-ones weights: each output is the input's
    /// real value times the number of taps inside the image, so a border
    /// output that counted padding as anything but real 0 (code z_x) is off.
    @Test(arguments: [(group: 1, channels: 8), (group: 8, channels: 8)])
    func paddingIsRealZeroAtBordersAndInterior(group: Int, channels: Int) throws {
        let input = try UInt8Quantization(scale: 0.05, zeroPoint: 100)
        let (height, width) = (6, 7)
        let node = Node(name: "conv", opType: "Conv", inputs: [], outputs: [],
                        attributes: ["group": .int(group), "pads": .ints([1, 2, 2, 1])])
        let weightShape = [channels, channels / group, 3, 3]
        let kernel = try Int8Kernel(node: node, inputShape: [1, channels, height, width],
                                    weights: Tensor(shape: weightShape, scalars: [Int8](repeating: 1, count: weightShape.reduce(1, *))),
                                    weightScales: Array(repeating: 0.5, count: channels), bias: nil, input: input)
        #expect(kernel.implementation.hasPrefix("jit"), "expected a jit kernel, got \(kernel.implementation)")
        let value: Float = 1.3   // code 126, real 1.3
        let x = Tensor(shape: [1, channels, height, width], scalars: [Float](repeating: value, count: channels * height * width))
        let y = try kernel.run(x, context: ExecutionContext(threads: 2))
        let (outHeight, outWidth) = (y.shape[2], y.shape[3])
        #expect(y.shape == [1, channels, height + 1, width + 1])
        let values = y.scalars(as: Float.self)
        var borders = 0, interiors = 0
        for c in 0..<channels {
            for i in 0..<outHeight {
                for j in 0..<outWidth {
                    // Output (i, j) reads rows i-1...i+1 and columns j-2...j.
                    let rows = (i - 1...i + 1).filter { (0..<height).contains($0) }.count
                    let columns = (j - 2...j).filter { (0..<width).contains($0) }.count
                    let expected = value * 0.5 * Float(rows * columns * channels / group)
                    if rows * columns == 9 { interiors += 1 } else { borders += 1 }
                    let actual = values[(c * outHeight + i) * outWidth + j]
                    #expect(abs(actual - expected) <= 1e-5 * abs(expected), "(\(c), \(i), \(j)): \(actual) vs \(expected)")
                }
            }
        }
        #expect(borders > 0 && interiors > 0)
    }

    /// On AVX2 without VNNI, oneDNN adds pairs of u8 x s8 products in a
    /// saturating 16-bit lane: 255 x 127 x 2 = 64770 > 32767 gives a wrong
    /// sum, while 7-bit weights (255 x 64 x 2 = 32640) are exact. Where oneDNN
    /// uses VNNI (32-bit accumulation), full-range weights must be exact instead.
    @Test func fullRangeWeightsSaturateWithoutVNNI() throws {
        let context = ExecutionContext(threads: 2)
        let input = try UInt8Quantization(scale: 1, zeroPoint: 0)
        let matMul = Node(name: "matmul", opType: "MatMul", inputs: [], outputs: [])
        let conv = Node(name: "conv", opType: "Conv", inputs: [], outputs: [])
        let problems: [(node: Node, input: [Int], weights: [Int], reduction: Int)] = [
            (matMul, [4, 256], [256, 8], 256), (conv, [1, 16, 4, 4], [8, 16, 3, 3], 16 * 9),
        ]
        let vnni = CPUFeatures.current.int8WeightBits == 8
        for p in problems {
            let x = Tensor(shape: p.input, scalars: [UInt8](repeating: 255, count: p.input.reduce(1, *)))
            for weight in [127, -128, 63, -64] as [Int8] {
                let channels = p.weights[p.node.opType == "Conv" ? 0 : 1]
                let kernel = try Int8Kernel(node: p.node, inputShape: p.input,
                                            weights: Tensor(shape: p.weights, scalars: [Int8](repeating: weight, count: p.weights.reduce(1, *))),
                                            weightScales: Array(repeating: 1, count: channels), bias: nil, input: input, weightBits: 8)
                let y = try kernel.run(x, context: context).scalars(as: Float.self)
                let exact = Float(255 * Int(weight) * p.reduction)
                let sevenBit = (-64...63).contains(weight)
                if sevenBit || vnni {
                    #expect(y.allSatisfy { $0 == exact }, "\(p.node.opType) weight \(weight): \(y[0]) vs exact \(exact)")
                } else {
                    #expect(y.allSatisfy { $0 != exact }, "\(p.node.opType) weight \(weight): expected saturation, got the exact \(exact)")
                }
            }
        }
    }

    @Test func rejectsInvalidArguments() throws {
        let node = Node(name: "matmul", opType: "MatMul", inputs: [], outputs: [])
        let input = try UInt8Quantization(scale: 0.1, zeroPoint: 3)
        let codes = Tensor(shape: [2, 2], scalars: [1, -65, 3, 4] as [Int8])
        func kernel(weights: Tensor = codes, scales: [Float] = [1, 1], bits: Int = 8, postOps: [PostOp] = []) throws -> Int8Kernel {
            try Int8Kernel(node: node, inputShape: [3, 2], weights: weights, weightScales: scales, bias: nil, input: input,
                           postOps: postOps, weightBits: bits)
        }
        // -65 needs 8 bits.
        #expect(throws: MPQError.self) { try kernel(bits: 7) }
        #expect(throws: MPQError.self) { try kernel(bits: 9) }
        #expect(throws: MPQError.self) { try kernel(scales: [1]) }
        #expect(throws: MPQError.self) { try kernel(scales: [1, 0]) }
        #expect(throws: MPQError.self) { try kernel(weights: Tensor(shape: [2, 2], scalars: [Float](repeating: 1, count: 4))) }
        #expect(throws: MPQError.self) { try kernel(weights: Tensor(shape: [3, 2], scalars: [Int8](repeating: 1, count: 6))) }
        let context = ExecutionContext(threads: 1)
        #expect(throws: MPQError.self) { try kernel().run(Tensor(zeros: .float32, shape: [2, 2]), context: context) }
        #expect(throws: MPQError.self) { try kernel().run(Tensor(zeros: .int8, shape: [3, 2]), context: context) }
        #expect(throws: MPQError.self) { try kernel(postOps: [.sum]).run(Tensor(zeros: .float32, shape: [3, 2]), context: context) }
        #expect(throws: MPQError.self) { try UInt8Quantization(scale: 0, zeroPoint: 0) }
        #expect(throws: MPQError.self) { try UInt8Quantization(scale: .nan, zeroPoint: 0) }
        #expect(throws: MPQError.self) { try UInt8Quantization(scale: 1, zeroPoint: 256) }
        let relu = Node(name: "relu", opType: "Relu", inputs: [], outputs: [])
        #expect(throws: MPQError.self) {
            try Int8Kernel(node: relu, inputShape: [3, 2], weights: codes, weightScales: [1, 1], bias: nil, input: input)
        }
    }

    /// Quantization of the input equals numpy's clip(rint(x / s) + z, 0, 255)
    /// (ONNX QuantizeLinear), ties with an odd zero point and saturation included.
    @Test func quantizationMatchesNumpy() throws {
        var rng = SeededGenerator(seed: 5)
        let input = try UInt8Quantization(scale: 0.25, zeroPoint: 7)
        let special: [Float] = [0.125, 0.375, -0.125, -0.375, 0.625, -1.625, 100, -100, .infinity, -.infinity, 1e30, 63.625]
        let x = Tensor(shape: [3, 1000 + special.count], scalars: (0..<3).flatMap { _ in
            special + (0..<1000).map { _ in Float.random(in: -4...70, using: &rng) }
        })
        let context = ExecutionContext(threads: 2)
        let codes = try input.quantize(x, context: context)
        let folder = temporaryFolder("mpq-int8")
        defer { try? FileManager.default.removeItem(at: folder) }
        try NPY.write(x, to: folder.appendingPathComponent("x.npy").path)
        let script = """
        import sys, numpy as np
        x = np.load(sys.argv[1])
        q = np.clip(np.rint(x / np.float32(0.25)) + 7, 0, 255).astype(np.uint8)
        np.save(sys.argv[2], q)
        """
        try runPython(["-c", script, folder.appendingPathComponent("x.npy").path, folder.appendingPathComponent("q.npy").path])
        let expected = try NPY.read(contentsOf: folder.appendingPathComponent("q.npy").path)
        #expect(codes.scalars(as: UInt8.self) == expected.scalars(as: UInt8.self))
        #expect(Array(codes.scalars(as: UInt8.self).prefix(special.count)) == [7, 9, 7, 5, 9, 1, 255, 0, 255, 0, 255, 255])
        let nan = try input.quantize(Tensor(shape: [2], scalars: [Float.nan, -Float.nan]), context: context)
        #expect(nan.scalars(as: UInt8.self) == [0, 0])
    }

    @Test func detectsCPUFeatures() {
        let info = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\nbugs\t\t: none\n"
        let avx512 = CPUFeatures(cpuinfo: info, oneDNNISA: dnnl_cpu_isa_avx512_core_bf16)
        #expect(avx512.hasAVX2 && avx512.hasAVX512VNNI && !avx512.hasAVXVNNI && avx512.int8WeightBits == 8)
        // DNNL_MAX_CPU_ISA=AVX2 on the same CPU: oneDNN saturates again.
        #expect(CPUFeatures(cpuinfo: info, oneDNNISA: dnnl_cpu_isa_avx2).int8WeightBits == 7)
        let alderLake = CPUFeatures(cpuinfo: "flags : avx2 avx_vnni\n", oneDNNISA: dnnl_cpu_isa_avx2_vnni)
        #expect(alderLake.hasAVXVNNI && alderLake.int8WeightBits == 8)
        let current = CPUFeatures.current
        print("CPU features: AVX2 \(current.hasAVX2), AVX-VNNI \(current.hasAVXVNNI), AVX512-VNNI \(current.hasAVX512VNNI), "
              + "oneDNN VNNI \(current.oneDNNUsesVNNI): int8 weights of \(current.int8WeightBits) bits are exact")
    }

    /// Prints int8 against float32 time for two MobileNetV2 layers (batch 16); not asserted.
    /// One thread gives stable numbers on a shared machine; with two, a busy
    /// neighbour delays every parallel region by a scheduler tick (4 ms).
    @Test(arguments: [1, 2])
    func reportsSpeedAgainstFloat32(threads: Int) throws {
        let problems: [(name: String, node: Node, input: [Int], weights: [Int])] = [
            ("1x1 conv 96->24", Node(name: "pointwise", opType: "Conv", inputs: [], outputs: []), [16, 96, 56, 56], [24, 96, 1, 1]),
            ("3x3 depthwise 144", Node(name: "depthwise", opType: "Conv", inputs: [], outputs: [],
                                        attributes: ["group": .int(144), "pads": .ints([1, 1, 1, 1])]), [16, 144, 56, 56], [144, 1, 3, 3]),
        ]
        for p in problems {
            let t = try Int8Kernel.timeAgainstFloat32(node: p.node, inputShape: p.input, weightShape: p.weights, threads: threads, repetitions: 15)
            print(String(format: "int8 speed, %@ %@, %d thread(s): f32 %.2f ms, int8 from f32 %.2f ms (%.2fx), int8 from u8 codes %.2f ms (%.2fx) [%@]",
                         p.name, "\(p.input)", threads, t.float32, t.int8, t.float32 / t.int8, t.int8FromCodes, t.float32 / t.int8FromCodes,
                         t.implementation))
        }
    }
}
