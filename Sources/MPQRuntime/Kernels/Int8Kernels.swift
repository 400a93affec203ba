import CDNNL
import Foundation
import MPQGraph

/// Per-tensor asymmetric uint8 quantization of an activation, as ONNX
/// QuantizeLinear / DequantizeLinear define it with a uint8 zero point:
/// `q = clamp(rint(x / scale) + zeroPoint, 0, 255)`, real value `scale * (q - zeroPoint)`.
public struct UInt8Quantization: Sendable, Equatable {
    /// Step between neighbouring codes, in the activation's units (finite, > 0).
    public let scale: Float
    /// The code that represents the real value 0 (0...255).
    public let zeroPoint: Int

    /// Throws unless `scale` is finite and positive and `zeroPoint` is in 0...255.
    public init(scale: Float, zeroPoint: Int) throws {
        guard scale.isFinite, scale > 0 else { throw MPQError.invalidInput("uint8 quantization needs a finite scale > 0, got \(scale)") }
        guard (0...255).contains(zeroPoint) else { throw MPQError.invalidInput("uint8 zero point \(zeroPoint) is outside 0...255") }
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    /// The uint8 codes of a float32 tensor (same shape); NaN becomes code 0.
    public func quantize(_ x: Tensor, context: ExecutionContext) throws -> Tensor {
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("uint8 quantization takes float32, got \(x.dtype)") }
        let codes = context.allocate(.uint8, x.shape)
        try PerTensorQuantizer(self, count: x.count).run(x.rowMajor(), into: codes)
        return codes
    }

    /// The real values of uint8 codes: `scale * (q - zeroPoint)` (float32, same shape).
    public func dequantize(_ codes: Tensor) throws -> Tensor {
        guard codes.dtype == .uint8 else { throw MPQError.typeMismatch("uint8 dequantization takes uint8, got \(codes.dtype)") }
        let values = Tensor(uninitialized: .float32, shape: codes.shape)
        let input = codes.pointer(as: UInt8.self), output = values.pointer(as: Float.self)
        for i in 0..<codes.count { output[i] = scale * Float(Int(input[i]) - zeroPoint) }
        return values
    }
}

/// Per-tensor linear quantization of a fixed number of float32 values as one
/// oneDNN binary primitive: x / scale, then post-ops: either the uint8 codes
/// of QuantizeLinear (round half to even, + zero point, saturated to u8 on
/// the way out), or QuantizeLinear followed by DequantizeLinear (round, clip
/// to [qmin - z, qmax - z], times scale), bit for bit what
/// `Tensor.fakeQuantized` computes.
///
/// Not oneDNN's f32 -> u8 reorder with scales: it multiplies by 1 / scale and
/// adds the zero point before rounding, so at ties with an odd zero point it
/// lands one code off QuantizeLinear (0.5 + 1 rounds to 2 where rint(0.5) + 1
/// = 1). Nor a loop: without SSE4.1 (the default target) rounding is a libm
/// call per element; such a loop in C took 12 ms for 4.8M values on one core
/// here, the primitive 1.2 ms on two.
package final class PerTensorQuantizer {
    package enum Output {
        /// uint8 codes.
        case codes
        /// Float32 values `scale * (q - zeroPoint)`, q clamped to `qmin...qmax`.
        case dequantized(qmin: Int, qmax: Int)
    }

    private let primitive: Primitive
    /// The binary primitive's second source: the scale, broadcast.
    private let scale: Tensor

    package init(scale: Float, zeroPoint: Int, output: Output, count: Int) throws {
        var source = try MemoryDescriptor(plain: [count]).raw
        var divisor = try MemoryDescriptor(plain: [1]).raw
        var desc = dnnl_binary_desc_t()
        let attributes = try PrimitiveAttributes()
        switch output {
        case .codes:
            var destination = try MemoryDescriptor(plain: [count], dnnl_u8).raw
            try DNNL.check(dnnl_binary_desc_init(&desc, dnnl_binary_div, &source, &divisor, &destination), "quantize descriptor")
            try attributes.setEltwisePostOps([(dnnl_eltwise_round, 0, 0), (dnnl_eltwise_linear, 1, Float(zeroPoint))])
        case let .dequantized(qmin, qmax):
            var destination = source
            try DNNL.check(dnnl_binary_desc_init(&desc, dnnl_binary_div, &source, &divisor, &destination), "quantize descriptor")
            try attributes.setEltwisePostOps([(dnnl_eltwise_round, 0, 0),
                                              (dnnl_eltwise_clip, Float(qmin - zeroPoint), Float(qmax - zeroPoint)),
                                              (dnnl_eltwise_linear, scale, 0)])
        }
        primitive = try Primitive(&desc, attributes: attributes, name: "quantize")
        self.scale = Tensor(shape: [1], scalars: [scale])
    }

    convenience init(_ quantization: UInt8Quantization, count: Int) throws {
        try self.init(scale: quantization.scale, zeroPoint: quantization.zeroPoint, output: .codes, count: count)
    }

    /// Writes the codes or dequantized values of dense float32 `values` into `result`.
    package func run(_ values: Tensor, into result: Tensor) throws {
        try primitive.execute([(DNNL.argSource, values.rawPointer), (DNNL.argSource1, scale.rawPointer),
                               (DNNL.argDestination, result.rawPointer)])
    }
}

