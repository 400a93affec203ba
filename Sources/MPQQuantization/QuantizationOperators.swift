import Foundation
import MPQGraph
import MPQRuntime

/// Graph operators of mpq's own domain ("mpq") that carry quantization in
/// the graph itself, so quantized graphs run as ordinary plans: with operator
/// fusion, buffer reuse and sub-graph extraction.
///
/// - `FakeQuantize(x) -> y`: quantize-dequantize with one quantizer's
///   parameters (`Tensor.fakeQuantized`, i.e. QuantizeLinear then
///   DequantizeLinear). Attributes: `format` (a `QuantizationFormat` name),
///   `scales`, `zero_points`, `axis` and `block_size` (per-channel / per-group;
///   `axis` absent for per-tensor).
/// - `QuantizedConv`, `QuantizedMatMul`, `QuantizedGemm (x, weight codes,
///   bias?) -> y`: the float op run by oneDNN's u8 x s8 kernel (`Int8Kernel`):
///   float32 `x` is quantized to uint8 with `input_scale` / `input_zero_point`,
///   the int8 weight codes have per-output-channel `weight_scales` (zero point
///   0); the other attributes are the float op's.
///
/// The runtime knows these operators only through `OperatorRegistry`: the
/// first use of `domain` (every node of it is built with it) registers them,
/// with int8 chaining as the domain's plan rewrite.
enum QuantizationOperators {
    /// The node domain of the quantization operators; reading it registers them.
    static var domain: String {
        _ = registration
        return name
    }

    private static let name = "mpq"

    private static let registration: Void = OperatorRegistry.register(
        domain: name, factories: factories, planRewrite: { try Int8Chaining.chain($0, outputs: $1, specs: $2) })

    private static let factories: [String: OperatorFactory] = [
        "FakeQuantize": { node, _ in try FakeQuantizeOperator(node: node) },
        "QuantizedConv": { node, _ in try QuantizedLinearOperator(node: node) },
        "QuantizedMatMul": { node, _ in try QuantizedLinearOperator(node: node) },
        "QuantizedGemm": { node, _ in try QuantizedLinearOperator(node: node) },
    ]
}

extension Node {
    /// A `FakeQuantize` node applying `parameters` to `input`.
    static func fakeQuantize(_ input: String, output: String, parameters p: QuantizationParameters) -> Node {
        var attributes: [String: Attribute] = [
            "format": .string(p.format.name), "scales": .floats(p.scales), "zero_points": .ints(p.zeroPoints),
        ]
        switch p.granularity {
        case .perTensor: break
        case .perChannel(let axis): attributes["axis"] = .int(axis)
        case let .perGroup(axis, size): attributes["axis"] = .int(axis); attributes["block_size"] = .int(size)
        }
        return Node(name: output + "/FakeQuantize", opType: "FakeQuantize", domain: QuantizationOperators.domain,
                    inputs: [input], outputs: [output], attributes: attributes)
    }
}

extension QuantizationParameters {
    /// The parameters a `FakeQuantize` node carries.
    init(fakeQuantizeNode node: Node) throws {
        let name = try node.string("format", default: "")
        guard !name.isEmpty, let scales = try node.floats("scales"),
              let zeroPoints = try node.ints("zero_points") else {
            throw unsupported(node, "FakeQuantize needs 'format', 'scales' and 'zero_points' attributes")
        }
        let granularity: QuantizationGranularity
        switch (try node.int("axis"), try node.int("block_size")) {
        case (nil, nil): granularity = .perTensor
        case (let axis?, nil): granularity = .perChannel(axis: axis)
        case let (axis?, size?): granularity = .perGroup(axis: axis, size: size)
        case (nil, _?): throw unsupported(node, "FakeQuantize 'block_size' needs an 'axis'")
        }
        self.init(format: try QuantizationFormat(parsing: name), granularity: granularity,
                  scales: scales, zeroPoints: zeroPoints)
    }
}

/// Quantize-dequantize of one value (see `QuantizationOperators`); per-tensor
/// integer quantizers run as one oneDNN primitive per element count.
final class FakeQuantizeOperator: Operator {
    let parameters: QuantizationParameters
    private var kernels: [Int: PerTensorQuantizer] = [:]

    init(node: Node) throws {
        parameters = try QuantizationParameters(fakeQuantizeNode: node)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        guard let x = inputs.first ?? nil else { throw MPQError.invalidModel("FakeQuantize is missing its input") }
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("FakeQuantize takes float32, got \(x.dtype)") }
        if let shape = x.shape { try parameters.validate(for: shape) }
        return [ValueSpec(dtype: .float32, shape: x.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        guard let x = inputs.first ?? nil else { throw MPQError.invalidModel("FakeQuantize is missing its input") }
        let p = parameters
        guard p.format.isInteger, p.granularity == .perTensor, x.dtype == .float32 else {
            return [try x.fakeQuantized(p, context: context)]
        }
        if kernels[x.count] == nil {
            try p.validate(for: [])
            kernels[x.count] = try PerTensorQuantizer(scale: p.scales[0], zeroPoint: p.zeroPoints[0],
                                                      output: .dequantized(qmin: p.format.qmin, qmax: p.format.qmax), count: x.count)
        }
        let result = context.allocate(.float32, x.shape)
        try kernels[x.count]!.run(x, into: result)
        return [result]
    }
}

/// A Conv, MatMul or Gemm on uint8 activations and int8 weight codes (see
/// `QuantizationOperators`); one `Int8Kernel` per input shape.
final class QuantizedLinearOperator: Operator {
    let node: Node
    /// The float op's node: its op type and attributes describe the problem.
    let floatNode: Node
    let input: UInt8Quantization
    let weightScales: [Float]
    /// Post-ops fused by the graph optimizer; with `.sum` the residual is input 3.
    var postOps: [PostOp] = []
    /// Set by the graph optimizer when every reader takes the kernel's own
    /// output layout (channels-last for convolutions): no reorder to row-major.
    var emitsOpaqueOutput = false
    /// Set by the graph optimizer (`Int8Chaining`) when every reader takes
    /// uint8 codes of this quantization: the kernel requantizes its output
    /// and emits codes in its own layout.
    var outputQuantization: UInt8Quantization?
    var acceptsOpaqueLayouts: Bool { true }
    private let shapeInference: Operator
    private var kernels: [[Int]: Int8Kernel] = [:]
    private var weights: Tensor?
    private var bias: Tensor?

