import CDNNL
import Foundation
import MPQGraph
import MPQRuntime

/// Dense helpers shared by the quantization techniques (row-major float32).
enum TechniqueMath {
    /// C[m, n] = alpha * op(A) op(B) + beta * C, row-major, through oneDNN's sgemm.
    static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                     _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                     beta: Float = 0, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        if m * n * k <= 1 << 16 {
            // Tiny products (a depthwise group: K = 9) in place: an OpenMP-parallel sgemm per group costs
            // more in fork/join than the arithmetic, and far more on a loaded machine.
            for i in 0..<m {
                for j in 0..<n {
                    var sum: Float = 0
                    for p in 0..<k {
                        sum += (transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j])
                    }
                    c[i * ldc + j] = alpha * sum + (beta == 0 ? 0 : beta * c[i * ldc + j])
                }
            }
            return
        }
        _ = dnnl_sgemm(transA ? 84 : 78, transB ? 84 : 78, dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha,
                       a, dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc))
    }

    /// Per-element scale and integer bounds (qmin - zp, qmax - zp) of an integer quantizer over `shape`,
    /// in row-major order of the tensor; nil for float formats.
    static func elementGrid(_ p: QuantizationParameters, shape: [Int]) throws
        -> (scale: [Float], low: [Float], high: [Float])? {
        guard case .integer = p.format else { return nil }
        let entries = try elementEntries(p, shape: shape)
        var scale = [Float](repeating: 0, count: entries.count), low = scale, high = scale
        for (i, e) in entries.enumerated() {
            scale[i] = p.scales[e]
            low[i] = Float(p.format.qmin - p.zeroPoints[e])
            high[i] = Float(p.format.qmax - p.zeroPoints[e])
        }
        return (scale, low, high)
    }

    /// The parameter index (scale / zero point entry) of each element of a tensor of `shape`, row-major.
    static func elementEntries(_ p: QuantizationParameters, shape: [Int]) throws -> [Int] {
        try p.validate(for: shape)
        let count = shape.reduce(1, *)
        func entry(_ element: Int) -> Int {
            switch p.granularity {
            case .perTensor: return 0
            case .perChannel(let axis):
                let a = axis < 0 ? axis + shape.count : axis
                let inner = shape[(a + 1)...].reduce(1, *)
                return (element / inner) % shape[a]
            case let .perGroup(axis, size):
                let a = axis < 0 ? axis + shape.count : axis
                let inner = shape[(a + 1)...].reduce(1, *), dim = shape[a]
                let outer = element / (inner * dim), index = (element / inner) % dim, rest = element % inner
                return (outer * (dim / size) + index / size) * inner + rest
            }
        }
        return (0..<count).map(entry)
    }
}

/// A weight seen as a matrix [outputs, reduction] (rows = output channels), with the
/// permutation from and to its stored layout: Conv [O, I/g, k...] as is (rows of group
/// g = o / (O / g) use that group's inputs), Gemm [N, K] or transposed [K, N], MatMul [K, N].
struct LayerWeightLayout {
    let shape: [Int]
    let outputs: Int
    let reduction: Int
    let groups: Int
    let transposed: Bool

    init?(node: Node, weight: Tensor) {
        shape = weight.shape
        switch node.opType {
        case "Conv":
            guard weight.rank >= 3 else { return nil }
            outputs = weight.shape[0]
            reduction = weight.shape.dropFirst().reduce(1, *)
            groups = (try? node.int("group", default: 1)) ?? 1
            transposed = false
        case "Gemm":
            guard weight.rank == 2, ((try? node.int("transA", default: 0)) ?? 0) == 0,
                  ((try? node.float("alpha", default: 1)) ?? 1) == 1 else { return nil }
            let transB = ((try? node.int("transB", default: 0)) ?? 0) != 0
            outputs = transB ? weight.shape[0] : weight.shape[1]
            reduction = transB ? weight.shape[1] : weight.shape[0]
            groups = 1
            transposed = !transB
        case "MatMul":
            guard weight.rank == 2 else { return nil }
            outputs = weight.shape[1]
            reduction = weight.shape[0]
            groups = 1
            transposed = true
        default:
            return nil
        }
        guard groups >= 1, outputs % groups == 0 else { return nil }
    }