/// A Conv, MatMul or Gemm node run as one oneDNN int8 primitive: uint8
/// activation codes times int8 weight codes, int32 accumulation, float32 output
///
///     y[c] = s_x * s_w[c] * sum((q_x - z_x) * q_w[c]) + bias[c]
///
/// followed by the post-ops. That is the float computation on the
/// dequantized input and weights, up to summation order, so it reproduces a
/// quantization simulation of the same configuration.
///
/// - The source zero point goes to oneDNN's zero-point attribute. oneDNN
///   2.6's jit kernels accept it for every shape they take at all (checked on
///   AVX2: 1-D to 3-D, 1x1, depthwise, strided, dilated), and treat padding as
///   the real value 0 (code z_x), so no compensation is computed here.
///   Shapes without a jit kernel (e.g. groups of fewer than 8 channels on
///   AVX2) run on oneDNN's reference kernel, with or without zero points:
///   `implementation` says which (names starting with "ref" are slow).
/// - oneDNN 2.6 adds the bias before the output scales, so the primitive gets
///   `bias[c] / (s_x * s_w[c])`.
/// - Weight codes must fit in `weightBits` (`CPUFeatures.current.int8WeightBits`
///   by default: 7 without VNNI, where wider codes saturate).
/// - Conv activations use oneDNN's channels-last layout inside; input and
///   output are row-major.
/// - oneDNN fixes a primitive's split of work over threads when it is
///   created: build the kernel after setting the thread count.
public final class Int8Kernel {
    /// "Conv", "MatMul" or "Gemm".
    public let opType: String
    /// Row-major input shape the primitive was built for.
    public let inputShape: [Int]
    /// Row-major output shape.
    public let outputShape: [Int]
    /// How the input activation is quantized.
    public let input: UInt8Quantization
    /// Post-ops applied in order to the float32 result, as requested at init.
    public let postOps: [PostOp]
    /// How the output is requantized when the kernel emits uint8 codes (in
    /// `outputLayout`) instead of float32: the next int8 layer's input quantizer.
    public let outputQuantization: UInt8Quantization?
    /// The post-ops the primitive applies: `postOps` less a Clip / Relu that
    /// the requantization's saturation makes redundant.
    public let appliedPostOps: [PostOp]

    private let primitive: Primitive
    private let quantizer: PerTensorQuantizer
    /// Weight codes in the layout the primitive chose.
    private let weights: Tensor
    /// Bias divided by the output scales.
    private let bias: Tensor?
    /// Row-major uint8 input to the primitive's source layout, when they differ.
    private let toSourceLayout: Primitive?
    /// The primitive's float32 output layout to and from row-major, when they differ.
    private let toRowMajorOutput: Primitive?
    private let fromRowMajorOutput: Primitive?
    /// The source codes' layout with float32 elements: input handed over in it
    /// (by a kernel emitting `outputLayout`) is quantized in place, no reorder.
    private let sourceLayoutInFloat32: MemoryDescriptor?
    /// The primitive's source layout: uint8 codes handed over in it are read as they are.
    let sourceLayout: MemoryDescriptor
    /// The output's layout when it is not row-major (e.g. channels-last).
    let outputLayout: OpaqueLayout?

    /// oneDNN's name for the implementation it chose, e.g. "jit_uni_int8:avx2";
    /// "ref_int8:any" marks its slow reference kernel.
    public var implementation: String { primitive.implementation }

