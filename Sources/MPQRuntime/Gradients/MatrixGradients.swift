import MPQGraph

/// Vector-Jacobian products of MatMul and Gemm, as oneDNN matrix products of
/// the output gradient with the other operand transposed (through strides).
let matrixGradients: [String: VectorJacobianProduct] = [
    "MatMul": VectorJacobianProduct(firstInputs: 2, saved: .allInputs) { arguments in
        let a = try arguments.input(0), b = try arguments.input(1)
        let dy = try arguments.outputGradient()
        // numpy promotion: a 1-D A is [1, K], a 1-D B is [K, 1]; the output lacks that axis.
        let a2 = a.rank == 1 ? a.reshaped([1, a.count]) : a
        let b2 = b.rank == 1 ? b.reshaped([b.count, 1]) : b
        let m = a2.shape[a2.rank - 2], n = b2.shape[b2.rank - 1]
        let batch = Array(dy.shape.dropLast((a.rank > 1 ? 1 : 0) + (b.rank > 1 ? 1 : 0)))
        let dy2 = dy.reshaped(batch + [m, n])
        var result: [Tensor?] = [nil, nil]
        if arguments.wants(0) {
            // dA = dY B^T, summed over batch axes A was broadcast along.
            let full = try MatrixProduct.compute(dy2, transposed: false, b2, transposed: true, kernels: arguments.kernels)
            result[0] = GradientMath.reduced(full, to: a2.shape).reshaped(a.shape)
        }
        if arguments.wants(1) {
            let full: Tensor
            if b2.rank == 2 {
                // One weight matrix shared by every batch row: dB = A^T dY over all rows at once.
                let rows = batch.reduce(1, *) * m
                let aRows = GradientMath.broadcast(a2, to: batch + [m, a2.shape[a2.rank - 1]], context: arguments.context)
                full = try MatrixProduct.compute(aRows.reshaped([rows, a2.shape[a2.rank - 1]]), transposed: true,
                                                 dy2.reshaped([rows, n]), transposed: false, kernels: arguments.kernels)
            } else {
                full = try MatrixProduct.compute(a2, transposed: true, dy2, transposed: false, kernels: arguments.kernels)
            }
            result[1] = GradientMath.reduced(full, to: b2.shape).reshaped(b.shape)
        }
        return result
    },
    "Gemm": VectorJacobianProduct(firstInputs: 3, saved: .inputs([0, 1])) { arguments in
        let node = arguments.node
        let alpha = try node.float("alpha", default: 1), beta = try node.float("beta", default: 1)
        let transA = try node.int("transA", default: 0) != 0, transB = try node.int("transB", default: 0) != 0
        let dy = try arguments.outputGradient()
        var result: [Tensor?] = [nil, nil, nil]
        if arguments.wants(0) {
            // Y = alpha A' B' + beta C: dA' = alpha dY B'^T; dA = dA'^T when transA.
            let b = try arguments.input(1)
            let product = transA
                ? try MatrixProduct.compute(b, transposed: transB, dy, transposed: true, kernels: arguments.kernels)
                : try MatrixProduct.compute(dy, transposed: false, b, transposed: !transB, kernels: arguments.kernels)
            result[0] = alpha == 1 ? product : GradientMath.scaled(product, by: alpha)
        }
        if arguments.wants(1) {
            // dB' = alpha A'^T dY; dB = dB'^T when transB.
            let a = try arguments.input(0)
            let product = transB
                ? try MatrixProduct.compute(dy, transposed: true, a, transposed: transA, kernels: arguments.kernels)
                : try MatrixProduct.compute(a, transposed: !transA, dy, transposed: false, kernels: arguments.kernels)
            result[1] = alpha == 1 ? product : GradientMath.scaled(product, by: alpha)
        }
        if arguments.wants(2) {
            let c = GradientMath.reduced(dy, to: try arguments.inputShape(2))
            result[2] = beta == 1 ? c : GradientMath.scaled(c, by: beta)
        }
        return result
    },
]

/// Batched matrix products op(A) op(B) on oneDNN, with operands transposed in
/// place through strides and batch axes broadcast (numpy rules).
enum MatrixProduct {
    static func compute(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                        kernels: GradientKernels) throws -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2)
        let rank = max(a.rank, b.rank)
        let aShape = [Int](repeating: 1, count: rank - a.rank) + a.shape
        let bShape = [Int](repeating: 1, count: rank - b.rank) + b.shape
        func view(_ shape: [Int], transposed: Bool) -> ([Int], [Int]) {
            var dims = shape, strides = contiguousStrides(shape)
            if transposed {
                dims.swapAt(rank - 2, rank - 1)
                strides.swapAt(rank - 2, rank - 1)
            }
            return (dims, strides)
        }
        let source = view(aShape, transposed: transposeA), weights = view(bShape, transposed: transposeB)
        guard source.0[rank - 1] == weights.0[rank - 2] else {
            throw MPQError.shapeMismatch("matrix product of \(source.0) and \(weights.0): inner dims differ")
        }
        let batch = try broadcastShapes(Array(source.0.dropLast(2)), Array(weights.0.dropLast(2)))
        let output = batch + [source.0[rank - 2], weights.0[rank - 1]]
        let result = Tensor(uninitialized: .float32, shape: output)
        guard result.count > 0 else { return result }
        if source.0[rank - 1] == 0 { return GradientMath.zeros(output) }
        let key = "matmul \(source) \(weights)"
        let kernel = try kernels.kernel(key) {
            try MatMulKernel(source: source, weights: weights, destination: output, bias: nil, constantWeights: false)
        }
        try kernel.execute(source: a, weights: b, bias: nil, destination: result)
        return result
    }
}
