import CDNNL
import MPQGraph

/// Vector-Jacobian products of Conv and ConvTranspose on oneDNN's backward
/// primitives (backward-data for the input, backward-weights for the
/// weights; groups, strides, pads and dilations as the forward node has them).
/// The bias gradient is the output gradient summed per channel.
let convolutionGradients: [String: VectorJacobianProduct] = [
    "Conv": convolutionGradient(transposed: false),
    "ConvTranspose": convolutionGradient(transposed: true),
]

private func convolutionGradient(transposed: Bool) -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 3, saved: .inputs([0, 1])) { arguments in
        let node = arguments.node
        let dy = try arguments.outputGradient()
        let inputShape = try arguments.inputShape(0), weightShape = try arguments.inputShape(1)
        var result: [Tensor?] = [nil, nil, nil]
        if arguments.wants(0) || arguments.wants(1) {
            let key = "\(node.opType) \(node.name) \(inputShape) \(weightShape) \(dy.shape)"
            let backward = try arguments.kernels.kernel(key) {
                try ConvolutionBackward(node: node, transposed: transposed, input: inputShape, weights: weightShape,
                                        output: dy.shape)
            }
            if arguments.wants(0) { result[0] = try backward.inputGradient(dy, weights: try arguments.input(1)) }
            if arguments.wants(1) { result[1] = try backward.weightGradient(dy, input: try arguments.input(0)) }
        }
        if arguments.wants(2) {
            // Sum over batch and spatial positions per output channel.
            let channels = dy.shape[1], spatial = dy.shape[2...].reduce(1, *)
            let db = GradientMath.zeros([channels])
            let g = dy.pointer(as: Float.self), target = db.pointer(as: Float.self)
            for sample in 0..<dy.shape[0] {
                for channel in 0..<channels {
                    let base = (sample * channels + channel) * spatial
                    var total: Float = 0
                    for i in 0..<spatial { total += g[base + i] }
                    target[channel] += total
                }
            }
            result[2] = db
        }
        return result
    }
}

/// oneDNN backward-data and backward-weights primitives for one convolution
/// problem. The primitives pick their own (blocked) layouts, which select
/// the fast JIT kernels (depthwise ones included); row-major tensors and
/// ONNX weight layouts are reordered in and out.
final class ConvolutionBackward {
    private let data: Primitive
    private let weights: Primitive
    /// The forward primitive the backward ones are created against.
    private let forward: Primitive
    private let input: LayoutPair, output: LayoutPair, weightsLayout: LayoutPair
    private let inputShape: [Int], weightShape: [Int]