    /// Builds the primitive for one input shape and reorders the weights once.
    ///
    /// - Parameters:
    ///   - node: a Conv (strides, pads, auto_pad, dilations, group, 1-D to
    ///     3-D), MatMul, or Gemm (transB, alpha, beta; transA = 0) node; only
    ///     its op type and attributes are read.
    ///   - inputShape: the shape of the float32 input this primitive is built for.
    ///   - weights: int8 codes in the ONNX layout: Conv [O, I/G, k...],
    ///     MatMul [K, N], Gemm B [K, N] or [N, K] with transB.
    ///   - weightScales: one positive scale per output channel (O or N); the
    ///     weight zero point is 0.
    ///   - bias: float32, one value per output channel (for Gemm its C,
    ///     scaled by beta); nil for none.
    ///   - postOps: applied in order to the float32 result (`.sum` adds the
    ///     `residual` given to `run`).
    ///   - input: the uint8 quantization of the float32 input.
    ///   - weightBits: the width the weight codes are checked to fit; wider
    ///     than this CPU's `int8WeightBits` only to demonstrate saturation.
    ///   - output: requantize the result (after the post-ops) to uint8 codes
    ///     with these parameters, in the primitive's own output layout:
    ///     `clamp(rint(y / scale) + zeroPoint, 0, 255)` as the output scales
    ///     and an eltwise linear post-op, rounded and saturated by oneDNN's
    ///     conversion to u8. A code can differ from quantizing the float32
    ///     output by one where `y / scale` lies within float rounding of a tie.
    public init(node: Node, inputShape: [Int], weights: Tensor, weightScales: [Float], bias: Tensor?,
                input: UInt8Quantization, postOps: [PostOp] = [], output: UInt8Quantization? = nil,
                weightBits: Int = CPUFeatures.current.int8WeightBits) throws {
        guard inputShape.allSatisfy({ $0 > 0 }), weights.shape.allSatisfy({ $0 > 0 }) else {
            throw MPQError.shapeMismatch("int8 \(node.opType) needs non-empty input and weights, got \(inputShape) and \(weights.shape)")
        }
        let problem: Problem
        switch node.opType {
        case "Conv": problem = try .convolution(node, input: inputShape, weights: weights.shape)
        case "MatMul", "Gemm": problem = try .matrixProduct(node, input: inputShape, weights: weights.shape)
        default: throw MPQError.invalidInput("int8 kernels run Conv, MatMul and Gemm, not \(node.opType)")
        }
        try Self.validate(weights: weights, scales: weightScales, channels: problem.channels, bits: weightBits)
        let outputScales = weightScales.map { problem.alpha * input.scale * $0 }
        if output != nil, postOps.contains(.sum) {
            throw MPQError.invalidInput("int8 \(node.opType) cannot both add a float32 residual and emit uint8 codes")
        }
        let applied = output.map { output in postOps.filter { !Self.isRedundant($0, before: output) } } ?? postOps
        let destinationType = output == nil ? dnnl_f32 : dnnl_u8

        let attributes = try PrimitiveAttributes()
        try attributes.setOutputScales(outputScales, mask: 1 << 1)
        if input.zeroPoint != 0 { try attributes.setSourceZeroPoint(Int32(input.zeroPoint)) }
        try attributes.setPostOps(applied, followedBy: output.map { [(dnnl_eltwise_linear, 1 / $0.scale, Float($0.zeroPoint))] } ?? [])
        primitive = try problem.makePrimitive(bias != nil, destinationType, attributes)

        let chosenWeights = primitive.memoryDescriptor(for: DNNL.argWeights)
        if chosenWeights.equals(problem.userWeights) {
            self.weights = weights
        } else {
            self.weights = Tensor(uninitialized: .uint8, shape: [chosenWeights.byteCount])
            try Primitive(reorderFrom: problem.userWeights, to: chosenWeights)
                .execute([(DNNL.argSource, weights.rawPointer), (DNNL.argDestination, self.weights.rawPointer)])
        }
        self.bias = try bias.map { bias in
            guard bias.dtype == .float32, bias.count == problem.channels else {
                throw MPQError.shapeMismatch(
                    "int8 \(node.opType) takes a float32 bias of \(problem.channels) values, got \(bias.dtype) \(bias.shape)")
            }
            let values = bias.scalars(as: Float.self)
            return Tensor(shape: problem.biasDims, scalars: outputScales.indices.map { problem.beta * values[$0] / outputScales[$0] })
        }

        let rowMajorSource = try MemoryDescriptor(plain: problem.sourceDims, dnnl_u8)
        let chosenSource = primitive.memoryDescriptor(for: DNNL.argSource)
        sourceLayout = chosenSource
        toSourceLayout = chosenSource.equals(rowMajorSource) ? nil : try Primitive(reorderFrom: rowMajorSource, to: chosenSource)
        // Only dense layouts: quantizing padding would feed garbage codes to the kernel.
        let count = inputShape.reduce(1, *)
        sourceLayoutInFloat32 = toSourceLayout != nil && chosenSource.byteCount == count ? chosenSource.with(dataType: dnnl_f32) : nil
        let rowMajorOutput = try MemoryDescriptor(plain: problem.destinationDims, destinationType)
        let chosenOutput = primitive.memoryDescriptor(for: DNNL.argDestination)
        let outputIsRowMajor = chosenOutput.equals(rowMajorOutput)
        toRowMajorOutput = outputIsRowMajor ? nil : try Primitive(reorderFrom: chosenOutput, to: rowMajorOutput)
        outputLayout = outputIsRowMajor ? nil : DNNLLayout(chosenOutput, dims: problem.outputShape)
        fromRowMajorOutput = outputIsRowMajor || !postOps.contains(.sum)
            ? nil : try Primitive(reorderFrom: rowMajorOutput, to: chosenOutput)

        quantizer = try PerTensorQuantizer(input, count: inputShape.reduce(1, *))
        opType = node.opType
        self.inputShape = inputShape
        outputShape = problem.outputShape
        self.input = input
        self.postOps = postOps
        outputQuantization = output
        appliedPostOps = applied
    }

