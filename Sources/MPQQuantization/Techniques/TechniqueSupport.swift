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

/// Input second moments H = E[x̂ x̂ᵀ] of one layer, per group, from sampled
/// positions of its input x̂ (im2col patches for Conv, rows for Gemm/MatMul):
/// the output error of a weight perturbation ΔW is then tr(ΔW H ΔWᵀ).
///
/// With the FP32 model's input x of the same layer (`reference`), the error is the
/// asymmetric reconstruction error of AdaRound (Nagel et al. 2020, §5, eq. 25)
/// E‖(W + ΔW) x̂ − W x‖² = tr(ΔW H ΔWᵀ) − 2 tr(ΔW Tᵀ) + c, with r = x − x̂ the error the
/// quantized layers before this one leave, T = W E[r x̂ᵀ] and c_o = E[(w_o r)²]: the rounding
/// then also makes up for what earlier layers got wrong, instead of only matching this
/// layer's float output on its already-perturbed input.
struct LayerInputStatistics {
    /// Per group, [K, K] row-major.
    var second: [[Float]]
    /// Per group, mean patch [K].
    var mean: [Float]
    let reduction: Int
    let samples: Int
    /// The sampled rows [samples, K] when fewer than K / 2 (one group): products go through them.
    var lowRankRows: [Float]? = nil
    /// T = W E[r x̂ᵀ], [outputs, K] in matrix order, when a reference input was given.
    var target: [Float]? = nil
    /// c_o = E[(w_o r)²] per output row, when a reference input was given.
    var targetConstant: [Double]? = nil

    /// `x` is the layer's (quantized) input; at most `maximumSamples` positions, drawn with `seed`.
    /// `reference` (the FP32 model's input of the layer, shaped like `x`) with `weights` (the float
    /// [outputs, K] matrix) makes the errors asymmetric (see above). `tokenMask` (one flag per row
    /// of a Gemm / MatMul input, e.g. a transformer's attention mask over [N, S, K]) limits the rows
    /// drawn to those it keeps: padded positions are read by no output.
    init?(node: Node, layout: LayerWeightLayout, input x: Tensor, maximumSamples: Int, seed: UInt64,
          reference: Tensor? = nil, weights: [Float]? = nil, tokenMask: [Bool]? = nil) throws {
        guard x.dtype == .float32 else { return nil }
        let K = layout.reduction
        reduction = K
        let values = x.pointer(as: Float.self)
        let asymmetric = reference != nil && weights != nil
        if let reference {
            guard reference.dtype == .float32, reference.shape == x.shape, weights?.count == layout.outputs * K else { return nil }
        }
        let referenceValues = reference?.pointer(as: Float.self)
        var targets = [Float](repeating: 0, count: asymmetric ? layout.outputs * K : 0)
        var constants = [Double](repeating: 0, count: asymmetric ? layout.outputs : 0)
        /// Adds group g's T rows and c entries from sampled rows X̂ and R = X - X̂ (both [rows, K]).
        func accumulateTarget(group g: Int, quantized: [Float], error: [Float], rows: Int) {
            guard let weights else { return }
            let og = layout.outputsPerGroup
            var a = [Float](repeating: 0, count: og * rows)
            weights.withUnsafeBufferPointer { w in
                error.withUnsafeBufferPointer { r in
                    a.withUnsafeMutableBufferPointer { ap in
                        TechniqueMath.gemm(transB: true, m: og, n: rows, k: K, w.baseAddress! + g * og * K, lda: K,
                                           r.baseAddress!, ldb: K, ap.baseAddress!, ldc: rows)
                    }
                }
            }
            a.withUnsafeBufferPointer { ap in
                quantized.withUnsafeBufferPointer { xq in
                    targets.withUnsafeMutableBufferPointer { t in
                        TechniqueMath.gemm(m: og, n: K, k: rows, alpha: 1 / Float(rows), ap.baseAddress!, lda: rows,
                                           xq.baseAddress!, ldb: K, t.baseAddress! + g * og * K, ldc: K)
                    }
                }
                for o in 0..<og {
                    var s = 0.0
                    for p in 0..<rows { s += Double(ap[o * rows + p]) * Double(ap[o * rows + p]) }
                    constants[g * og + o] = s / Double(rows)
                }
            }
        }
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
            /// Patches [count, K] of group g of `values`.
            func patches(_ values: UnsafePointer<Float>, group g: Int) -> [Float] {
                var patches = [Float](repeating: 0, count: count * K)
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
                return patches
            }
            for g in 0..<layout.groups {
                let quantized = patches(values, group: g)
                let (h, m) = Self.moments(quantized, rows: count, columns: K)
                result.append(h)
                means += m
                if asymmetric, let referenceValues {
                    let error = zip(patches(referenceValues, group: g), quantized).map { $0 - $1 }
                    accumulateTarget(group: g, quantized: quantized, error: error, rows: count)
                }
            }
            second = result
            mean = means
        } else {
            guard x.rank >= 1, x.shape.last == K else { return nil }
            let rowCount = x.count / K
            guard tokenMask == nil || tokenMask?.count == rowCount else { return nil }
            let kept = tokenMask.map { mask in mask.indices.filter { mask[$0] } } ?? Array(0..<rowCount)
            let total = kept.count
            guard total > 0 else { return nil }
            let count = min(total, maximumSamples)
            samples = count
            var rows = [Float](repeating: 0, count: count * K)
            var error = [Float](repeating: 0, count: asymmetric ? count * K : 0)
            for r in 0..<count {
                let source = kept[count == total ? r : Int(rng.next() % UInt64(total))]
                for k in 0..<K { rows[r * K + k] = values[source * K + k] }
                if asymmetric, let referenceValues {
                    for k in 0..<K { error[r * K + k] = referenceValues[source * K + k] - values[source * K + k] }
                }
            }
            let (h, m) = Self.moments(rows, rows: count, columns: K)
            second = [h]
            mean = m
            if 2 * count < K { lowRankRows = rows }
            if asymmetric { accumulateTarget(group: 0, quantized: rows, error: error, rows: count) }
        }
        if asymmetric {
            target = targets
            targetConstant = constants
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
            if let target, let targetConstant {
                var cross = 0.0
                for k in 0..<K { cross += Double(target[o * K + k]) * Double(delta[o * K + k]) }
                s += targetConstant[o] - 2 * cross
            }
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
