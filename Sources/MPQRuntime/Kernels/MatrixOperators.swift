import CDNNL
import MPQGraph

/// Operators of this family, by op type.
let matrixOperators: [String: OperatorFactory] = [
    "MatMul": { node, _ in MatMulOperator(node: node) },
    "Gemm": { node, _ in try GemmOperator(node: node) },
]

/// A oneDNN matmul prepared for one problem shape: dst[b, M, N] = src[b, M, K] x weights[b, K, N] (+ bias).
///
/// Constant 2-D weights are reordered once into the layout the primitive
/// prefers; weights computed at run time are read in place through strides.
final class MatMulKernel {
    private let primitive: Primitive
    private let weightsReorder: Primitive?
    private let weightsBytes: Int
    private var weightsSource: TensorStorage?
    private var weights: Tensor?

    /// - Parameters:
    ///   - source, weights, destination: dims and element strides (equal ranks; batch dims may be 1 to broadcast).
    ///   - constantWeights: let the primitive choose the weights layout (for weights reused across runs).
    init(source: ([Int], [Int]), weights: ([Int], [Int]), destination: [Int], bias: [Int]?,
         constantWeights: Bool, activations: [PostOp] = []) throws {
        var src = try MemoryDescriptor(source.0, strides: source.1).raw
        let userWeights = try MemoryDescriptor(weights.0, strides: weights.1)
        var wei = constantWeights ? try MemoryDescriptor(weights.0, tag: dnnl_format_tag_any).raw : userWeights.raw
        var dst = try MemoryDescriptor(plain: destination).raw
        let biasDescriptor = try bias.map { try MemoryDescriptor(plain: $0).raw }
        var desc = dnnl_matmul_desc_t()
        if var b = biasDescriptor {
            try DNNL.check(dnnl_matmul_desc_init(&desc, &src, &wei, &b, &dst), "matmul descriptor")
        } else {
            try DNNL.check(dnnl_matmul_desc_init(&desc, &src, &wei, nil, &dst), "matmul descriptor")
        }
        let attributes = try PrimitiveAttributes()
        try attributes.setPostOps(activations)
        primitive = try Primitive(&desc, attributes: attributes, name: "matmul")
        let chosen = primitive.memoryDescriptor(for: DNNL.argWeights)
        weightsReorder = chosen.equals(userWeights) ? nil : try Primitive(reorderFrom: userWeights, to: chosen)
        weightsBytes = chosen.byteCount
    }

    func execute(source: Tensor, weights w: Tensor, bias: Tensor?, destination: Tensor) throws {
        if weightsSource !== w.storage {
            if let reorder = weightsReorder {
                let reordered = Tensor(uninitialized: .uint8, shape: [weightsBytes])
                try reorder.execute([(DNNL.argSource, w.rawPointer), (DNNL.argDestination, reordered.rawPointer)])
                weights = reordered
            } else {
                weights = w
            }
            weightsSource = w.storage
        }
        var arguments = [(DNNL.argSource, source.rawPointer), (DNNL.argWeights, weights!.rawPointer),
                         (DNNL.argDestination, destination.rawPointer)]
        if let bias { arguments.append((DNNL.argBias, bias.rawPointer)) }
        try primitive.execute(arguments)
    }
}

/// ONNX MatMul (numpy matmul semantics: 1-D promotion, broadcast batch dims).
final class MatMulOperator: Operator {
    let node: Node
    /// Post-ops fused by the graph optimizer (2-D weights only); with a fused
    /// bias the node's input 2 is a [N] vector added to every row.
    var postOps: [PostOp] = []
    private var constantWeights = false
    private var kernels: [[Int]: MatMulKernel] = [:]

    init(node: Node) { self.node = node }

    func bindConstants(_ constants: [Tensor?]) {
        constantWeights = constants.count > 1 && constants[1] != nil
    }