    /// Whether a Relu or Clip before requantizing with `output` changes no code:
    /// the codes of its bounds are the saturation limits 0 and 255 (a ReLU6
    /// followed by a quantizer calibrated on [0, 6] clips for free).
    static func isRedundant(_ postOp: PostOp, before output: UInt8Quantization) -> Bool {
        func code(_ value: Float) -> Float { (value / output.scale).rounded(.toNearestOrEven) + Float(output.zeroPoint) }
        switch postOp {
        case .relu: return code(0) <= 0
        case let .clip(low, high): return code(low) <= 0 && code(high) >= 255
        default: return false
        }
    }

    /// The float32 output for `x`: float32 activations, which are quantized
    /// first, or their uint8 codes. `residual` (float32, output shape) is what
    /// a `.sum` post-op adds. The output is row-major unless `keepLayout` is
    /// set, when it stays in `outputLayout` (for a kernel that takes it as is:
    /// another Int8Kernel or a float convolution).
    public func run(_ x: Tensor, residual: Tensor? = nil, keepLayout: Bool = false, context: ExecutionContext) throws -> Tensor {
        guard x.shape == inputShape else {
            throw MPQError.shapeMismatch("int8 \(opType) was built for input \(inputShape), got \(x.shape)")
        }
        let source: Tensor
        if x.dtype == .uint8, let layout = x.opaqueLayout as? DNNLLayout, layout.descriptor.equals(sourceLayout) {
            // Codes from a kernel emitting this layout.
            source = x
        } else if x.dtype == .float32, let layout = x.opaqueLayout as? DNNLLayout, let inFloat32 = sourceLayoutInFloat32,
           layout.descriptor.equals(inFloat32) {
            // Already in the source layout: quantize element by element, layouts match.
            source = context.allocate(.uint8, x.shape)
            try quantizer.run(x, into: source)
        } else {
            let codes: Tensor
            switch x.dtype {
            case .float32:
                codes = context.allocate(.uint8, x.shape)
                try quantizer.run(x.rowMajor(), into: codes)
            case .uint8: codes = try x.rowMajor()
            default: throw MPQError.typeMismatch("int8 \(opType) takes float32 or uint8 input, got \(x.dtype)")
            }
            if let toSourceLayout {
                source = context.allocate(.uint8, [toSourceLayout.memoryDescriptor(for: DNNL.argDestination).byteCount])
                try toSourceLayout.execute([(DNNL.argSource, codes.rawPointer), (DNNL.argDestination, source.rawPointer)])
            } else {
                source = codes
            }
        }
        let outputType: DataType = outputQuantization == nil ? .float32 : .uint8
        let keep = (keepLayout || outputQuantization != nil) && outputLayout != nil
        let output = keep ? Tensor(dtype: outputType, shape: outputShape, storage: TensorStorage(
                                byteCount: primitive.memoryDescriptor(for: DNNL.argDestination).byteCount), opaqueLayout: outputLayout)
            : context.allocate(outputType, outputShape)
        let destination = keep ? output
            : toRowMajorOutput.map { context.allocate(.uint8, [$0.memoryDescriptor(for: DNNL.argSource).byteCount]) } ?? output
        if postOps.contains(.sum) {
            guard let residual, residual.dtype == .float32, residual.shape == outputShape else {
                throw MPQError.shapeMismatch(
                    "the .sum post-op needs a float32 residual of shape \(outputShape), got \(residual.map(\.description) ?? "none")")
            }
            let rowMajor = try residual.rowMajor()
            if let fromRowMajorOutput {
                try fromRowMajorOutput.execute([(DNNL.argSource, rowMajor.rawPointer), (DNNL.argDestination, destination.rawPointer)])
            } else {
                destination.rawPointer.copyMemory(from: rowMajor.rawPointer, byteCount: output.count * 4)
            }
        } else if residual != nil {
            throw MPQError.invalidInput("int8 \(opType) got a residual but has no .sum post-op")
        }
        var arguments = [(DNNL.argSource, source.rawPointer), (DNNL.argWeights, weights.rawPointer),
                         (DNNL.argDestination, destination.rawPointer)]
        if let bias { arguments.append((DNNL.argBias, bias.rawPointer)) }
        try primitive.execute(arguments)
        if !keep, let toRowMajorOutput {
            try toRowMajorOutput.execute([(DNNL.argSource, destination.rawPointer), (DNNL.argDestination, output.rawPointer)])
        }
        return output
    }