    var outputsPerGroup: Int { outputs / groups }

    /// Stored-layout values as a [outputs, reduction] matrix.
    func matrix(_ values: [Float]) -> [Float] {
        guard transposed else { return values }
        var result = [Float](repeating: 0, count: values.count)
        for k in 0..<reduction { for o in 0..<outputs { result[o * reduction + k] = values[k * outputs + o] } }
        return result
    }

    /// A [outputs, reduction] matrix back in the stored layout.
    func stored(_ matrix: [Float]) -> [Float] {
        guard transposed else { return matrix }
        var result = [Float](repeating: 0, count: matrix.count)
        for k in 0..<reduction { for o in 0..<outputs { result[k * outputs + o] = matrix[o * reduction + k] } }
        return result
    }
}

/// Input second moments H = E[x xᵀ] of one layer, per group, from sampled
/// positions of its input (im2col patches for Conv, rows for Gemm/MatMul):
/// the output error of a weight perturbation ΔW is then tr(ΔW H ΔWᵀ).
struct LayerInputStatistics {
    /// Per group, [K, K] row-major.
    var second: [[Float]]
    /// Per group, mean patch [K].
    var mean: [Float]
    let reduction: Int
    let samples: Int
    /// The sampled rows [samples, K] when fewer than K / 2 (one group): products go through them.
    var lowRankRows: [Float]? = nil

    /// `x` is the layer's (quantized) input; at most `maximumSamples` positions, drawn with `seed`.
    init?(node: Node, layout: LayerWeightLayout, input x: Tensor, maximumSamples: Int, seed: UInt64) throws {
        guard x.dtype == .float32 else { return nil }
        let K = layout.reduction
        reduction = K
        let values = x.pointer(as: Float.self)
        var rng = SplitMix64(seed: seed)
        if node.opType == "Conv" {
            guard x.rank == 4, layout.shape.count == 4 else { return nil }
            let autoPad = (try? node.string("auto_pad", default: "NOTSET")) ?? "NOTSET"
            guard autoPad == "NOTSET" || autoPad == "VALID" else { return nil }
            let (n, c, ih, iw) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let kh = layout.shape[2], kw = layout.shape[3], cg = layout.shape[1]
            guard cg * layout.groups == c else { return nil }
            let strides = (try node.ints("strides")) ?? [1, 1], dilations = (try node.ints("dilations")) ?? [1, 1]
            let pads = autoPad == "VALID" ? [0, 0, 0, 0] : ((try node.ints("pads")) ?? [0, 0, 0, 0])
            guard strides.count == 2, dilations.count == 2, pads.count == 4 else { return nil }
            let oh = (ih + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) / strides[0] + 1
            let ow = (iw + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) / strides[1] + 1
            let total = n * oh * ow
            guard total > 0 else { return nil }
            let count = min(total, maximumSamples)
            let positions: [Int] = count == total ? Array(0..<total) : (0..<count).map { _ in Int(rng.next() % UInt64(total)) }
            samples = count
            var result: [[Float]] = []
            var means: [Float] = []
            var patches = [Float](repeating: 0, count: count * K)
            for g in 0..<layout.groups {
                // Patches [count, K] of group g.
                patches.withUnsafeMutableBufferPointer { buffer in
                    let p = buffer.baseAddress!
                    for (row, position) in positions.enumerated() {
                        let b = position / (oh * ow), oy = (position / ow) % oh, ox = position % ow
                        var k = 0
                        for ci in 0..<cg {
                            let plane = values + ((b * c + g * cg + ci) * ih * iw)
                            for ky in 0..<kh {
                                let iy = oy * strides[0] - pads[0] + ky * dilations[0]
                                for kx in 0..<kw {
                                    let ix = ox * strides[1] - pads[1] + kx * dilations[1]
                                    p[row * K + k] = (iy >= 0 && iy < ih && ix >= 0 && ix < iw) ? plane[iy * iw + ix] : 0
                                    k += 1
                                }
                            }
                        }
                    }
                }
                let (h, m) = Self.moments(patches, rows: count, columns: K)
                result.append(h)
                means += m
            }
            second = result
            mean = means
        } else {
            guard x.rank >= 1, x.shape.last == K else { return nil }
            let total = x.count / K
            guard total > 0 else { return nil }
            let count = min(total, maximumSamples)
            samples = count
            var rows = [Float](repeating: 0, count: count * K)
            for r in 0..<count {
                let source = count == total ? r : Int(rng.next() % UInt64(total))
                for k in 0..<K { rows[r * K + k] = values[source * K + k] }
            }
            let (h, m) = Self.moments(rows, rows: count, columns: K)
            second = [h]
            mean = m
            if 2 * count < K { lowRankRows = rows }
        }
    }

