import CDNNL
import Foundation
import MPQGraph

/// Operators of this family, by op type.
let normalizationOperators: [String: OperatorFactory] = [
    "Softmax": { node, opset in try SoftmaxOperator(node: node, opset: opset, logarithmic: false) },
    "LogSoftmax": { node, opset in try SoftmaxOperator(node: node, opset: opset, logarithmic: true) },
    "LayerNormalization": { node, _ in try LayerNormalizationOperator(node: node) },
    "BatchNormalization": { node, _ in try BatchNormalizationOperator(node: node) },
    "InstanceNormalization": { node, _ in try InstanceNormalizationOperator(node: node) },
]

/// Shared checks for operators whose output has the input's type and shape.
private func sameAsFloatInput(_ inputs: [ValueSpec?], _ node: Node) throws -> [ValueSpec] {
    let x = try inputs.required(0, node)
    guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
    return [ValueSpec(dtype: .float32, shape: x.shape)]
}

/// Softmax / LogSoftmax on oneDNN. From opset 13 along one axis (default -1);
/// before 13 over the input flattened to 2-D at `axis` (default 1).
final class SoftmaxOperator: Operator {
    let node: Node
    let axis: Int
    let flattens: Bool
    let logarithmic: Bool
    private var primitives: [[Int]: Primitive] = [:]

    init(node: Node, opset: Int, logarithmic: Bool) throws {
        self.node = node
        flattens = opset < 13
        axis = try node.int("axis", default: flattens ? 1 : -1)
        self.logarithmic = logarithmic
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] { try sameAsFloatInput(inputs, node) }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        let output = context.allocate(.float32, x.shape)
        if x.count == 0 { return [output] }
        let rank = max(x.rank, 1)
        let a = try normalizedAxis(axis, rank: rank, node: node)
        let dims: [Int], softmaxAxis: Int
        if flattens {
            dims = [x.shape[..<a].reduce(1, *), x.shape[a...].reduce(1, *)]
            softmaxAxis = 1
        } else {
            dims = x.shape.isEmpty ? [1] : x.shape
            softmaxAxis = a
        }
        if primitives[dims] == nil {
            var source = try MemoryDescriptor(plain: dims).raw
            var destination = source
            var desc = dnnl_softmax_v2_desc_t()
            try DNNL.check(dnnl_softmax_v2_forward_desc_init(
                &desc, dnnl_forward_inference, logarithmic ? dnnl_softmax_log : dnnl_softmax_accurate,
                &source, &destination, Int32(softmaxAxis)), "softmax descriptor")
            primitives[dims] = try Primitive(&desc, name: "softmax")
        }
        try primitives[dims]!.execute([(DNNL.argSource, x.rawPointer), (DNNL.argDestination, output.rawPointer)])
        return [output]
    }
}

/// LayerNormalization (opset 17): normalise over dims [axis, rank) with
/// scale and optional bias, on oneDNN's layer normalization.
final class LayerNormalizationOperator: Operator {
    let node: Node
    let axis: Int
    let epsilon: Float
    private var primitives: [[Int]: Primitive] = [:]

    init(node: Node) throws {
        self.node = node
        axis = try node.int("axis", default: -1)
        epsilon = try node.float("epsilon", default: 1e-5)
        if node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
            throw unsupported(node, "the Mean and InvStdDev outputs are not supported")
        }
        if try node.int("stash_type", default: 1) != 1 {
            throw unsupported(node, "stash_type other than float32 is not supported")
        }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] { try sameAsFloatInput(inputs, node) }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node), scale = try inputs.required(1, node)
        let bias = inputs.optional(2)
        guard x.dtype == .float32, scale.dtype == .float32, bias?.dtype ?? .float32 == .float32 else {
            throw MPQError.typeMismatch("LayerNormalization takes float32")
        }
        let a = try normalizedAxis(axis, rank: x.rank, node: node)
        let rows = x.shape[..<a].reduce(1, *), columns = x.shape[a...].reduce(1, *)
        // Scale and bias must cover the normalised dims (broadcast copies are made if smaller).
        let fullScale = try scale.broadcast(toCount: columns, shape: Array(x.shape[a...]))
        let fullBias = try bias?.broadcast(toCount: columns, shape: Array(x.shape[a...]))
        let output = context.allocate(.float32, x.shape)
        if x.count == 0 { return [output] }
        let key = [rows, columns, fullBias == nil ? 0 : 1]
        if primitives[key] == nil {
            var data = try MemoryDescriptor(plain: [rows, columns]).raw
            var desc = dnnl_layer_normalization_desc_t()
            var flags = dnnl_use_scale.rawValue
            if fullBias != nil { flags |= dnnl_use_shift.rawValue }
            try DNNL.check(dnnl_layer_normalization_forward_desc_init(
                &desc, dnnl_forward_inference, &data, nil, epsilon, flags), "layer normalization descriptor")
            primitives[key] = try Primitive(&desc, name: "layer normalization")
        }
        var arguments = [(DNNL.argSource, x.rawPointer), (DNNL.argDestination, output.rawPointer),
                         (DNNL.argScale, fullScale.rawPointer)]
        if let fullBias { arguments.append((DNNL.argShift, fullBias.rawPointer)) }
        try primitives[key]!.execute(arguments)
        return [output]
    }
}