    /// Checks that weight codes are int8 within `bits` and that there is one positive scale per output channel.
    private static func validate(weights: Tensor, scales: [Float], channels: Int, bits: Int) throws {
        guard weights.dtype == .int8 else { throw MPQError.typeMismatch("int8 weights must be int8 codes, got \(weights.dtype)") }
        guard (2...8).contains(bits) else { throw MPQError.invalidInput("int8 weight codes span 2 to 8 bits, not \(bits)") }
        guard scales.count == channels, scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw MPQError.invalidInput("int8 weights need \(channels) finite positive scales, got \(scales.count)")
        }
        let low = Int8(-(1 << (bits - 1))), high = Int8((1 << (bits - 1)) - 1)
        let codes = weights.pointer(as: Int8.self)
        for i in 0..<weights.count where codes[i] < low || codes[i] > high {
            throw MPQError.invalidInput("int8 weight code \(codes[i]) at \(i) is outside the \(bits)-bit range [\(low), \(high)]")
        }
    }

    /// One problem in oneDNN's terms.
    private struct Problem {
        /// Output channels: Conv O, MatMul / Gemm N.
        var channels: Int
        var sourceDims: [Int]
        var destinationDims: [Int]
        var biasDims: [Int]
        var outputShape: [Int]
        /// The ONNX weight codes as oneDNN sees them.
        var userWeights: MemoryDescriptor
        /// Gemm's factors on the product and on C.
        var alpha: Float = 1
        var beta: Float = 1
        /// Creates the primitive (with or without bias) under the given attributes.
        var makePrimitive: (_ hasBias: Bool, _ destinationType: dnnl_data_type_t, _ attributes: PrimitiveAttributes) throws -> Primitive

        /// An ONNX Conv: weights [O, I/G, k...] are oneDNN's [G, O/G, I/G, k...] when grouped.
        static func convolution(_ node: Node, input: [Int], weights: [Int]) throws -> Problem {
            let group = try node.int("group", default: 1)
            guard input.count >= 3, input.count <= 5, weights.count == input.count, group >= 1,
                  input[1] == weights[1] * group, weights[0] % group == 0 else {
                throw MPQError.shapeMismatch("int8 Conv input \(input) does not match weights \(weights) (group \(group))")
            }
            let kernel = try node.ints("kernel_shape") ?? Array(weights[2...])
            guard kernel == Array(weights[2...]) else {
                throw MPQError.shapeMismatch("Conv kernel_shape \(kernel) differs from the weights \(weights)")
            }
            let g = try WindowGeometry(node: node, spatial: Array(input[2...]), kernel: kernel)
            let output = [input[0], weights[0]] + g.outputSize(Array(input[2...]))
            guard output.allSatisfy({ $0 > 0 }) else { throw MPQError.shapeMismatch("int8 Conv output would be empty for input \(input)") }
            let weightDims = group == 1 ? weights : [group, weights[0] / group] + weights[1...]
            return Problem(channels: weights[0], sourceDims: input, destinationDims: output, biasDims: [weights[0]],
                           outputShape: output, userWeights: try MemoryDescriptor(plain: weightDims, dnnl_s8)) { hasBias, destinationType, attributes in
                var source = try MemoryDescriptor(input, dnnl_u8, tag: dnnl_format_tag_any).raw
                var weights = try MemoryDescriptor(weightDims, dnnl_s8, tag: dnnl_format_tag_any).raw
                var destination = try MemoryDescriptor(output, destinationType, tag: dnnl_format_tag_any).raw
                var bias = try MemoryDescriptor(plain: [output[1]]).raw
                var desc = dnnl_convolution_desc_t()
                try DNNL.check(withUnsafeMutablePointer(to: &bias) { bias in
                    dnnl_dilated_convolution_forward_desc_init(
                        &desc, dnnl_forward_inference, dnnl_convolution_direct, &source, &weights,
                        hasBias ? bias : nil, &destination, g.strides.map(Int64.init), g.dilations.map { Int64($0 - 1) },
                        g.padsBegin.map(Int64.init), g.padsEnd.map(Int64.init))
                }, "int8 convolution descriptor")
                return try Primitive(&desc, attributes: attributes, name: "int8 convolution")
            }
        }

        /// ONNX MatMul ([..., M, K] x [K, N]) or Gemm ([M, K] x B): one 2-D
        /// product over all rows of the input.
        static func matrixProduct(_ node: Node, input: [Int], weights: [Int]) throws -> Problem {
            let gemm = node.opType == "Gemm"
            let transB = gemm ? try node.int("transB", default: 0) != 0 : false
            if gemm, try node.int("transA", default: 0) != 0 { throw unsupported(node, "int8 Gemm needs transA = 0") }
            guard weights.count == 2, gemm ? input.count == 2 : !input.isEmpty else {
                throw MPQError.shapeMismatch(
                    "int8 \(node.opType) takes 2-D weights and \(gemm ? "2-D" : "non-scalar") input, got \(input) and \(weights)")
            }
            let (k, n) = transB ? (weights[1], weights[0]) : (weights[0], weights[1])
            guard input[input.count - 1] == k else {
                throw MPQError.shapeMismatch("int8 \(node.opType) inner dims differ: \(input) x \(weights)\(transB ? " (transB)" : "")")
            }
            let alpha = gemm ? try node.float("alpha", default: 1) : 1
            guard alpha.isFinite, alpha != 0 else { throw unsupported(node, "int8 Gemm needs a finite, nonzero alpha") }
            let rows = input.dropLast().reduce(1, *)
            let weightStrides = transB ? [1, k] : [n, 1]
            return Problem(channels: n, sourceDims: [rows, k], destinationDims: [rows, n], biasDims: [1, n],
                           outputShape: input.dropLast() + [n], userWeights: try MemoryDescriptor([k, n], dnnl_s8, strides: weightStrides),
                           alpha: alpha,
                           beta: gemm ? try node.float("beta", default: 1) : 1) { hasBias, destinationType, attributes in
                var source = try MemoryDescriptor(plain: [rows, k], dnnl_u8).raw
                var weights = try MemoryDescriptor([k, n], dnnl_s8, tag: dnnl_format_tag_any).raw
                var destination = try MemoryDescriptor(plain: [rows, n], destinationType).raw
                var bias = try MemoryDescriptor(plain: [1, n]).raw
                var desc = dnnl_matmul_desc_t()
                try DNNL.check(withUnsafeMutablePointer(to: &bias) { bias in
                    dnnl_matmul_desc_init(&desc, &source, &weights, hasBias ? bias : nil, &destination)
                }, "int8 matmul descriptor")
                return try Primitive(&desc, attributes: attributes, name: "int8 matmul")
            }
        }
    }
}

