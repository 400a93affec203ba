import CDNNL
import MPQGraph

/// Operators of this family, by op type.
let convolutionOperators: [String: OperatorFactory] = [
    "Conv": { node, _ in try ConvolutionOperator(node: node, transposed: false) },
    "ConvTranspose": { node, _ in try ConvolutionOperator(node: node, transposed: true) },
]

/// Spatial geometry of a convolution or pooling window (ONNX attributes).
struct WindowGeometry {
    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var padsBegin: [Int]
    var padsEnd: [Int]

    /// Resolves `auto_pad` and explicit `pads` for spatial input sizes.
    init(node: Node, spatial: [Int], kernel: [Int]) throws {
        let n = spatial.count
        self.kernel = kernel
        try Self.validateAttributes(node, kernel: kernel)
        strides = try node.ints("strides") ?? Array(repeating: 1, count: n)
        dilations = try node.ints("dilations") ?? Array(repeating: 1, count: n)
        let pads = try node.ints("pads") ?? Array(repeating: 0, count: 2 * n)
        guard strides.count == n, dilations.count == n, pads.count == 2 * n, kernel.count == n else {
            throw MPQError.shapeMismatch("window attributes do not match \(n) spatial dims")
        }
        padsBegin = Array(pads[..<n])
        padsEnd = Array(pads[n...])
        let autoPad = try node.string("auto_pad", default: "NOTSET")
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            for i in 0..<n {
                let out = (spatial[i] + strides[i] - 1) / strides[i]
                let total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
                padsBegin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                padsEnd[i] = total - padsBegin[i]
            }
        } else if autoPad == "VALID" {
            padsBegin = Array(repeating: 0, count: n)
            padsEnd = padsBegin
        }
    }

    /// Checks the window attributes of `node` that do not depend on shapes:
    /// strides, dilations and kernel sizes in 1...limit, pads in 0...limit
    /// (`SizeLimits.maximumWindowAttribute`), so that no later size
    /// computation divides by zero or overflows. Called when the operator is
    /// created, i.e. before any plan is made.
    static func validateAttributes(_ node: Node, kernel: [Int]? = nil) throws {
        let limit = SizeLimits.maximumWindowAttribute
        func check(_ name: String, _ values: [Int]?, minimum: Int) throws {
            guard let values else { return }
            if let bad = values.first(where: { $0 < minimum || $0 > limit }) {
                throw MPQError.invalidModel("\(node.opType) node '\(node.name)': \(name) \(values) has \(bad), each must be in \(minimum)...\(limit)")
            }
        }
        try check("strides", try node.ints("strides"), minimum: 1)
        try check("dilations", try node.ints("dilations"), minimum: 1)
        try check("pads", try node.ints("pads"), minimum: 0)
        try check("output_padding", try node.ints("output_padding"), minimum: 0)
        try check("kernel_shape", kernel ?? (try node.ints("kernel_shape")), minimum: 1)
        if let pads = try node.ints("pads"), pads.count % 2 != 0 {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)': pads \(pads) must hold a begin and an end per spatial axis (an even count)")
        }
        let autoPad = try node.string("auto_pad", default: "NOTSET")
        let valid = ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]
        guard valid.contains(autoPad) else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)': auto_pad '\(autoPad)' is not one of \(valid.joined(separator: ", "))")
        }
    }

    /// Throws unless the (dilated) kernel fits the padded input on every axis.
    func requireKernelFits(_ spatial: [Int], node: Node) throws {
        for i in spatial.indices {
            let extent = (kernel[i] - 1) * dilations[i] + 1
            let padded = spatial[i] + padsBegin[i] + padsEnd[i]
            guard extent <= padded else {
                throw MPQError.shapeMismatch("\(node.opType) node '\(node.name)': kernel extent \(extent) on spatial axis \(i) does not fit the padded input (\(spatial[i]) + pads \(padsBegin[i]) + \(padsEnd[i]) = \(padded))")
            }
        }
    }

    /// Output size per spatial dim (floor, or ceil with `ceilMode`).
    func outputSize(_ spatial: [Int], ceilMode: Bool = false) -> [Int] {
        spatial.indices.map { i in
            let span = spatial[i] + padsBegin[i] + padsEnd[i] - ((kernel[i] - 1) * dilations[i] + 1)
            let out = (ceilMode ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1
            // ceil mode: the last window must start inside the input or left padding.
            if ceilMode && (out - 1) * strides[i] >= spatial[i] + padsBegin[i] { return out - 1 }
            return out
        }
    }
}

