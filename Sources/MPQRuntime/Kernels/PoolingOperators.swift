import CDNNL
import MPQGraph

/// Operators of this family, by op type.
let poolingOperators: [String: OperatorFactory] = [
    "MaxPool": { node, _ in try PoolingOperator(node: node, maximum: true) },
    "AveragePool": { node, _ in try PoolingOperator(node: node, maximum: false) },
    "GlobalAveragePool": { node, _ in GlobalPoolingOperator(node: node, maximum: false) },
    "GlobalMaxPool": { node, _ in GlobalPoolingOperator(node: node, maximum: true) },
]

/// MaxPool and AveragePool (1-D to 3-D, strides, pads, auto_pad, dilations,
/// ceil_mode, count_include_pad) on oneDNN's pooling primitive.
final class PoolingOperator: Operator {
    let node: Node
    let maximum: Bool
    let kernel: [Int]
    let ceilMode: Bool
    let countIncludePad: Bool
    private var prepared: [[Int]: (Primitive, Primitive?, Primitive?, Int, Int, [Int])] = [:]

    init(node: Node, maximum: Bool) throws {
        self.node = node
        self.maximum = maximum
        guard let kernel = try node.ints("kernel_shape") else { throw unsupported(node, "kernel_shape is required") }
        self.kernel = kernel
        try WindowGeometry.validateAttributes(node, kernel: kernel)
        ceilMode = try node.int("ceil_mode", default: 0) != 0
        countIncludePad = try node.int("count_include_pad", default: 0) != 0
        if node.outputs.count > 1 && !node.outputs[1].isEmpty {
            throw unsupported(node, "the Indices output of MaxPool is not supported")
        }
        if try node.int("storage_order", default: 0) != 0 {
            throw unsupported(node, "storage_order = 1 is not supported")
        }
    }

    private func geometry(_ input: [Int]) throws -> (WindowGeometry, [Int]) {
        guard input.count >= 3, input.count <= 5, input.count - 2 == kernel.count else {
            throw MPQError.shapeMismatch("\(node.opType) with a \(kernel.count)-D kernel needs \(kernel.count + 2)-D input, got \(input)")
        }
        let g = try WindowGeometry(node: node, spatial: Array(input[2...]), kernel: kernel)
        try g.requireKernelFits(Array(input[2...]), node: node)
        // As ONNX Runtime: a window lying wholly in the padding has no element to pool.
        for axis in kernel.indices where g.padsBegin[axis] >= kernel[axis] || g.padsEnd[axis] >= kernel[axis] {
            throw MPQError.shapeMismatch(
                "\(node.opType) node '\(node.name)': pads \(g.padsBegin[axis]), \(g.padsEnd[axis]) on spatial axis \(axis) must be smaller than the kernel size \(kernel[axis])")
        }
        let spatial = g.outputSize(Array(input[2...]), ceilMode: ceilMode)
        guard spatial.allSatisfy({ $0 > 0 }) else { throw MPQError.shapeMismatch("\(node.opType) output would be empty for \(input)") }
        return (g, Array(input[..<2]) + spatial)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        return [ValueSpec(dtype: .float32, shape: try x.shape.map { try geometry($0).1 })]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        if prepared[x.shape] == nil { prepared[x.shape] = try prepare(x.shape) }
        let (primitive, sourceReorder, destinationReorder, sourceBytes, destinationBytes, outputShape) = prepared[x.shape]!
        let output = context.allocate(.float32, outputShape)
        var source = x
        if let reorder = sourceReorder {
            source = context.allocate(.uint8, [sourceBytes])
            try reorder.execute([(DNNL.argSource, x.rawPointer), (DNNL.argDestination, source.rawPointer)])
        }
        let destination = destinationReorder == nil ? output : context.allocate(.uint8, [destinationBytes])
        try primitive.execute([(DNNL.argSource, source.rawPointer), (DNNL.argDestination, destination.rawPointer)])
        if let reorder = destinationReorder {
            try reorder.execute([(DNNL.argSource, destination.rawPointer), (DNNL.argDestination, output.rawPointer)])
        }
        return [output]
    }

    private func prepare(_ input: [Int]) throws -> (Primitive, Primitive?, Primitive?, Int, Int, [Int]) {
        let (g, output) = try geometry(input)
        // oneDNN derives the output size from the pads: extend the end pads for ceil_mode.
        var padsEnd = g.padsEnd
        for i in kernel.indices {
            let needed = (output[i + 2] - 1) * g.strides[i] + (kernel[i] - 1) * g.dilations[i] + 1 - input[i + 2] - g.padsBegin[i]
            padsEnd[i] = needed
        }
        var source = try MemoryDescriptor(plain: input).raw
        var destination = try MemoryDescriptor(plain: output).raw
        let algorithm = maximum ? dnnl_pooling_max
            : countIncludePad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
        var desc = dnnl_pooling_v2_desc_t()
        try DNNL.check(dnnl_pooling_v2_forward_desc_init(
            &desc, dnnl_forward_inference, algorithm, &source, &destination, g.strides.map(Int64.init),
            kernel.map(Int64.init), g.dilations.map { Int64($0 - 1) }, g.padsBegin.map(Int64.init),
            padsEnd.map(Int64.init)), "pooling descriptor")
        let primitive = try Primitive(&desc, name: "pooling")
        let plainInput = try MemoryDescriptor(plain: input), plainOutput = try MemoryDescriptor(plain: output)
        let chosenSource = primitive.memoryDescriptor(for: DNNL.argSource)
        let chosenDestination = primitive.memoryDescriptor(for: DNNL.argDestination)
        return (primitive,
                chosenSource.equals(plainInput) ? nil : try Primitive(reorderFrom: plainInput, to: chosenSource),
                chosenDestination.equals(plainOutput) ? nil : try Primitive(reorderFrom: chosenDestination, to: plainOutput),
                chosenSource.byteCount, chosenDestination.byteCount, output)
    }
}

/// GlobalAveragePool / GlobalMaxPool: one value per (batch, channel).
final class GlobalPoolingOperator: Operator {
    let node: Node
    let maximum: Bool

    init(node: Node, maximum: Bool) {
        self.node = node
        self.maximum = maximum
    }

    private func outputShape(_ input: [Int]) throws -> [Int] {
        guard input.count >= 3 else { throw MPQError.shapeMismatch("\(node.opType) needs rank >= 3, got \(input)") }
        return Array(input[..<2]) + Array(repeating: 1, count: input.count - 2)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        return [ValueSpec(dtype: .float32, shape: try x.shape.map(outputShape))]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        let output = context.allocate(.float32, try outputShape(x.shape))
        let planes = x.shape[0] * x.shape[1]
        let size = x.count / max(planes, 1)
        let source = x.pointer(as: Float.self), destination = output.pointer(as: Float.self)
        let maximum = self.maximum
        context.parallelFor(planes, minimumChunk: max(1, 65_536 / max(size, 1))) { range in
            for plane in range {
                let row = source + plane * size
                if maximum {
                    var best = -Float.infinity
                    for i in 0..<size { best = max(best, row[i]) }
                    destination[plane] = best
                } else {
                    var sum: Float = 0
                    for i in 0..<size { sum += row[i] }
                    destination[plane] = sum / Float(size)
                }
            }
        }
        return [output]
    }
}