/// A residual Add of two uint8-quantized activations, computed from their
/// codes as one oneDNN binary primitive:
///
///     y = s_a * (q_a - z_a) + s_b * (q_b - z_b)
///
/// (the simulation's Add of the two dequantized inputs) emitted as float32,
/// or requantized to uint8 codes `clamp(rint(y / s_y) + z_y, 0, 255)`: the
/// input scales as the primitive's source scales (divided by s_y), the zero
/// points and z_y folded into one eltwise linear post-op, rounding and
/// saturation by oneDNN's conversion to u8. Codes can differ by one from the
/// simulation's where `y / s_y` lies within float rounding of a tie.
///
/// Inputs may come in any oneDNN layout (e.g. the channels-last codes of int8
/// convolutions); the output takes the first input's layout, and the second
/// is reordered to it when it differs.
public final class Int8AddKernel {
    /// Shape of both inputs and of the output (no broadcasting).
    public let shape: [Int]
    /// Quantization of the first input's codes (s_a, z_a).
    public let first: UInt8Quantization
    /// Quantization of the second input's codes (s_b, z_b).
    public let second: UInt8Quantization
    /// Requantization of the sum; nil: float32 output.
    public let output: UInt8Quantization?

    private struct Built {
        var layout: MemoryDescriptor
        var primitive: Primitive
        var outputLayout: DNNLLayout?
    }
    private var built: Built?
    /// The second input's layout to the first's, when they differ (keyed by their descriptors).
    private var toFirstLayout: (from: MemoryDescriptor, to: MemoryDescriptor, reorder: Primitive)?