    /// Output shape and the (batch, M, K, N) problem for two input shapes.
    private func problem(_ a: [Int], _ b: [Int]) throws -> (output: [Int], batch: [Int], m: Int, k: Int, n: Int) {
        guard !a.isEmpty, !b.isEmpty else { throw MPQError.shapeMismatch("MatMul inputs must have rank >= 1, got \(a) and \(b)") }
        let a2 = a.count == 1 ? [1, a[0]] : a
        let b2 = b.count == 1 ? [b[0], 1] : b
        let (m, k) = (a2[a2.count - 2], a2[a2.count - 1])
        let (kb, n) = (b2[b2.count - 2], b2[b2.count - 1])
        guard k == kb else { throw MPQError.shapeMismatch("MatMul inner dims differ: \(a) x \(b)") }
        let batch = try broadcastShapes(Array(a2.dropLast(2)), Array(b2.dropLast(2)))
        var output = batch
        if a.count > 1 { output.append(m) }
        if b.count > 1 { output.append(n) }
        return (output, batch, m, k, n)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let a = try inputs.required(0, node), b = try inputs.required(1, node)
        guard a.dtype == .float32, b.dtype == .float32 else {
            throw MPQError.typeMismatch("MatMul takes float32, got \(a.dtype) and \(b.dtype)")
        }
        guard let sa = a.shape, let sb = b.shape else { return [ValueSpec(dtype: .float32, shape: nil)] }
        return [ValueSpec(dtype: .float32, shape: try problem(sa, sb).output)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try inputs.required(0, node), b = try inputs.required(1, node)
        guard a.dtype == .float32, b.dtype == .float32 else {
            throw MPQError.typeMismatch("MatMul takes float32, got \(a.dtype) and \(b.dtype)")
        }
        let p = try problem(a.shape, b.shape)
        let output = context.allocate(.float32, p.output)
        if output.count == 0 { return [output] }
        if p.k == 0 {
            output.withUnsafeMutableBufferPointer(as: Float.self) { $0.initialize(repeating: 0) }
            return [output]
        }
        let key = a.shape + [-1] + b.shape
        let kernel: MatMulKernel
        if let cached = kernels[key] {
            kernel = cached
        } else {
            kernel = try makeKernel(a.shape, b.shape, p)
            kernels[key] = kernel
        }
        try kernel.execute(source: a, weights: b, bias: inputs.optional(2), destination: output)
        return [output]
    }

    private func makeKernel(_ a: [Int], _ b: [Int], _ p: (output: [Int], batch: [Int], m: Int, k: Int, n: Int)) throws -> MatMulKernel {
        if b.count <= 2 {
            // [..., M, K] x [K, N]: one 2-D product over all rows of A.
            let rows = a.count == 1 ? 1 : a.dropLast().reduce(1, *)
            return try MatMulKernel(source: ([rows, p.k], [p.k, 1]), weights: ([p.k, p.n], [p.n, 1]),
                                    destination: [rows, p.n], bias: node.input(2) == nil ? nil : [1, p.n],
                                    constantWeights: constantWeights, activations: postOps)
        }
        let rank = p.batch.count + 2
        func padded(_ shape: [Int], matrix: [Int]) -> [Int] {
            let batch = Array(shape.dropLast(2))
            return Array(repeating: 1, count: rank - 2 - batch.count) + batch + matrix
        }
        let aDims = padded(a.count == 1 ? [1, a[0]] : a, matrix: [p.m, p.k])
        let bDims = padded(b, matrix: [p.k, p.n])
        return try MatMulKernel(source: (aDims, contiguousStrides(aDims)), weights: (bDims, contiguousStrides(bDims)),
                                destination: p.batch + [p.m, p.n], bias: nil, constantWeights: false)
    }
}

/// ONNX Gemm: Y = alpha * A' x B' + beta * C, with A' and B' optionally transposed.
final class GemmOperator: Operator {
    let node: Node
    let alpha: Float, beta: Float
    let transA: Bool, transB: Bool
    /// Activations applied to the output inside the primitive.
    var postOps: [PostOp] = []
    private var constantWeights = false
    private var kernels: [[Int]: MatMulKernel] = [:]

    init(node: Node) throws {
        self.node = node
        alpha = try node.float("alpha", default: 1)
        beta = try node.float("beta", default: 1)
        transA = try node.int("transA", default: 0) != 0
        transB = try node.int("transB", default: 0) != 0
    }

    func bindConstants(_ constants: [Tensor?]) {
        constantWeights = constants.count > 1 && constants[1] != nil
    }