    init(node: Node, transposed: Bool, input inputShape: [Int], weights weightShape: [Int], output outputShape: [Int]) throws {
        guard inputShape.count >= 3, inputShape.count <= 5, weightShape.count == inputShape.count else {
            throw MPQError.shapeMismatch("\(node.opType) needs 3-D to 5-D input and weights of equal rank, got \(inputShape) and \(weightShape)")
        }
        self.inputShape = inputShape
        self.weightShape = weightShape
        let group = try node.int("group", default: 1)
        let kernel = try node.ints("kernel_shape") ?? Array(weightShape[2...])
        let geometry = try WindowGeometry(node: node, spatial: Array(inputShape[2...]), kernel: kernel)
        // Weights in oneDNN order ([G, O/G, I/G, k...] when grouped), ONNX's layout described through strides.
        var weightDims = transposed ? [weightShape[1] * group, weightShape[0] / group] + weightShape[2...] : weightShape
        let userWeights: MemoryDescriptor
        if group > 1 {
            weightDims = [group, weightDims[0] / group] + weightDims[1...]
            if transposed {
                var strides = contiguousStrides([group, inputShape[1] / group, weightShape[1]] + Array(weightShape[2...]))
                strides.swapAt(1, 2)
                userWeights = try MemoryDescriptor(weightDims, strides: strides)
            } else {
                userWeights = try MemoryDescriptor(plain: weightDims)
            }
        } else if transposed {
            var strides = contiguousStrides(weightShape)
            strides.swapAt(0, 1)
            userWeights = try MemoryDescriptor(weightDims, strides: strides)
        } else {
            userWeights = try MemoryDescriptor(plain: weightDims)
        }
        let any = dnnl_format_tag_any
        var source = try MemoryDescriptor(inputShape, tag: any).raw
        var destination = try MemoryDescriptor(outputShape, tag: any).raw
        var weightsAny = try MemoryDescriptor(weightDims, tag: any).raw
        let strides = geometry.strides.map(Int64.init)
        let dilations = geometry.dilations.map { Int64($0 - 1) }
        let padL = geometry.padsBegin.map(Int64.init), padR = geometry.padsEnd.map(Int64.init)
        if transposed {
            var forwardDesc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_forward_desc_init(
                &forwardDesc, dnnl_forward_training, dnnl_deconvolution_direct, &source, &weightsAny, nil,
                &destination, strides, dilations, padL, padR), "deconvolution descriptor")
            forward = try Primitive(&forwardDesc, name: "deconvolution")
            var dataDesc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_backward_data_desc_init(
                &dataDesc, dnnl_deconvolution_direct, &source, &weightsAny, &destination,
                strides, dilations, padL, padR), "deconvolution backward-data descriptor")
            data = try Primitive(&dataDesc, hint: forward, name: "deconvolution backward data")
            var weightsDesc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_backward_weights_desc_init(
                &weightsDesc, dnnl_deconvolution_direct, &source, &weightsAny, nil, &destination,
                strides, dilations, padL, padR), "deconvolution backward-weights descriptor")
            weights = try Primitive(&weightsDesc, hint: forward, name: "deconvolution backward weights")
        } else {
            var forwardDesc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_forward_desc_init(
                &forwardDesc, dnnl_forward_training, dnnl_convolution_direct, &source, &weightsAny, nil,
                &destination, strides, dilations, padL, padR), "convolution descriptor")
            forward = try Primitive(&forwardDesc, name: "convolution")
            var dataDesc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_backward_data_desc_init(
                &dataDesc, dnnl_convolution_direct, &source, &weightsAny, &destination,
                strides, dilations, padL, padR), "convolution backward-data descriptor")
            data = try Primitive(&dataDesc, hint: forward, name: "convolution backward data")
            var weightsDesc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_backward_weights_desc_init(
                &weightsDesc, dnnl_convolution_direct, &source, &weightsAny, nil, &destination,
                strides, dilations, padL, padR), "convolution backward-weights descriptor")
            weights = try Primitive(&weightsDesc, hint: forward, name: "convolution backward weights")
        }
        let plainInput = try MemoryDescriptor(plain: inputShape), plainOutput = try MemoryDescriptor(plain: outputShape)
        input = try LayoutPair(user: plainInput, data: data.memoryDescriptor(for: DNNL.argDifferenceSource),
                               weights: weights.memoryDescriptor(for: DNNL.argSource))
        output = try LayoutPair(user: plainOutput, data: data.memoryDescriptor(for: DNNL.argDifferenceDestination),
                                weights: weights.memoryDescriptor(for: DNNL.argDifferenceDestination))
        weightsLayout = try LayoutPair(user: userWeights, data: data.memoryDescriptor(for: DNNL.argWeights),
                                       weights: weights.memoryDescriptor(for: DNNL.argDifferenceWeights))
    }

    /// d loss / d input from the output gradient (backward data).
    func inputGradient(_ dy: Tensor, weights w: Tensor) throws -> Tensor {
        let dx = Tensor(uninitialized: .float32, shape: inputShape)
        let chosen = input.data.reorder == nil ? dx : Tensor(uninitialized: .uint8, shape: [input.data.layout.byteCount])
        let gradient = try output.data.from(dy), filters = try weightsLayout.data.from(w)
        try withExtendedLifetime((gradient, filters, chosen)) {
            try data.execute([(DNNL.argDifferenceDestination, gradient.rawPointer), (DNNL.argWeights, filters.rawPointer),
                              (DNNL.argDifferenceSource, chosen.rawPointer)])
            try input.data.reorderBack?.execute([(DNNL.argSource, chosen.rawPointer), (DNNL.argDestination, dx.rawPointer)])
        }
        return dx
    }

    /// d loss / d weights from the output gradient and the forward input (backward weights).
    func weightGradient(_ dy: Tensor, input x: Tensor) throws -> Tensor {
        let dw = Tensor(uninitialized: .float32, shape: weightShape)
        let layout = weightsLayout.weights
        let chosen = layout.reorder == nil ? dw : Tensor(uninitialized: .uint8, shape: [layout.layout.byteCount])
        let gradient = try output.weights.from(dy), source = try input.weights.from(x)
        try withExtendedLifetime((gradient, source, chosen)) {
            try weights.execute([(DNNL.argDifferenceDestination, gradient.rawPointer), (DNNL.argSource, source.rawPointer),
                                 (DNNL.argDifferenceWeights, chosen.rawPointer)])
            try layout.reorderBack?.execute([(DNNL.argSource, chosen.rawPointer), (DNNL.argDestination, dw.rawPointer)])
        }
        return dw
    }
}

/// A tensor's user layout and the layouts the two backward primitives chose for it.
private struct LayoutPair {
    let data: ChosenLayout
    let weights: ChosenLayout

    init(user: MemoryDescriptor, data: MemoryDescriptor, weights: MemoryDescriptor) throws {
        self.data = try ChosenLayout(user: user, layout: data)
        self.weights = try ChosenLayout(user: user, layout: weights)
    }
}

/// A primitive's layout for one argument, with reorders from and to the user's layout (nil when equal).
private struct ChosenLayout {
    let layout: MemoryDescriptor
    let reorder: Primitive?
    let reorderBack: Primitive?

    init(user: MemoryDescriptor, layout: MemoryDescriptor) throws {
        self.layout = layout
        let same = layout.equals(user)
        reorder = same ? nil : try Primitive(reorderFrom: user, to: layout)
        reorderBack = same ? nil : try Primitive(reorderFrom: layout, to: user)
    }

    /// `tensor` (in the user's layout) in this layout.
    func from(_ tensor: Tensor) throws -> Tensor {
        guard let reorder else { return tensor }
        let result = Tensor(uninitialized: .uint8, shape: [layout.byteCount])
        try withExtendedLifetime(tensor) {
            try reorder.execute([(DNNL.argSource, tensor.rawPointer), (DNNL.argDestination, result.rawPointer)])
        }
        return result
    }
}