    init(node: Node) throws {
        self.node = node
        var floatNode = node
        floatNode.opType = String(node.opType.dropFirst("Quantized".count))
        floatNode.domain = ""
        for key in ["input_scale", "input_zero_point", "weight_scales"] { floatNode.attributes[key] = nil }
        self.floatNode = floatNode
        guard let scales = try node.floats("weight_scales") else { throw unsupported(node, "needs 'weight_scales'") }
        weightScales = scales
        input = try UInt8Quantization(scale: try node.float("input_scale", default: 0),
                                      zeroPoint: try node.int("input_zero_point", default: 0))
        shapeInference = try OperatorRegistry.makeOperator(for: floatNode, opset: 21)
    }

    var opType: String { floatNode.opType }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let weights = try inputs.required(1, node)
        guard weights.dtype == .int8 else { throw MPQError.typeMismatch("\(node.opType) takes int8 weight codes, got \(weights.dtype)") }
        var floatInputs = inputs
        floatInputs[1] = ValueSpec(dtype: .float32, shape: weights.shape)
        if let x = inputs.first ?? nil, x.dtype == .uint8 { floatInputs[0] = ValueSpec(dtype: .float32, shape: x.shape) }
        let outputs = try shapeInference.inferOutputs(Array(floatInputs.prefix(3)))
        guard outputQuantization != nil else { return outputs }
        return outputs.map { ValueSpec(dtype: .uint8, shape: $0.shape) }
    }

    func bindConstants(_ constants: [Tensor?]) {
        weights = constants.count > 1 ? constants[1] : nil
        bias = constants.count > 2 ? constants[2] : nil
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        let kernel: Int8Kernel
        if let cached = kernels[x.shape] {
            kernel = cached
        } else {
            guard let weights = weights ?? inputs.optional(1) else { throw MPQError.invalidModel("\(node.opType) node '\(node.name)' has no weights") }
            let bias = bias ?? inputs.optional(2)
            kernel = try Int8Kernel(node: floatNode, inputShape: x.shape, weights: weights, weightScales: weightScales,
                                    bias: bias, input: input, postOps: postOps, output: outputQuantization)
            kernels[x.shape] = kernel
        }
        let residual = postOps.contains(.sum) ? try inputs.required(3, node) : nil
        return [try kernel.run(x, residual: residual, keepLayout: emitsOpaqueOutput, context: context)]
    }
}

/// A residual Add of two activations carried as uint8 codes (made by
/// `Int8Chaining` from an Add of two quantized values): `Int8AddKernel`,
/// emitting the codes of `output` or, without it, float32.
final class QuantizedAddOperator: Operator {
    let node: Node
    let first: UInt8Quantization
    let second: UInt8Quantization
    let output: UInt8Quantization?
    var acceptsOpaqueLayouts: Bool { true }
    private var kernels: [[Int]: Int8AddKernel] = [:]

    init(node: Node, first: UInt8Quantization, second: UInt8Quantization, output: UInt8Quantization?) {
        self.node = node
        self.first = first
        self.second = second
        self.output = output
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let a = try inputs.required(0, node), b = try inputs.required(1, node)
        guard a.dtype == .uint8, b.dtype == .uint8 else {
            throw MPQError.typeMismatch("int8 Add takes uint8 codes, got \(a.dtype) and \(b.dtype)")
        }
        if let x = a.shape, let y = b.shape, x != y { throw MPQError.shapeMismatch("int8 Add operands differ in shape: \(x) and \(y)") }
        return [ValueSpec(dtype: output == nil ? .float32 : .uint8, shape: a.shape ?? b.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try inputs.required(0, node), b = try inputs.required(1, node)
        let kernel = try kernels[a.shape] ?? Int8AddKernel(shape: a.shape, first: first, second: second, output: output)
        kernels[a.shape] = kernel
        return [try kernel.run(a, b, context: context)]
    }
}

extension QuantizedLinearOperator: PostOpFusing, OpaqueLayoutEmitting, OpaqueLayoutReading {
    var fusedOpType: String { opType }

    /// A residual sum is fused only into convolutions (oneDNN's int8 inner products take no sum post-op here).
    func fusing(_ postOp: PostOp, node: Node) throws -> Operator? {
        guard postOp != .sum || opType == "Conv" else { return nil }
        let fused = try QuantizedLinearOperator(node: node)
        fused.postOps = postOps + [postOp]
        return fused
    }

    func addingBias(node: Node) throws -> Operator? { try QuantizedLinearOperator(node: node) }

    /// The data input and a fused residual arrive in another int8 layer's own layout.
    func readsOpaqueLayout(at slot: Int, from producer: Operator) -> Bool {
        (slot == 0 || slot == 3) && producer is QuantizedLinearOperator
    }
}