    /// product = alpha * delta H (per group), delta and product [outputs, K]; through the
    /// sampled rows X (H = Xᵀ X / P, two products of O P K) when there are few of them.
    func multiply(_ delta: UnsafePointer<Float>, alpha: Float, into product: UnsafeMutablePointer<Float>,
                  layout: LayerWeightLayout) {
        let K = reduction, og = layout.outputsPerGroup
        if let x = lowRankRows, layout.groups == 1 {
            let p = samples
            var t = [Float](repeating: 0, count: og * p)
            x.withUnsafeBufferPointer { xs in
                t.withUnsafeMutableBufferPointer { tp in
                    TechniqueMath.gemm(transB: true, m: og, n: p, k: K, delta, lda: K, xs.baseAddress!, ldb: K, tp.baseAddress!, ldc: p)
                    TechniqueMath.gemm(m: og, n: K, k: p, alpha: alpha / Float(p), tp.baseAddress!, lda: p, xs.baseAddress!, ldb: K,
                                       product, ldc: K)
                }
            }
            return
        }
        for g in 0..<layout.groups {
            second[g].withUnsafeBufferPointer { h in
                TechniqueMath.gemm(m: og, n: K, k: K, alpha: alpha, delta + g * og * K, lda: K, h.baseAddress!, ldb: K,
                                   product + g * og * K, ldc: K)
            }
        }
    }

    private static func moments(_ x: [Float], rows: Int, columns: Int) -> ([Float], [Float]) {
        var h = [Float](repeating: 0, count: columns * columns)
        x.withUnsafeBufferPointer { a in
            h.withUnsafeMutableBufferPointer { c in
                TechniqueMath.gemm(transA: true, m: columns, n: columns, k: rows, alpha: 1 / Float(rows),
                                   a.baseAddress!, lda: columns, a.baseAddress!, ldb: columns, c.baseAddress!, ldc: columns)
            }
        }
        var mean = [Float](repeating: 0, count: columns)
        for r in 0..<rows { for k in 0..<columns { mean[k] += x[r * columns + k] } }
        return (h, mean.map { $0 / Float(rows) })
    }

    /// Per output row o of `delta` [outputs, K]: delta_o H_g delta_oᵀ (the mean squared output error).
    func rowErrors(_ delta: [Float], layout: LayerWeightLayout) -> [Double] {
        let K = reduction
        var product = [Float](repeating: 0, count: delta.count)
        delta.withUnsafeBufferPointer { d in
            product.withUnsafeMutableBufferPointer { p in
                multiply(d.baseAddress!, alpha: 1, into: p.baseAddress!, layout: layout)
            }
        }
        return (0..<layout.outputs).map { o in
            var s = 0.0
            for k in 0..<K { s += Double(product[o * K + k]) * Double(delta[o * K + k]) }
            return s
        }
    }
}

extension Node {
    /// Makes `name` the bias (input 2) of a Conv / Gemm; missing earlier inputs become "" (absent).
    mutating func setBias(_ name: String) {
        while inputs.count < 2 { inputs.append("") }
        if inputs.count == 2 { inputs.append(name) } else { inputs[2] = name }
    }
}