    /// An Add of two `shape`-shaped code tensors; `output` nil gives float32 output.
    /// The primitive is built on first run. Throws for an empty or non-positive shape.
    public init(shape: [Int], first: UInt8Quantization, second: UInt8Quantization, output: UInt8Quantization?) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else { throw MPQError.shapeMismatch("int8 Add needs a non-empty shape, got \(shape)") }
        self.shape = shape
        self.first = first
        self.second = second
        self.output = output
    }

    /// oneDNN's implementation of the last primitive built ("jit:uni" and the like; "ref" is slow, and
    /// for float32 output replaced by a plain loop).
    public var implementation: String { built?.primitive.implementation ?? "not built" }

    /// The sum of two uint8 code tensors of `shape`, in the first one's layout.
    public func run(_ a: Tensor, _ b: Tensor, context: ExecutionContext) throws -> Tensor {
        guard a.dtype == .uint8, b.dtype == .uint8, a.shape == shape, b.shape == shape else {
            throw MPQError.typeMismatch("int8 Add takes two uint8 tensors of shape \(shape), got \(a.dtype) \(a.shape) and \(b.dtype) \(b.shape)")
        }
        let plain = try MemoryDescriptor(plain: shape, dnnl_u8)
        let layoutA = (a.opaqueLayout as? DNNLLayout)?.descriptor ?? plain
        let layoutB = (b.opaqueLayout as? DNNLLayout)?.descriptor ?? plain
        var second = b
        if !layoutB.equals(layoutA) {
            if toFirstLayout == nil || !toFirstLayout!.from.equals(layoutB) || !toFirstLayout!.to.equals(layoutA) {
                toFirstLayout = (layoutB, layoutA, try Primitive(reorderFrom: layoutB, to: layoutA))
            }
            second = context.allocate(.uint8, [layoutA.byteCount])
            try toFirstLayout!.reorder.execute([(DNNL.argSource, b.rawPointer), (DNNL.argDestination, second.rawPointer)])
        }
        if built == nil || !built!.layout.equals(layoutA) { built = try build(layoutA, isPlain: layoutA.equals(plain)) }
        let kernel = built!
        if output == nil && kernel.primitive.implementation.hasPrefix("ref") { return try realSum(a, b, context: context) }
        let outputType: DataType = output == nil ? .float32 : .uint8
        let result: Tensor
        if let layout = kernel.outputLayout {
            result = Tensor(dtype: outputType, shape: shape,
                            storage: TensorStorage(byteCount: layout.descriptor.byteCount), opaqueLayout: layout)
        } else {
            result = context.allocate(outputType, shape)
        }
        try kernel.primitive.execute([(DNNL.argSource, a.rawPointer), (DNNL.argSource1, second.rawPointer),
                                      (DNNL.argDestination, result.rawPointer)])
        return result
    }

    /// The float32 sum s_a (a - z_a) + s_b (b - z_b), row-major, computed here: oneDNN 2.6 has no
    /// jit kernel for u8 + u8 -> f32 in some layouts (channels-last), and its reference kernel takes
    /// ~100x the time of the layers around the Add, which a deployed runtime would not pay.
    private func realSum(_ a: Tensor, _ b: Tensor, context: ExecutionContext) throws -> Tensor {
        let x = try a.rowMajor(), y = try b.rowMajor()
        let result = context.allocate(.float32, shape)
        let (scaleA, zeroA) = (first.scale, Float(first.zeroPoint)), (scaleB, zeroB) = (second.scale, Float(second.zeroPoint))
        let codesA = x.rawPointer.assumingMemoryBound(to: UInt8.self), codesB = y.rawPointer.assumingMemoryBound(to: UInt8.self)
        let sum = result.rawPointer.assumingMemoryBound(to: Float.self)
        for i in 0..<result.count {
            sum[i] = scaleA * (Float(codesA[i]) - zeroA) + scaleB * (Float(codesB[i]) - zeroB)
        }
        return result
    }

    private func build(_ layout: MemoryDescriptor, isPlain: Bool) throws -> Built {
        let divisor = output?.scale ?? 1
        let offset = -(first.scale * Float(first.zeroPoint) + second.scale * Float(second.zeroPoint)) / divisor
            + Float(output?.zeroPoint ?? 0)
        let attributes = try PrimitiveAttributes()
        try attributes.setScale(first.scale / divisor, argument: DNNL.argSource)
        try attributes.setScale(second.scale / divisor, argument: DNNL.argSource1)
        try attributes.setEltwisePostOps([(dnnl_eltwise_linear, 1, offset)])
        let destinationLayout = layout.with(dataType: output == nil ? dnnl_f32 : dnnl_u8)
        var source0 = layout.raw, source1 = layout.raw, destination = destinationLayout.raw
        var desc = dnnl_binary_desc_t()
        try DNNL.check(dnnl_binary_desc_init(&desc, dnnl_binary_add, &source0, &source1, &destination), "int8 add descriptor")
        let primitive = try Primitive(&desc, attributes: attributes, name: "int8 add")
        return Built(layout: layout, primitive: primitive, outputLayout: isPlain ? nil : DNNLLayout(destinationLayout, dims: shape))
    }
}

