import Foundation

/// GPTQ second-order rounding (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization
/// for Generative Pre-trained Transformers", Algorithm 1 with its lazy batch updates): the columns of a weight
/// matrix W [O, K] are rounded one at a time, and each column's rounding error is spread over the
/// columns not yet rounded through the inverse of the layer's input second moment H = E[x xᵀ], so
/// that the layer's output error tr(ΔW H ΔWᵀ) stays near the least the grid allows.
///
/// With U the upper Cholesky factor of H⁻¹ (H damped by `damping` x its mean diagonal, columns
/// that never see an input pinned to 1): for column i, q = round(W[:, i]) on the grid, e = (W[:, i] -
/// q) / U[i, i], W[:, i+1...] -= e U[i, i+1...], applied within a batch of 128 columns at once and
/// to the columns beyond it by one sgemm per batch. One pass costs O(K³/3) for the factorisation
/// and O(O K²) for the updates, against AdaRound's iterations x O K² per layer; it is the cheaper
/// refinement for the wide MatMul / Gemm layers of transformers.
enum GPTQRounding {
    /// Columns rounded between two deferred updates of the rest (the paper's lazy batches).
    static let batch = 128
    /// Block size of the factorisations.
    static let block = 64

    /// The rounded [O, K] matrix (layout order, on the grid `scale` / `low` / `high`, per element),
    /// or nil when H is not positive definite even after damping.
    static func round(_ w: [Float], scale: [Float], low: [Float], high: [Float], stats: LayerInputStatistics,
                      layout: LayerWeightLayout, damping: Float = 0.01) -> [Float]? {
        let K = layout.reduction, rows = layout.outputsPerGroup
        var result = w
        for g in 0..<layout.groups {
            guard let u = inverseFactor(stats.second[g], size: K, damping: damping) else { return nil }
            let offset = g * rows * K
            var failed = false
            result.withUnsafeMutableBufferPointer { buffer in
                let weights = buffer.baseAddress! + offset
                u.withUnsafeBufferPointer { factor in
                    let u = factor.baseAddress!
                    var errors = [Float](repeating: 0, count: rows * batch)
                    for start in stride(from: 0, to: K, by: batch) {
                        let end = min(start + batch, K), width = end - start
                        for i in start..<end {
                            let pivot = u[i * K + i]
                            guard pivot > 0, pivot.isFinite else { failed = true; return }
                            for r in 0..<rows {
                                let element = offset + r * K + i
                                let level = min(max((weights[r * K + i] / scale[element]).rounded(.toNearestOrEven), low[element]), high[element])
                                let q = level * scale[element]
                                let e = (weights[r * K + i] - q) / pivot
                                weights[r * K + i] = q
                                errors[r * width + (i - start)] = e
                                for j in (i + 1)..<end { weights[r * K + j] -= e * u[i * K + j] }
                            }
                        }
                        guard end < K else { continue }
                        errors.withUnsafeBufferPointer { e in
                            TechniqueMath.gemm(m: rows, n: K - end, k: width, alpha: -1, e.baseAddress!, lda: width,
                                               u + start * K + end, ldb: K, beta: 1, weights + end, ldc: K)
                        }
                    }
                }
            }
            if failed { return nil }
        }
        return result
    }

    /// U upper triangular with H⁻¹ = Uᵀ U (row-major [K, K]), for H = `second` damped by `damping` x
    /// its mean diagonal; nil when that is not positive definite.
    ///
    /// With J the reversal of the indices and J H J = L Lᵀ (Cholesky), H = R Rᵀ for the upper
    /// triangular R = J L J, so H⁻¹ = R⁻ᵀ R⁻¹ and U = R⁻¹ = J L⁻¹ J: one factorisation and one
    /// triangular inverse, both blocked around oneDNN's sgemm.
    static func inverseFactor(_ second: [Float], size K: Int, damping: Float) -> [Float]? {
        let mean = (0..<K).reduce(Float(0)) { $0 + max(second[$1 * K + $1], 0) } / Float(max(K, 1))
        let damp = damping * (mean > 0 ? mean : 1)
        var reversed = [Float](repeating: 0, count: K * K)
        for i in 0..<K where second[i * K + i] > 0 {
            for j in 0..<K where second[j * K + j] > 0 { reversed[(K - 1 - i) * K + (K - 1 - j)] = second[i * K + j] }
        }
        // A column no input reaches (zero diagonal): its weights do not matter; pin it to 1.
        for i in 0..<K { reversed[i * K + i] = (second[(K - 1 - i) * K + (K - 1 - i)] > 0 ? reversed[i * K + i] : 1) + damp }
        guard cholesky(&reversed, size: K) else { return nil }
        let inverse = lowerInverse(reversed, size: K)
        var u = [Float](repeating: 0, count: K * K)
        for i in 0..<K { for j in i..<K { u[i * K + j] = inverse[(K - 1 - i) * K + (K - 1 - j)] } }
        return u
    }

    /// Replaces the lower triangle of `a` [K, K] (row-major, symmetric) by its Cholesky factor L
    /// (a = L Lᵀ) and zeroes the upper; false when `a` is not positive definite. Right-looking, in
    /// blocks: each diagonal block and its panel by substitution, the trailing matrix by sgemm.
    static func cholesky(_ a: inout [Float], size K: Int) -> Bool {
        a.withUnsafeMutableBufferPointer { buffer in
            let a = buffer.baseAddress!
            for k0 in stride(from: 0, to: K, by: block) {
                let k1 = min(k0 + block, K)
                for i in k0..<K {
                    for j in k0..<min(i + 1, k1) {
                        var sum = a[i * K + j]
                        for t in k0..<j { sum -= a[i * K + t] * a[j * K + t] }
                        if i == j {
                            guard sum > 0, sum.isFinite else { return false }
                            a[i * K + i] = sum.squareRoot()
                        } else {
                            a[i * K + j] = sum / a[j * K + j]
                        }
                    }
                }
                guard k1 < K else { continue }
                let panel = a + k1 * K + k0
                TechniqueMath.gemm(transB: true, m: K - k1, n: K - k1, k: k1 - k0, alpha: -1, panel, lda: K, panel, ldb: K,
                                   beta: 1, a + k1 * K + k1, ldc: K)
            }
            for i in 0..<K { for j in (i + 1)..<K { a[i * K + j] = 0 } }
            return true
        }
    }

    /// L⁻¹ of a lower-triangular L [K, K] with a positive diagonal, by blocked forward substitution:
    /// rows i0..<i1 of X = L⁻¹ are L_II⁻¹ (I_I − L_I,<i0 X_<i0), the product by sgemm.
    static func lowerInverse(_ l: [Float], size K: Int) -> [Float] {
        var x = [Float](repeating: 0, count: K * K)
        l.withUnsafeBufferPointer { lBuffer in
            x.withUnsafeMutableBufferPointer { xBuffer in
                let l = lBuffer.baseAddress!, x = xBuffer.baseAddress!
                for i0 in stride(from: 0, to: K, by: block) {
                    let i1 = min(i0 + block, K)
                    if i0 > 0 {
                        TechniqueMath.gemm(m: i1 - i0, n: i0, k: i0, alpha: -1, l + i0 * K, lda: K, x, ldb: K, x + i0 * K, ldc: K)
                    }
                    for r in i0..<i1 {
                        x[r * K + r] = 1
                        for c in 0...r {
                            var value = x[r * K + c]
                            for t in max(i0, c)..<r { value -= l[r * K + t] * x[t * K + c] }
                            x[r * K + c] = value / l[r * K + r]
                        }
                    }
                }
            }
        }
        return x
    }
}