/// Conv and ConvTranspose (1-D to 3-D, groups, dilations, auto_pad) on
/// oneDNN's convolution / deconvolution primitives. Weights are reordered into
/// the primitive's preferred layout once and reused while the same weight
/// tensor comes back; activations fused by the graph optimizer run as post-ops.
final class ConvolutionOperator: Operator {
    let node: Node
    let transposed: Bool
    let group: Int
    /// Activations applied to the output inside the primitive.
    var postOps: [PostOp] = []

    /// Write the output in the primitive's own (blocked) layout, for
    /// consumers that accept it (set by the plan's layout pass).
    var emitsOpaqueOutput = false

    var acceptsOpaqueLayouts: Bool { true }

    /// A primitive for one input shape, with its layouts and reorders.
    private final class Prepared {
        let primitive: Primitive
        let sourceLayout: MemoryDescriptor
        let destinationLayout: MemoryDescriptor
        let destinationIsRowMajor: Bool
        let fromRowMajorSource: Primitive?
        let fromRowMajorDestination: Primitive?
        let toRowMajorDestination: Primitive?
        let weightsReorder: Primitive?
        let weightsBytes: Int
        let outputShape: [Int]
        let opaqueOutput: DNNLLayout
        var weightsSource: TensorStorage?
        var weights: Tensor?

        init(primitive: Primitive, input: [Int], outputShape: [Int], userWeights: MemoryDescriptor) throws {
            self.primitive = primitive
            sourceLayout = primitive.memoryDescriptor(for: DNNL.argSource)
            destinationLayout = primitive.memoryDescriptor(for: DNNL.argDestination)
            let chosenWeights = primitive.memoryDescriptor(for: DNNL.argWeights)
            let rowMajorInput = try MemoryDescriptor(plain: input)
            let rowMajorOutput = try MemoryDescriptor(plain: outputShape)
            destinationIsRowMajor = destinationLayout.equals(rowMajorOutput)
            fromRowMajorSource = sourceLayout.equals(rowMajorInput) ? nil : try Primitive(reorderFrom: rowMajorInput, to: sourceLayout)
            fromRowMajorDestination = destinationIsRowMajor ? nil : try Primitive(reorderFrom: rowMajorOutput, to: destinationLayout)
            toRowMajorDestination = destinationIsRowMajor ? nil : try Primitive(reorderFrom: destinationLayout, to: rowMajorOutput)
            weightsReorder = chosenWeights.equals(userWeights) ? nil : try Primitive(reorderFrom: userWeights, to: chosenWeights)
            weightsBytes = chosenWeights.byteCount
            self.outputShape = outputShape
            opaqueOutput = DNNLLayout(destinationLayout, dims: outputShape)
        }

        /// `tensor`'s bytes in `layout` (`tensor` itself when already there).
        func converted(_ tensor: Tensor, to layout: MemoryDescriptor, fromRowMajor: Primitive?,
                       into destination: Tensor? = nil) throws -> Tensor {
            let opaque = tensor.opaqueLayout as? DNNLLayout
            if destination == nil && (opaque?.descriptor.equals(layout) ?? (fromRowMajor == nil)) { return tensor }
            let result = destination ?? Tensor(uninitialized: .uint8, shape: [layout.byteCount])
            if let opaque, opaque.descriptor.equals(layout) {
                result.rawPointer.copyMemory(from: tensor.rawPointer, byteCount: layout.byteCount)
            } else if let opaque {
                try Primitive(reorderFrom: opaque.descriptor, to: layout)
                    .execute([(DNNL.argSource, tensor.rawPointer), (DNNL.argDestination, result.rawPointer)])
            } else if let fromRowMajor {
                try fromRowMajor.execute([(DNNL.argSource, tensor.rawPointer), (DNNL.argDestination, result.rawPointer)])
            } else {
                result.rawPointer.copyMemory(from: tensor.rawPointer, byteCount: layout.byteCount)
            }
            return result
        }
    }

    private var prepared: [[Int]: Prepared] = [:]

