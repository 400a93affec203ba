import CDNNL

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
            if arguments.wants(0) {
                let dx = Tensor(uninitialized: .float32, shape: inputShape)
                try backward.data.execute([(DNNL.argDifferenceDestination, dy.rawPointer),
                                           (DNNL.argWeights, try arguments.input(1).rawPointer),
                                           (DNNL.argDifferenceSource, dx.rawPointer)])
                result[0] = dx
            }
            if arguments.wants(1) {
                let dw = Tensor(uninitialized: .float32, shape: weightShape)
                try backward.weights.execute([(DNNL.argDifferenceDestination, dy.rawPointer),
                                              (DNNL.argSource, try arguments.input(0).rawPointer),
                                              (DNNL.argDifferenceWeights, dw.rawPointer)])
                result[1] = dw
            }
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
/// problem, on row-major tensors and ONNX weight layouts.
final class ConvolutionBackward {
    let data: Primitive
    let weights: Primitive
    /// The forward primitive the backward ones are created against.
    private let forward: Primitive

    init(node: Node, transposed: Bool, input: [Int], weights weightShape: [Int], output: [Int]) throws {
        guard input.count >= 3, input.count <= 5, weightShape.count == input.count else {
            throw MPQError.shapeMismatch("\(node.opType) needs 3-D to 5-D input and weights of equal rank, got \(input) and \(weightShape)")
        }
        let group = try node.int("group", default: 1)
        let kernel = try node.ints("kernel_shape") ?? Array(weightShape[2...])
        let geometry = try WindowGeometry(node: node, spatial: Array(input[2...]), kernel: kernel)
        // Weights in oneDNN order ([G, O/G, I/G, k...] when grouped), viewed in ONNX's layout through strides.
        var weightDims = transposed ? [weightShape[1] * group, weightShape[0] / group] + weightShape[2...] : weightShape
        let userWeights: MemoryDescriptor
        if group > 1 {
            weightDims = [group, weightDims[0] / group] + weightDims[1...]
            if transposed {
                var strides = contiguousStrides([group, input[1] / group, weightShape[1]] + Array(weightShape[2...]))
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
        var source = try MemoryDescriptor(plain: input).raw
        var destination = try MemoryDescriptor(plain: output).raw
        var weightsDescriptor = userWeights.raw
        let strides = geometry.strides.map(Int64.init)
        let dilations = geometry.dilations.map { Int64($0 - 1) }
        let padL = geometry.padsBegin.map(Int64.init), padR = geometry.padsEnd.map(Int64.init)
        if transposed {
            var forwardDesc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_forward_desc_init(
                &forwardDesc, dnnl_forward_training, dnnl_deconvolution_direct, &source, &weightsDescriptor, nil,
                &destination, strides, dilations, padL, padR), "deconvolution descriptor")
            forward = try Primitive(&forwardDesc, name: "deconvolution")
            var dataDesc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_backward_data_desc_init(
                &dataDesc, dnnl_deconvolution_direct, &source, &weightsDescriptor, &destination,
                strides, dilations, padL, padR), "deconvolution backward-data descriptor")
            data = try Primitive(&dataDesc, hint: forward, name: "deconvolution backward data")
            var weightsDesc = dnnl_deconvolution_desc_t()
            try DNNL.check(dnnl_dilated_deconvolution_backward_weights_desc_init(
                &weightsDesc, dnnl_deconvolution_direct, &source, &weightsDescriptor, nil, &destination,
                strides, dilations, padL, padR), "deconvolution backward-weights descriptor")
            weights = try Primitive(&weightsDesc, hint: forward, name: "deconvolution backward weights")
        } else {
            var forwardDesc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_forward_desc_init(
                &forwardDesc, dnnl_forward_training, dnnl_convolution_direct, &source, &weightsDescriptor, nil,
                &destination, strides, dilations, padL, padR), "convolution descriptor")
            forward = try Primitive(&forwardDesc, name: "convolution")
            var dataDesc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_backward_data_desc_init(
                &dataDesc, dnnl_convolution_direct, &source, &weightsDescriptor, &destination,
                strides, dilations, padL, padR), "convolution backward-data descriptor")
            data = try Primitive(&dataDesc, hint: forward, name: "convolution backward data")
            var weightsDesc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_backward_weights_desc_init(
                &weightsDesc, dnnl_convolution_direct, &source, &weightsDescriptor, nil, &destination,
                strides, dilations, padL, padR), "convolution backward-weights descriptor")
            weights = try Primitive(&weightsDesc, hint: forward, name: "convolution backward weights")
        }
    }
}