/// Milliseconds per run of one problem as the float32 operator and as an `Int8Kernel`.
public struct Int8Timing: Sendable {
    /// The float32 operator.
    public var float32: Double
    /// From float32 input, quantizing it included.
    public var int8: Double
    /// From uint8 codes (the input already quantized, e.g. by the layer before).
    public var int8FromCodes: Double
    /// The int8 kernel's oneDNN implementation.
    public var implementation: String
}

extension Int8Kernel {
    /// Builds the float32 operator and the int8 kernel once for `node` (Conv,
    /// MatMul or Gemm, no post-ops) on made-up data, with weight codes of this
    /// CPU's exact width, and times each (fastest of `repetitions` runs after a warm-up):
    /// what `mpq bench` reports as the gain of int8 execution.
    ///
    /// - Parameters:
    ///   - node: the Conv, MatMul or Gemm node whose op type and attributes are timed.
    ///   - inputShape: the float32 input shape.
    ///   - weightShape: the ONNX weight shape (Conv [O, I/G, k...], MatMul [K, N], Gemm B).
    ///   - threads: oneDNN and Swift worker threads.
    ///   - repetitions: timed runs of each after the warm-up; the fastest counts.
    public static func timeAgainstFloat32(node: Node, inputShape: [Int], weightShape: [Int], threads: Int,
                                          repetitions: Int = 10) throws -> Int8Timing {
        guard weightShape.count >= 2 else {
            throw MPQError.shapeMismatch("int8 \(node.opType) weights must have rank >= 2, got \(weightShape)")
        }
        // Scattered values (timing does not depend on them), cheap to make even in debug builds.
        func pattern(_ i: Int, _ period: Int) -> Int { i &* 7919 % period }
        let bits = CPUFeatures.current.int8WeightBits
        let codes = Tensor(shape: weightShape, scalars: (0..<weightShape.reduce(1, *)).map {
            Int8(pattern($0, 1 << bits) - (1 << (bits - 1)))
        })
        let weightScale: Float = 0.01
        let weights = Tensor(shape: weightShape, scalars: codes.scalars(as: Int8.self).map { weightScale * Float($0) })
        let outputsInRows = try node.opType == "Conv" || node.opType == "Gemm" && node.int("transB", default: 0) != 0
        let channels = outputsInRows ? weightShape[0] : weightShape[1]
        let bias = node.opType == "MatMul" ? nil : Tensor(shape: [channels], scalars: (0..<channels).map { Float(pattern($0, 64)) / 32 - 1 })
        let x = Tensor(shape: inputShape, scalars: (0..<inputShape.reduce(1, *)).map { Float(pattern($0, 4096)) / 1024 - 1 })

        // oneDNN sizes its work split when a primitive is created: set the threads first.
        omp_set_num_threads(Int32(threads))
        let context = ExecutionContext(threads: threads)
        let kernel = try Int8Kernel(node: node, inputShape: inputShape, weights: codes,
                                    weightScales: Array(repeating: weightScale, count: channels), bias: bias,
                                    input: UInt8Quantization(scale: 4 / 255, zeroPoint: 64))
        let float32 = try OperatorRegistry.makeOperator(for: node, opset: 17)
        float32.bindConstants([nil, weights, bias])
        let inputCodes = try kernel.input.quantize(x, context: context)
        return Int8Timing(
            float32: try fastestMilliseconds(repetitions) { _ = try float32.run([x, weights, bias], context: context) },
            int8: try fastestMilliseconds(repetitions) { _ = try kernel.run(x, context: context) },
            int8FromCodes: try fastestMilliseconds(repetitions) { _ = try kernel.run(inputCodes, context: context) },
            implementation: kernel.implementation)
    }

    /// The fastest of `repetitions` calls after three untimed ones: the run
    /// least disturbed by other work on a shared machine.
    private static func fastestMilliseconds(_ repetitions: Int, _ body: () throws -> Void) rethrows -> Double {
        for _ in 0..<3 { try body() }
        var fastest = Double.infinity
        for _ in 0..<max(repetitions, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return fastest
    }
}