    init(node: Node, transposed: Bool) throws {
        self.node = node
        self.transposed = transposed
        group = try node.int("group", default: 1)
        guard group >= 1 else { throw unsupported(node, "group must be >= 1") }
        try WindowGeometry.validateAttributes(node)
        if transposed, try node.ints("output_shape") != nil {
            throw unsupported(node, "attribute 'output_shape' is not supported (give pads instead)")
        }
    }

    private func geometry(input: [Int], weights: [Int]) throws -> (WindowGeometry, [Int]) {
        guard input.count >= 3, input.count <= 5, weights.count == input.count else {
            throw MPQError.shapeMismatch("\(node.opType) needs 3-D to 5-D input and weights of equal rank, got \(input) and \(weights)")
        }
        let spatial = Array(input[2...])
        let kernel = try node.ints("kernel_shape") ?? Array(weights[2...])
        let geometry = try WindowGeometry(node: node, spatial: spatial, kernel: kernel)
        let outputChannels: Int
        let outputSpatial: [Int]
        if transposed {
            guard input[1] == weights[0], input[1] % group == 0 else {
                throw MPQError.shapeMismatch("input \(input) does not match weights \(weights) (group \(group))")
            }
            outputChannels = weights[1] * group
            let outputPadding = try node.ints("output_padding") ?? Array(repeating: 0, count: spatial.count)
            outputSpatial = spatial.indices.map { i in
                geometry.strides[i] * (spatial[i] - 1) + outputPadding[i]
                    + ((kernel[i] - 1) * geometry.dilations[i] + 1) - geometry.padsBegin[i] - geometry.padsEnd[i]
            }
        } else {
            guard input[1] == weights[1] * group, weights[0] % group == 0 else {
                throw MPQError.shapeMismatch("input \(input) does not match weights \(weights) (group \(group))")
            }
            outputChannels = weights[0]
            try geometry.requireKernelFits(spatial, node: node)
            outputSpatial = geometry.outputSize(spatial)
        }
        guard outputSpatial.allSatisfy({ $0 > 0 }) else {
            throw MPQError.shapeMismatch("output of \(node.opType) would be empty for input \(input)")
        }
        return (geometry, [input[0], outputChannels] + outputSpatial)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node), w = try inputs.required(1, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        guard let xs = x.shape, let ws = w.shape else { return [ValueSpec(dtype: .float32, shape: nil)] }
        return [ValueSpec(dtype: .float32, shape: try geometry(input: xs, weights: ws).1)]
    }