extension Tensor {
    /// This float32 tensor when it has `count` elements, else its broadcast to `shape`.
    func broadcast(toCount count: Int, shape: [Int]) throws -> Tensor {
        if self.count == count { return self }
        let target = try broadcastShapes(self.shape, shape)
        guard target == shape else { throw MPQError.shapeMismatch("\(self.shape) does not broadcast to \(shape)") }
        let result = Tensor(uninitialized: .float32, shape: shape)
        let source = pointer(as: Float.self), destination = result.pointer(as: Float.self)
        let padded = Array(repeating: 1, count: shape.count - rank) + self.shape
        let sourceStrides = zip(contiguousStrides(padded), padded).map { $1 == 1 ? 0 : $0 }
        let targetStrides = contiguousStrides(shape)
        for i in 0..<count {
            var offset = 0, rest = i
            for axis in shape.indices {
                offset += (rest / targetStrides[axis]) * sourceStrides[axis]
                rest %= targetStrides[axis]
            }
            destination[i] = source[offset]
        }
        return result
    }
}

/// Per-channel affine normalisation y = a[c] * x + b[c] over [N, C, ...] (NCHW).
private func applyChannelAffine(_ x: Tensor, _ a: [Float], _ b: [Float], _ output: Tensor, context: ExecutionContext) {
    let channels = x.shape[1]
    let size = x.count / max(x.shape[0] * channels, 1)
    let source = x.pointer(as: Float.self), destination = output.pointer(as: Float.self)
    context.parallelFor(x.shape[0] * channels, minimumChunk: max(1, 65_536 / max(size, 1))) { range in
        for plane in range {
            let c = plane % channels
            let (scale, shift) = (a[c], b[c])
            let s = source + plane * size, d = destination + plane * size
            for i in 0..<size { d[i] = s[i] * scale + shift }
        }
    }
}

/// BatchNormalization in inference mode: y = scale * (x - mean) / sqrt(var + epsilon) + B.
final class BatchNormalizationOperator: Operator {
    let node: Node
    let epsilon: Float

    init(node: Node) throws {
        self.node = node
        epsilon = try node.float("epsilon", default: 1e-5)
        if try node.int("training_mode", default: 0) != 0 || node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
            throw unsupported(node, "training mode (running statistics outputs) is not supported")
        }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] { try sameAsFloatInput(inputs, node) }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        let parameters = try (1...4).map { try inputs.required($0, node) }
        guard x.dtype == .float32, x.rank >= 2, parameters.allSatisfy({ $0.dtype == .float32 && $0.count == x.shape[1] }) else {
            throw MPQError.shapeMismatch("BatchNormalization needs float32 [N, C, ...] input and four [C] parameters")
        }
        let (scale, shift, mean, variance) = (parameters[0].floats(), parameters[1].floats(), parameters[2].floats(), parameters[3].floats())
        let a = (0..<x.shape[1]).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
        let b = (0..<x.shape[1]).map { shift[$0] - mean[$0] * a[$0] }
        let output = context.allocate(.float32, x.shape)
        applyChannelAffine(x, a, b, output, context: context)
        return [output]
    }
}

/// InstanceNormalization: per (sample, channel) statistics over the spatial dims.
final class InstanceNormalizationOperator: Operator {
    let node: Node
    let epsilon: Float

    init(node: Node) throws {
        self.node = node
        epsilon = try node.float("epsilon", default: 1e-5)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] { try sameAsFloatInput(inputs, node) }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node), scale = try inputs.required(1, node), bias = try inputs.required(2, node)
        guard x.dtype == .float32, x.rank >= 3, scale.count == x.shape[1], bias.count == x.shape[1] else {
            throw MPQError.shapeMismatch("InstanceNormalization needs float32 [N, C, ...] input and [C] scale and bias")
        }
        let output = context.allocate(.float32, x.shape)
        let channels = x.shape[1], size = x.count / (x.shape[0] * channels)
        let source = x.pointer(as: Float.self), destination = output.pointer(as: Float.self)
        let gamma = scale.floats(), beta = bias.floats(), epsilon = self.epsilon
        context.parallelFor(x.shape[0] * channels, minimumChunk: max(1, 65_536 / max(size, 1))) { range in
            for plane in range {
                let s = source + plane * size, d = destination + plane * size
                var sum: Float = 0
                for i in 0..<size { sum += s[i] }
                let mean = sum / Float(size)
                var squares: Float = 0
                for i in 0..<size { squares += (s[i] - mean) * (s[i] - mean) }
                let a = gamma[plane % channels] / (squares / Float(size) + epsilon).squareRoot()
                let b = beta[plane % channels] - mean * a
                for i in 0..<size { d[i] = s[i] * a + b }
            }
        }
        return [output]
    }
}