    private func dims(_ a: [Int], _ b: [Int]) throws -> (m: Int, k: Int, n: Int) {
        guard a.count == 2, b.count == 2 else { throw MPQError.shapeMismatch("Gemm takes 2-D A and B, got \(a) and \(b)") }
        let (m, k) = transA ? (a[1], a[0]) : (a[0], a[1])
        let (kb, n) = transB ? (b[1], b[0]) : (b[0], b[1])
        guard k == kb else { throw MPQError.shapeMismatch("Gemm inner dims differ: \(a) x \(b) (transA \(transA), transB \(transB))") }
        return (m, k, n)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let a = try inputs.required(0, node), b = try inputs.required(1, node)
        guard a.dtype == .float32, b.dtype == .float32 else { throw MPQError.typeMismatch("Gemm takes float32") }
        guard let sa = a.shape, let sb = b.shape else { return [ValueSpec(dtype: .float32, shape: nil)] }
        let d = try dims(sa, sb)
        return [ValueSpec(dtype: .float32, shape: [d.m, d.n])]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try inputs.required(0, node), b = try inputs.required(1, node)
        let c = inputs.optional(2)
        guard a.dtype == .float32, b.dtype == .float32, c?.dtype ?? .float32 == .float32 else {
            throw MPQError.typeMismatch("Gemm takes float32")
        }
        let d = try dims(a.shape, b.shape)
        let output = context.allocate(.float32, [d.m, d.n])
        // C joins as oneDNN's bias when it broadcasts like one and needs no scaling.
        var bias: Tensor? = nil
        var biasShape: [Int]? = nil
        if let c, beta != 0 {
            let shape = Array(repeating: 1, count: 2 - min(c.rank, 2)) + c.shape.suffix(2)
            guard c.rank <= 2, (shape[0] == 1 || shape[0] == d.m), (shape[1] == 1 || shape[1] == d.n) else {
                throw MPQError.shapeMismatch("Gemm C \(c.shape) does not broadcast to [\(d.m), \(d.n)]")
            }
            bias = beta == 1 && alpha == 1 ? c : c.scaled(by: beta / alpha)
            biasShape = shape
        }
        let key = a.shape + b.shape + (biasShape ?? [])
        let kernel: MatMulKernel
        if let cached = kernels[key] {
            kernel = cached
        } else {
            let aStrides = transA ? [1, d.m] : [d.k, 1]
            let bStrides = transB ? [1, d.k] : [d.n, 1]
            kernel = try MatMulKernel(source: ([d.m, d.k], aStrides), weights: ([d.k, d.n], bStrides),
                                      destination: [d.m, d.n], bias: biasShape, constantWeights: constantWeights,
                                      activations: alpha == 1 ? postOps : [])
            kernels[key] = kernel
        }
        try kernel.execute(source: a, weights: b, bias: bias, destination: output)
        if alpha != 1 {
            output.withUnsafeMutableBufferPointer(as: Float.self) { y in
                for i in y.indices { y[i] *= alpha }
            }
        }
        return [output]
    }
}

extension Tensor {
    /// A float32 copy multiplied by `factor`.
    func scaled(by factor: Float) -> Tensor {
        let result = Tensor(uninitialized: .float32, shape: shape)
        let source = pointer(as: Float.self), destination = result.pointer(as: Float.self)
        for i in 0..<count { destination[i] = source[i] * factor }
        return result
    }
}

extension MatMulOperator: PostOpFusing {
    var fusedOpType: String { "MatMul" }

    /// Post-ops and a bias need constant 2-D weights (a MatMul of two activations runs unfused).
    func hasConstantWeights(in constants: [String: Tensor], node: Node) -> Bool {
        node.inputs.count >= 2 && constants[node.inputs[1]]?.rank == 2
    }

    func fusing(_ postOp: PostOp, node: Node) throws -> Operator? {
        guard postOp != .sum else { return nil }
        let fused = MatMulOperator(node: node)
        fused.postOps = postOps + [postOp]
        return fused
    }

    func addingBias(node: Node) throws -> Operator? { MatMulOperator(node: node) }
}

extension GemmOperator: PostOpFusing {
    var fusedOpType: String { "Gemm" }

    func fusing(_ postOp: PostOp, node: Node) throws -> Operator? {
        guard alpha == 1, postOp != .sum else { return nil }
        let fused = try GemmOperator(node: node)
        fused.postOps = postOps + [postOp]
        return fused
    }
}