    private func prepare(input: [Int], weights: [Int], hasBias: Bool) throws -> Prepared {
        let (g, output) = try geometry(input: input, weights: weights)
        let rank = input.count
        // Weights in oneDNN order: [G, O/G, I/G, k...] when grouped, else [O, I, k...].
        var weightDims: [Int]
        if transposed {
            weightDims = [weights[1] * group, weights[0] / group] + weights[2...]
        } else {
            weightDims = weights
        }
        let userWeights: MemoryDescriptor
        if group > 1 {
            let perGroup = [weightDims[0] / group] + weightDims[1...]
            weightDims = [group] + perGroup
            if transposed {
                // ONNX ConvTranspose weights are [I, O/G, k...] = [G, I/G, O/G, k...]: swap the middle dims.
                var strides = contiguousStrides([group, input[1] / group, weights[1]] + Array(weights[2...]))
                strides.swapAt(1, 2)
                userWeights = try MemoryDescriptor(weightDims, strides: strides)
            } else {
                userWeights = try MemoryDescriptor(plain: weightDims)
            }
        } else if transposed {
            var strides = contiguousStrides(weights)
            strides.swapAt(0, 1)
            userWeights = try MemoryDescriptor(weightDims, strides: strides)
        } else {
            userWeights = try MemoryDescriptor(plain: weightDims)
        }
        let any = dnnl_format_tag_any
        var source = try MemoryDescriptor(input, tag: any).raw
        var destination = try MemoryDescriptor(output, tag: any).raw
        var weightsAny = try MemoryDescriptor(weightDims, tag: any).raw
        let biasDescriptor = try MemoryDescriptor(plain: [output[1]]).raw
        let bias = UnsafeMutablePointer<dnnl_memory_desc_t>.allocate(capacity: 1)
        defer { bias.deallocate() }
        bias.initialize(to: biasDescriptor)
        let strides = g.strides.map(Int64.init)
        let dilations = g.dilations.map { Int64($0 - 1) }
        let padL = g.padsBegin.map(Int64.init), padR = g.padsEnd.map(Int64.init)
        let attributes = try PrimitiveAttributes()
        try attributes.setPostOps(postOps)
        let primitive: Primitive
        if transposed {
            var desc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_forward_desc_init(
                &desc, dnnl_forward_inference, dnnl_deconvolution_direct, &source, &weightsAny,
                hasBias ? bias : nil, &destination, strides, dilations, padL, padR), "deconvolution descriptor")
            primitive = try Primitive(&desc, attributes: attributes, name: "deconvolution")
        } else {
            var desc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_forward_desc_init(
                &desc, dnnl_forward_inference, dnnl_convolution_direct, &source, &weightsAny,
                hasBias ? bias : nil, &destination, strides, dilations, padL, padR), "convolution descriptor")
            primitive = try Primitive(&desc, attributes: attributes, name: "convolution")
        }
        return try Prepared(primitive: primitive, input: input, outputShape: output, userWeights: userWeights)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node), w = try inputs.required(1, node)
        let bias = inputs.optional(2)
        let residual = postOps.contains(.sum) ? try inputs.required(3, node) : nil
        guard x.dtype == .float32, w.dtype == .float32, bias?.dtype ?? .float32 == .float32 else {
            throw MPQError.typeMismatch("\(node.opType) takes float32 tensors")
        }
        let key = x.shape + [-1] + w.shape + [bias == nil ? 0 : 1]
        let p: Prepared
        if let cached = prepared[key] {
            p = cached
        } else {
            p = try prepare(input: x.shape, weights: w.shape, hasBias: bias != nil)
            prepared[key] = p
        }
        if let bias, bias.count != p.outputShape[1] {
            throw MPQError.shapeMismatch("bias has \(bias.count) values for \(p.outputShape[1]) output channels")
        }
        if let residual, residual.shape != p.outputShape {
            throw MPQError.shapeMismatch("the fused residual \(residual.shape) does not match the output \(p.outputShape)")
        }
        if p.weightsSource !== w.storage {
            if let reorder = p.weightsReorder {
                let reordered = Tensor(uninitialized: .uint8, shape: [p.weightsBytes])
                try reorder.execute([(DNNL.argSource, w.rawPointer), (DNNL.argDestination, reordered.rawPointer)])
                p.weights = reordered
            } else {
                p.weights = w
            }
            p.weightsSource = w.storage
        }
        let source = try p.converted(x, to: p.sourceLayout, fromRowMajor: p.fromRowMajorSource)
        let opaque = emitsOpaqueOutput && !p.destinationIsRowMajor
        let destination = opaque || p.destinationIsRowMajor
            ? Tensor(dtype: .float32, shape: p.outputShape, storage: TensorStorage(byteCount: p.destinationLayout.byteCount),
                     opaqueLayout: opaque ? p.opaqueOutput : nil)
            : context.allocate(.uint8, [p.destinationLayout.byteCount])
        if let residual {
            // The sum post-op adds what the destination already holds.
            _ = try p.converted(residual, to: p.destinationLayout, fromRowMajor: p.fromRowMajorDestination, into: destination)
        }
        var arguments = [(DNNL.argSource, source.rawPointer), (DNNL.argWeights, p.weights!.rawPointer),
                         (DNNL.argDestination, destination.rawPointer)]
        if let bias { arguments.append((DNNL.argBias, bias.rawPointer)) }
        try p.primitive.execute(arguments)
        if opaque || p.destinationIsRowMajor { return [destination] }
        let output = context.allocate(.float32, p.outputShape)
        try p.toRowMajorDestination!.execute([(DNNL.argSource, destination.rawPointer), (DNNL.argDestination, output.rawPointer)])
        return [output]
    }
}

extension ConvolutionOperator: PostOpFusing, OpaqueLayoutEmitting, OpaqueLayoutReading {
    var fusedOpType: String { transposed ? "ConvTranspose" : "Conv" }

    func fusing(_ postOp: PostOp, node: Node) throws -> Operator? {
        let fused = try ConvolutionOperator(node: node, transposed: transposed)
        fused.postOps = postOps + [postOp]
        return fused
    }

    /// The data input and the residual of a fused sum arrive in any producer's layout (oneDNN reorders them).
    func readsOpaqueLayout(at slot: Int, from producer: Operator) -> Bool { slot == 0 || slot == 3 }
}
