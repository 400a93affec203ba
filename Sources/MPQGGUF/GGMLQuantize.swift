import Foundation

// Quantisation, ported from ggml-quants.c (llama.cpp as vendored by llama-cpp-python 0.3.36).
// Every float operation is written in the same order and with the same int/float conversions as
// the C code (which ggml-base compiles without FMA contraction), so the bytes are identical.

extension GGMLQuants {
    /// Quantises rows of float32 values to `type`, exactly as `ggml_quantize_chunk` in llama.cpp.
    ///
    /// Without `importance` this is the reference path llama-quantize takes without an importance
    /// matrix (`quantize_row_*_ref`, or `quantize_iq4_*` with no weights); with it, the
    /// importance-weighted path (`quantize_row_*_impl`). Q8_0, F16, BF16 and F32 ignore `importance`
    /// as llama.cpp does.
    ///
    /// - Parameters:
    ///   - type: the ggml type to encode to.
    ///   - values: `rows × rowLength` values, row after row.
    ///   - rowLength: values per row (ne0); must be a multiple of `type.blockSize`.
    ///   - importance: `rowLength` weights (an importance-matrix entry, one per column), or nil.
    ///   - output: at least `rows × type.byteCount(elements: rowLength)` bytes.
    ///   - parallel: quantise groups of rows concurrently (the result does not depend on it).
    public static func quantize(_ type: GGMLType, values: UnsafeBufferPointer<Float>, rowLength: Int,
                                importance: UnsafeBufferPointer<Float>? = nil,
                                into output: UnsafeMutableRawBufferPointer, parallel: Bool = true) throws {
        guard type.canQuantize else { throw GGUFError(.unsupportedType, file: "", "quantisation to \(type.name) is not supported") }
        guard rowLength > 0, let rowBytes = type.byteCount(elements: rowLength) else {
            throw GGUFError(.invalidArgument, file: "", "row length \(rowLength) is not a positive multiple of the \(type.name) block size \(type.blockSize)")
        }
        guard values.count % rowLength == 0 else {
            throw GGUFError(.invalidArgument, file: "", "\(values.count) values is not a whole number of rows of \(rowLength)")
        }
        let rows = values.count / rowLength
        guard case let (total, o) = rows.multipliedReportingOverflow(by: rowBytes), !o, total <= output.count else {
            throw GGUFError(.invalidArgument, file: "", "output buffer of \(output.count) bytes is too small for \(rows) rows of \(rowBytes) bytes")
        }
        if let importance, importance.count != rowLength {
            throw GGUFError(.invalidArgument, file: "", "importance has \(importance.count) values, expected one per column (\(rowLength))")
        }
        guard rows > 0 else { return }
        let src = values.baseAddress!
        let dst = output.baseAddress!
        let qw = importance?.baseAddress
        // Groups of rows of about 64K values: enough work per task, enough tasks for all cores.
        let rowsPerTask = max(1, 65536 / rowLength)
        let tasks = (rows + rowsPerTask - 1) / rowsPerTask
        let work: (Int) -> Void = { task in
            let scratch = QuantScratch()
            let first = task * rowsPerTask
            for r in first ..< min(rows, first + rowsPerTask) {
                quantizeRow(type, src + r * rowLength, dst + r * rowBytes, rowLength, qw, scratch)
            }
        }
        if parallel && tasks > 1 {
            DispatchQueue.concurrentPerform(iterations: tasks, execute: work)
        } else {
            for t in 0..<tasks { work(t) }
        }
    }

    /// Quantises `values` (rows of `rowLength`) to `type` and returns the bytes; see
    /// `quantize(_:values:rowLength:importance:into:parallel:)`.
    public static func quantize(_ type: GGMLType, values: [Float], rowLength: Int, importance: [Float]? = nil,
                                parallel: Bool = true) throws -> [UInt8] {
        guard rowLength > 0, values.count % rowLength == 0, let rowBytes = type.byteCount(elements: rowLength),
              case let (total, o) = (values.count / rowLength).multipliedReportingOverflow(by: rowBytes), !o else {
            throw GGUFError(.invalidArgument, file: "", "\(values.count) values cannot be split into \(type.name) rows of \(rowLength)")
        }
        var out = [UInt8](repeating: 0, count: total)
        try values.withUnsafeBufferPointer { v in
            try out.withUnsafeMutableBytes { o in
                if let importance {
                    try importance.withUnsafeBufferPointer { q in
                        try quantize(type, values: v, rowLength: rowLength, importance: q, into: o, parallel: parallel)
                    }
                } else {
                    try quantize(type, values: v, rowLength: rowLength, importance: nil, into: o, parallel: parallel)
                }
            }
        }
        return out
    }

    /// Quantises one row of `n` values (a multiple of the block size) into `y`.
    static func quantizeRow(_ type: GGMLType, _ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int,
                            _ qw: UnsafePointer<Float>?, _ s: QuantScratch) {
        switch type {
        case .f32:
            for i in 0..<n { y.storeBytes(of: x[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        case .f16:
            for i in 0..<n { y.storeBytes(of: GGMLScalar.floatToFP16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16:
            for i in 0..<n { y.storeBytes(of: GGMLScalar.floatToBF16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .q4_0: if let qw { q4_0Impl(x, y, n, qw, s) } else { q4_0Ref(x, y, n) }
        case .q4_1: if let qw { q4_1Impl(x, y, n, qw, s) } else { q4_1Ref(x, y, n) }
        case .q5_0: if let qw { q5_0Impl(x, y, n, qw, s) } else { q5_0Ref(x, y, n) }
        case .q5_1: if let qw { q5_1Impl(x, y, n, qw, s) } else { q5_1Ref(x, y, n) }
        case .q8_0: q8_0Ref(x, y, n)
        case .q2_K: if let qw { q2_KImpl(x, y, n, qw, s) } else { q2_KRef(x, y, n, s) }
        case .q3_K: if let qw { q3_KImpl(x, y, n, qw, s) } else { q3_KRef(x, y, n, s) }
        case .q4_K, .q5_K:
            let nmax: Int32 = type == .q5_K ? 31 : 15
            if let qw { q45_KImpl(nmax, x, y, n, qw, s) } else { q45_KRef(nmax, x, y, n, s) }
        case .q6_K: q6_K(x, y, n, qw, s)
        case .iq4_nl:
            for ib in 0..<(n / 32) {
                iq4nlImpl(32, x + 32 * ib, y + 18 * ib, qw.map { $0 + 32 * ib }, 7, s)
            }
        case .iq4_xs:
            for ib in 0..<(n / 256) {
                iq4nlImpl(256, x + 256 * ib, y + 136 * ib, qw.map { $0 + 256 * ib }, 7, s)
            }
        default:
            break  // rejected by the callers
        }
    }
}

/// Per-task scratch buffers (the C code's stack arrays), reused across the rows of one task.
final class QuantScratch {
    let L = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
    let Li = UnsafeMutablePointer<Int8>.allocate(capacity: 256)
    let Laux = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
    let weights = UnsafeMutablePointer<Float>.allocate(capacity: 32)
    let mins = UnsafeMutablePointer<Float>.allocate(capacity: 16)
    let scales = UnsafeMutablePointer<Float>.allocate(capacity: 16)
    let sw = UnsafeMutablePointer<Float>.allocate(capacity: 16)
    let Ls = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
    let Lsi = UnsafeMutablePointer<Int8>.allocate(capacity: 16)
    let Lm = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)

    init() {
        L.initialize(repeating: 0, count: 256)
        Li.initialize(repeating: 0, count: 256)
        Laux.initialize(repeating: 0, count: 32)
        weights.initialize(repeating: 0, count: 32)
        mins.initialize(repeating: 0, count: 16)
        scales.initialize(repeating: 0, count: 16)
        sw.initialize(repeating: 0, count: 16)
        Ls.initialize(repeating: 0, count: 16)
        Lsi.initialize(repeating: 0, count: 16)
        Lm.initialize(repeating: 0, count: 16)
    }

    deinit {
        L.deallocate(); Li.deallocate(); Laux.deallocate(); weights.deallocate()
        mins.deallocate(); scales.deallocate(); sw.deallocate(); Ls.deallocate(); Lsi.deallocate(); Lm.deallocate()
    }
}

// MARK: - Helpers (ggml-quants.c)

private let groupMaxEps: Float = 1e-15

@inline(__always) private func nearestInt(_ x: Float) -> Int32 { GGMLScalar.nearestInt(x) }

/// `(int8_t)x` / `(uint8_t)x` for a float x in C on x86-64: truncation via a 32-bit conversion.
@inline(__always) private func cInt8(_ x: Float) -> Int8 { Int8(truncatingIfNeeded: GGMLScalar.truncateToInt32(x)) }
@inline(__always) private func cUInt8(_ x: Float) -> UInt8 { UInt8(truncatingIfNeeded: GGMLScalar.truncateToInt32(x)) }

@inline(__always) private func storeHalf(_ y: UnsafeMutableRawPointer, _ offset: Int, _ v: Float) {
    y.storeBytes(of: GGMLScalar.floatToFP16(v).littleEndian, toByteOffset: offset, as: UInt16.self)
}

@inline(__always) private func loadHalf(_ y: UnsafeMutableRawPointer, _ offset: Int) -> Float {
    GGMLScalar.fp16ToFloat(y.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
}

@inline(__always) private func bytes(_ y: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt8> {
    (y + offset).assumingMemoryBound(to: UInt8.self)
}

/// `MAX(lo, MIN(hi, v))`.
@inline(__always) private func clamp(_ v: Int32, _ lo: Int32, _ hi: Int32) -> Int32 { max(lo, min(hi, v)) }

/// The value of largest magnitude in `x[0..<n]` (the first on ties), as `make_qx_quants` and
/// `make_q3_quants` find it; nil, with `L` zeroed, when that magnitude is below `groupMaxEps`.
@inline(__always) private func signedAbsMax(_ n: Int, _ x: UnsafePointer<Float>, zeroing L: UnsafeMutablePointer<Int8>) -> Float? {
    var maxv: Float = 0
    var amax: Float = 0
    for i in 0..<n {
        let ax = abs(x[i])
        if ax > amax { amax = ax; maxv = x[i] }
    }
    if amax < groupMaxEps {
        for i in 0..<n { L[i] = 0 }
        return nil
    }
    return maxv
}

/// `make_qx_quants`: symmetric quants L in [0, 2·nmax) and the scale (weighted RMSE search).
private func makeQxQuants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                          _ rmseTypeIn: Int, _ qw: UnsafePointer<Float>?) -> Float {
    guard let maxv = signedAbsMax(n, x, zeroing: L) else { return 0 }
    var iscale = Float(-nmax) / maxv
    if rmseTypeIn == 0 {
        for i in 0..<n {
            let l = nearestInt(iscale * x[i])
            L[i] = Int8(truncatingIfNeeded: nmax + clamp(l, -nmax, nmax - 1))
        }
        return 1 / iscale
    }
    var rmseType = rmseTypeIn
    var returnEarly = false
    if rmseType < 0 {
        rmseType = -rmseType
        returnEarly = true
    }
    @inline(__always) func weight(_ i: Int) -> Float {
        if let qw { return qw[i] }
        switch rmseType {
        case 1: return x[i] * x[i]
        case 2: return 1
        case 3: return abs(x[i])
        default: return abs(x[i]).squareRoot()
        }
    }
    var sumlx: Float = 0
    var suml2: Float = 0
    for i in 0..<n {
        let l = clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1)
        L[i] = Int8(truncatingIfNeeded: l + nmax)
        let w = weight(i)
        let fl = Float(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    }
    var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
    if returnEarly { return suml2 > 0 ? 0.5 * (scale + 1 / iscale) : 1 / iscale }
    var best = scale * sumlx
    for step in -9...9 where step != 0 {
        iscale = -(Float(nmax) + 0.1 * Float(step)) / maxv
        sumlx = 0
        suml2 = 0
        for i in 0..<n {
            let l = clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1)
            let w = weight(i)
            let fl = Float(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        }
        if suml2 > 0 && sumlx * sumlx > best * suml2 {
            for i in 0..<n {
                let l = nearestInt(iscale * x[i])
                L[i] = Int8(truncatingIfNeeded: nmax + clamp(l, -nmax, nmax - 1))
            }
            scale = sumlx / suml2
            best = scale * sumlx
        }
    }
    return scale
}

/// `make_q3_quants`.
private func makeQ3Quants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>, _ doRmse: Bool) -> Float {
    guard let maxv = signedAbsMax(n, x, zeroing: L) else { return 0 }
    let iscale = Float(-nmax) / maxv
    if doRmse {
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1)
            L[i] = Int8(truncatingIfNeeded: l)
            let w = x[i] * x[i]
            let fl = Float(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = x[i] * x[i]
                let li = Float(L[i])
                var slx = sumlx - w * x[i] * li
                if slx > 0 {
                    var sl2 = suml2 - w * li * li
                    let newL = clamp(nearestInt(x[i] * sl2 / slx), -nmax, nmax - 1)
                    if newL != Int32(L[i]) {
                        let fl = Float(newL)
                        slx += w * x[i] * fl
                        sl2 += w * fl * fl
                        if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = Int8(truncatingIfNeeded: newL)
                            sumlx = slx
                            suml2 = sl2
                            changed += 1
                        }
                    }
                }
            }
            if changed == 0 { break }
        }
        for i in 0..<n { L[i] = L[i] &+ Int8(truncatingIfNeeded: nmax) }
        return suml2 > 0 ? sumlx / suml2 : 0
    }
    for i in 0..<n {
        let l = clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1)
        L[i] = Int8(truncatingIfNeeded: l + nmax)
    }
    return 1 / iscale
}

/// `make_qkx2_quants` and `make_qkx3_quants` (`qkx3` selects qkx3's `max <= min` test instead of
/// qkx2's `max == min`; otherwise they are the same code).
///
/// Every caller in ggml passes weights, so they are required here (qkx3's x² default is unused).
private func makeQkxQuants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                           _ L: UnsafeMutablePointer<UInt8>, _ theMin: inout Float, _ Laux: UnsafeMutablePointer<UInt8>,
                           _ rmin: Float, _ rdelta: Float, _ nstep: Int, _ useMad: Bool, qkx3: Bool) -> Float {
    @inline(__always) func weight(_ i: Int) -> Float { weights[i] }
    var minv = x[0]
    var maxv = x[0]
    var sumW = weight(0)
    var sumX = sumW * x[0]
    for i in 1..<n {
        if x[i] < minv { minv = x[i] }
        if x[i] > maxv { maxv = x[i] }
        let w = weight(i)
        sumW += w
        sumX += w * x[i]
    }
    if minv > 0 { minv = 0 }
    if qkx3 ? maxv <= minv : maxv == minv {
        for i in 0..<n { L[i] = 0 }
        theMin = -minv
        return 0
    }
    let nmaxf = Float(nmax)
    var iscale = nmaxf / (maxv - minv)
    var scale = 1 / iscale
    var bestError: Float = 0
    for i in 0..<n {
        let l = nearestInt(iscale * (x[i] - minv))
        L[i] = UInt8(truncatingIfNeeded: clamp(l, 0, nmax))
        var diff = scale * Float(L[i]) + minv - x[i]
        diff = useMad ? abs(diff) : diff * diff
        bestError += weight(i) * diff
    }
    if nstep < 1 {
        theMin = -minv
        return scale
    }
    for step in 0...nstep {
        iscale = (rmin + rdelta * Float(step) + nmaxf) / (maxv - minv)
        var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
        for i in 0..<n {
            let l = clamp(nearestInt(iscale * (x[i] - minv)), 0, nmax)
            Laux[i] = UInt8(truncatingIfNeeded: l)
            let w = weight(i)
            let fl = Float(l)
            sumL += w * fl
            sumL2 += w * fl * fl
            sumXL += w * fl * x[i]
        }
        let D = sumW * sumL2 - sumL * sumL
        if D > 0 {
            var thisScale = (sumW * sumXL - sumX * sumL) / D
            var thisMin = (sumL2 * sumX - sumL * sumXL) / D
            if thisMin > 0 {
                thisMin = 0
                thisScale = sumXL / sumL2
            }
            var curError: Float = 0
            for i in 0..<n {
                var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                diff = useMad ? abs(diff) : diff * diff
                curError += weight(i) * diff
            }
            if curError < bestError {
                for i in 0..<n { L[i] = Laux[i] }
                bestError = curError
                scale = thisScale
                minv = thisMin
            }
        }
    }
    theMin = -minv
    return scale
}

/// `make_qp_quants`: non-negative quants in [0, nmax] for positive x with weights.
private func makeQpQuants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                          _ qw: UnsafePointer<Float>) -> Float {
    var maxv: Float = 0
    for i in 0..<n { maxv = maxv > x[i] ? maxv : x[i] }
    if maxv < groupMaxEps {
        for i in 0..<n { L[i] = 0 }
        return 0
    }
    let nmaxf = Float(nmax)
    var iscale = nmaxf / maxv
    for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: nearestInt(iscale * x[i])) }
    let scale = 1 / iscale
    var bestMse: Float = 0
    for i in 0..<n {
        let diff = x[i] - scale * Float(L[i])
        bestMse += qw[i] * diff * diff
    }
    for step in -4...4 where step != 0 {
        let iscaleIs = (0.1 * Float(step) + nmaxf) / maxv
        let scaleIs = 1 / iscaleIs
        var mse: Float = 0
        for i in 0..<n {
            let l = min(nmax, nearestInt(iscaleIs * x[i]))
            let diff = x[i] - scaleIs * Float(l)
            mse += qw[i] * diff * diff
        }
        if mse < bestMse {
            bestMse = mse
            iscale = iscaleIs
        }
    }
    var sumlx: Float = 0
    var suml2: Float = 0
    for i in 0..<n {
        let l = min(nmax, nearestInt(iscale * x[i]))
        L[i] = UInt8(truncatingIfNeeded: l)
        let w = qw[i]
        let fl = Float(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    }
    for _ in 0..<5 {
        var changed = 0
        for i in 0..<n {
            let w = qw[i]
            let li = Float(L[i])
            var slx = sumlx - w * x[i] * li
            var sl2 = suml2 - w * li * li
            if slx > 0 && sl2 > 0 {
                let newL = min(nmax, nearestInt(x[i] * sl2 / slx))
                if newL != Int32(L[i]) {
                    let fl = Float(newL)
                    slx += w * x[i] * fl
                    sl2 += w * fl * fl
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        L[i] = UInt8(truncatingIfNeeded: newL)
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
                    }
                }
            }
        }
        if changed == 0 { break }
    }
    return suml2 > 0 ? sumlx / suml2 : 0
}

/// `best_index_int8`: index of the level in the sorted table `val` nearest to x.
@inline(__always) private func bestIndexInt8(_ n: Int, _ val: UnsafePointer<Int8>, _ x: Float) -> Int {
    if x <= Float(val[0]) { return 0 }
    if x >= Float(val[n - 1]) { return n - 1 }
    var ml = 0, mu = n - 1
    while mu - ml > 1 {
        let mav = (ml + mu) / 2
        if x < Float(val[mav]) { mu = mav } else { ml = mav }
    }
    return x - Float(val[mu - 1]) < Float(val[mu]) - x ? mu - 1 : mu
}

/// The sum of squares of `n` values, accumulated in order as in the C loops.
@inline(__always) private func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var s: Float = 0
    for j in 0..<n { s += x[j] * x[j] }
    return s
}

// MARK: - 32-value block types

extension GGMLQuants {
    /// The q4_0/q5_0 block header: d = the value of largest magnitude / `divisor`, a half at `b`; returns 1/d (0 for d = 0).
    @inline(__always) private static func absMaxHeader(_ xb: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer, _ divisor: Float) -> Float {
        var amax: Float = 0, maxv: Float = 0
        for j in 0..<32 where amax < abs(xb[j]) { amax = abs(xb[j]); maxv = xb[j] }
        let d = maxv / divisor
        storeHalf(b, 0, d)
        return d != 0 ? 1 / d : 0
    }

    /// The q4_1/q5_1 block header: d = (max - min) / `levels` and the min, halves at `b`; returns the min and 1/d (0 for d = 0).
    @inline(__always) private static func minMaxHeader(_ xb: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer,
                                                       _ levels: Float) -> (minv: Float, id: Float) {
        var minv = Float.greatestFiniteMagnitude, maxv = -Float.greatestFiniteMagnitude
        for j in 0..<32 {
            if xb[j] < minv { minv = xb[j] }
            if xb[j] > maxv { maxv = xb[j] }
        }
        let d = (maxv - minv) / levels
        storeHalf(b, 0, d)
        storeHalf(b, 2, minv)
        return (minv, d != 0 ? 1 / d : 0)
    }

    /// `quantize_row_q4_0_ref`.
    static func q4_0Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int) {
        for i in 0..<(k / 32) {
            let xb = x + 32 * i, b = y + 18 * i
            let id = absMaxHeader(xb, b, -8)
            let qs = bytes(b, 2)
            for j in 0..<16 {
                let x0 = xb[j] * id, x1 = xb[16 + j] * id
                let xi0 = UInt8(truncatingIfNeeded: min(15, Int32(cInt8(x0 + 8.5))))
                let xi1 = UInt8(truncatingIfNeeded: min(15, Int32(cInt8(x1 + 8.5))))
                qs[j] = xi0 | UInt8(truncatingIfNeeded: Int32(xi1) << 4)
            }
        }
    }

    /// `quantize_row_q4_1_ref`.
    static func q4_1Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int) {
        for i in 0..<(k / 32) {
            let xb = x + 32 * i, b = y + 20 * i
            let (minv, id) = minMaxHeader(xb, b, 15)
            let qs = bytes(b, 4)
            for j in 0..<16 {
                let x0 = (xb[j] - minv) * id, x1 = (xb[16 + j] - minv) * id
                let xi0 = UInt8(truncatingIfNeeded: min(15, Int32(cInt8(x0 + 0.5))))
                let xi1 = UInt8(truncatingIfNeeded: min(15, Int32(cInt8(x1 + 0.5))))
                qs[j] = xi0 | UInt8(truncatingIfNeeded: Int32(xi1) << 4)
            }
        }
    }

    /// Packs 32 five-bit quants as q5_0/q5_1 do: low nibbles in qs, fifth bits in qh.
    @inline(__always) private static func packQ5(_ xi0: UInt8, _ xi1: UInt8, _ j: Int, _ qs: UnsafeMutablePointer<UInt8>, _ qh: inout UInt32) {
        qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4)
        qh |= (UInt32(xi0 & 0x10) >> 4) << UInt32(j)
        qh |= (UInt32(xi1 & 0x10) >> 4) << UInt32(j + 16)
    }

    /// `quantize_row_q5_0_ref`.
    static func q5_0Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int) {
        for i in 0..<(k / 32) {
            let xb = x + 32 * i, b = y + 22 * i
            let id = absMaxHeader(xb, b, -16)
            var qh: UInt32 = 0
            let qs = bytes(b, 6)
            for j in 0..<16 {
                let x0 = xb[j] * id, x1 = xb[16 + j] * id
                let xi0 = UInt8(truncatingIfNeeded: min(31, Int32(cInt8(x0 + 16.5))))
                let xi1 = UInt8(truncatingIfNeeded: min(31, Int32(cInt8(x1 + 16.5))))
                packQ5(xi0, xi1, j, qs, &qh)
            }
            b.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
        }
    }

    /// `quantize_row_q5_1_ref`.
    static func q5_1Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int) {
        for i in 0..<(k / 32) {
            let xb = x + 32 * i, b = y + 24 * i
            let (minv, id) = minMaxHeader(xb, b, 31)
            var qh: UInt32 = 0
            let qs = bytes(b, 8)
            for j in 0..<16 {
                let x0 = (xb[j] - minv) * id, x1 = (xb[16 + j] - minv) * id
                packQ5(cUInt8(x0 + 0.5), cUInt8(x1 + 0.5), j, qs, &qh)
            }
            b.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
    }

    /// `quantize_row_q8_0_ref` (llama.cpp has no importance-weighted Q8_0).
    static func q8_0Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int) {
        for i in 0..<(k / 32) {
            let xb = x + 32 * i, b = y + 34 * i
            var amax: Float = 0
            for j in 0..<32 { let v = abs(xb[j]); amax = amax > v ? amax : v }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            storeHalf(b, 0, d)
            let qs = bytes(b, 2)
            for j in 0..<32 {
                qs[j] = UInt8(bitPattern: cInt8((xb[j] * id).rounded(.toNearestOrAwayFromZero)))
            }
        }
    }

    /// `sigma2` of the 32-block `_impl` quantisers: mean square of the whole row.
    /// The 32-value blocks of a row for the legacy `_impl` quantisers: `s.weights` set to
    /// qw[j] · sqrt(σ² + x[j]²) for the block (σ² the row's mean square), then `body(block, output)`.
    @inline(__always) private static func importanceBlocks(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>, _ s: QuantScratch,
        blockBytes: Int, _ body: (_ xb: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer) -> Void
    ) {
        let sigma2 = rowSigma2(x, n)
        for ib in 0..<(n / 32) {
            let xb = x + 32 * ib, qw = qwRow + 32 * ib
            for j in 0..<32 { s.weights[j] = qw[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
            body(xb, y + blockBytes * ib)
        }
    }

    @inline(__always) private static func rowSigma2(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        sumOfSquares(x, n) / Float(n)
    }

    /// `quantize_row_q4_0_impl` (with importance weights).
    static func q4_0Impl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>, _ s: QuantScratch) {
        importanceBlocks(x, y, n, qwRow, s, blockBytes: 18) { xb, b in
            let d = makeQxQuants(32, 8, xb, s.Li, 1, s.weights)
            storeHalf(b, 0, d)
            let qs = bytes(b, 2)
            for j in 0..<16 {
                qs[j] = UInt8(bitPattern: s.Li[j]) | UInt8(truncatingIfNeeded: Int32(s.Li[j + 16]) << 4)
            }
        }
    }

    /// `quantize_row_q4_1_impl`.
    static func q4_1Impl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>, _ s: QuantScratch) {
        importanceBlocks(x, y, n, qwRow, s, blockBytes: 20) { xb, b in
            var minv: Float = 0
            let d = makeQkxQuants(32, 15, xb, s.weights, s.L, &minv, s.Laux, -0.9, 0.05, 36, false, qkx3: true)
            storeHalf(b, 0, d)
            storeHalf(b, 2, -minv)
            let qs = bytes(b, 4)
            for j in 0..<16 { qs[j] = s.L[j] | (s.L[j + 16] << 4) }
        }
    }

    /// `quantize_row_q5_0_impl`.
    static func q5_0Impl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>, _ s: QuantScratch) {
        importanceBlocks(x, y, n, qwRow, s, blockBytes: 22) { xb, b in
            let d = makeQxQuants(32, 16, xb, s.Li, 1, s.weights)
            storeHalf(b, 0, d)
            var qh: UInt32 = 0
            let qs = bytes(b, 6)
            for j in 0..<16 { packQ5(UInt8(bitPattern: s.Li[j]), UInt8(bitPattern: s.Li[j + 16]), j, qs, &qh) }
            b.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
        }
    }

    /// `quantize_row_q5_1_impl`.
    static func q5_1Impl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>, _ s: QuantScratch) {
        importanceBlocks(x, y, n, qwRow, s, blockBytes: 24) { xb, b in
            var minv: Float = 0
            let d = makeQkxQuants(32, 31, xb, s.weights, s.L, &minv, s.Laux, -0.9, 0.05, 36, false, qkx3: true)
            storeHalf(b, 0, d)
            storeHalf(b, 2, -minv)
            var qh: UInt32 = 0
            let qs = bytes(b, 8)
            for j in 0..<16 { packQ5(s.L[j], s.L[j + 16], j, qs, &qh) }
            b.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
    }
}

// MARK: - K-quants (256-value super-blocks)

extension GGMLQuants {
    /// Packs 256 two-bit quants into 64 bytes (Q2_K and Q3_K `qs`).
    @inline(__always) private static func pack2Bit(_ L: UnsafeMutablePointer<UInt8>, _ qs: UnsafeMutablePointer<UInt8>) {
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                qs[j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6)
            }
        }
    }

    /// Requantises Q2_K values with the final (fp16-rounded) scales and packs them.
    @inline(__always) private static func q2_KFinish(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer, _ dm: Float, _ mm: Float, _ L: UnsafeMutablePointer<UInt8>) {
        let scales = bytes(b, 0)
        for j in 0..<16 {
            let d = dm * Float(scales[j] & 0xF)
            if d == 0 { continue }
            let m = mm * Float(scales[j] >> 4)
            for ii in 0..<16 {
                let l = clamp(nearestInt((x[16 * j + ii] + m) / d), 0, 3)
                L[16 * j + ii] = UInt8(truncatingIfNeeded: l)
            }
        }
        pack2Bit(L, bytes(b, 16))
    }

    /// `quantize_row_q2_K_ref`.
    static func q2_KRef(_ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int, _ s: QuantScratch) {
        let q4scale: Float = 15
        for i in 0..<(k / 256) {
            let x = xRow + 256 * i, b = y + 84 * i
            var maxScale: Float = 0, maxMin: Float = 0
            for j in 0..<16 {
                for l in 0..<16 { s.weights[l] = abs(x[16 * j + l]) }
                var m: Float = 0
                s.scales[j] = makeQkxQuants(16, 3, x + 16 * j, s.weights, s.L + 16 * j, &m, s.Laux, -0.5, 0.1, 15, true, qkx3: false)
                s.mins[j] = m
                if s.scales[j] > maxScale { maxScale = s.scales[j] }
                if m > maxMin { maxMin = m }
            }
            let scales = bytes(b, 0)
            if maxScale > 0 {
                let iscale = q4scale / maxScale
                for j in 0..<16 { scales[j] = UInt8(truncatingIfNeeded: nearestInt(iscale * s.scales[j])) }
                storeHalf(b, 80, maxScale / q4scale)
            } else {
                for j in 0..<16 { scales[j] = 0 }
                storeHalf(b, 80, 0)
            }
            if maxMin > 0 {
                let iscale = q4scale / maxMin
                for j in 0..<16 { scales[j] |= UInt8(truncatingIfNeeded: nearestInt(iscale * s.mins[j]) << 4) }
                storeHalf(b, 82, maxMin / q4scale)
            } else {
                storeHalf(b, 82, 0)
            }
            q2_KFinish(x, b, loadHalf(b, 80), loadHalf(b, 82), s.L)
        }
    }

    /// `quantize_row_q2_K_impl`.
    static func q2_KImpl(_ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>, _ s: QuantScratch) {
        for i in 0..<(n / 256) {
            let x = xRow + 256 * i, b = y + 84 * i
            for j in 0..<16 { s.sw[j] = 0 }
            let sigma2 = sumOfSquares(x, 256) / 256
            for j in 0..<16 {
                let qw = qwRow + 256 * i + 16 * j
                for l in 0..<16 { s.weights[l] = qw[l] * (sigma2 + x[16 * j + l] * x[16 * j + l]).squareRoot() }
                for l in 0..<16 { s.sw[j] += s.weights[l] }
                var m: Float = 0
                s.scales[j] = makeQkxQuants(16, 3, x + 16 * j, s.weights, s.L + 16 * j, &m, s.Laux, -0.9, 0.05, 36, false, qkx3: true)
                s.mins[j] = m
            }
            let dm = makeQpQuants(16, 15, s.scales, s.Ls, s.sw)
            let mm = makeQpQuants(16, 15, s.mins, s.Lm, s.sw)
            storeHalf(b, 80, dm)
            storeHalf(b, 82, mm)
            let scales = bytes(b, 0)
            for j in 0..<16 { scales[j] = s.Ls[j] | (s.Lm[j] << 4) }
            q2_KFinish(x, b, loadHalf(b, 80), loadHalf(b, 82), s.L)
        }
    }

    /// Stores Q3_K's sixteen 6-bit scales (`Ls`, already offset by 32) into the 12 scale bytes.
    @inline(__always) private static func packQ3Scales(_ scales: UnsafeMutablePointer<UInt8>, _ j: Int, _ lIn: Int32) {
        var l = lIn
        if j < 8 {
            scales[j] = UInt8(truncatingIfNeeded: l & 0xF)
        } else {
            scales[j - 8] |= UInt8(truncatingIfNeeded: (l & 0xF) << 4)
        }
        l >>= 4
        scales[j % 4 + 8] |= UInt8(truncatingIfNeeded: l << Int32(2 * (j / 4)))
    }

    /// Requantises Q3_K values with the final scales, sets the high-bit mask and packs them.
    @inline(__always) private static func q3_KFinish(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer, _ L: UnsafeMutablePointer<Int8>) {
        let scales = bytes(b, 96)
        let dAll = loadHalf(b, 108)
        for j in 0..<16 {
            var sc = Int8(bitPattern: j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4)
            sc = Int8(truncatingIfNeeded: (Int32(sc) | Int32(((scales[8 + j % 4] >> UInt8(2 * (j / 4))) & 3) << 4)) - 32)
            let d = dAll * Float(sc)
            if d == 0 { continue }
            for ii in 0..<16 {
                let l = clamp(nearestInt(x[16 * j + ii] / d), -4, 3)
                L[16 * j + ii] = Int8(truncatingIfNeeded: l + 4)
            }
        }
        let hmask = bytes(b, 0)
        for j in 0..<32 { hmask[j] = 0 }
        var m = 0
        var hm: UInt8 = 1
        for j in 0..<256 {
            if L[j] > 3 {
                hmask[m] |= hm
                L[j] -= 4
            }
            m += 1
            if m == 32 { m = 0; hm <<= 1 }
        }
        L.withMemoryRebound(to: UInt8.self, capacity: 256) { pack2Bit($0, bytes(b, 32)) }
    }

    /// `quantize_row_q3_K_ref`.
    static func q3_KRef(_ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int, _ s: QuantScratch) {
        for i in 0..<(k / 256) {
            let x = xRow + 256 * i, b = y + 110 * i
            var maxScale: Float = 0, amax: Float = 0
            for j in 0..<16 {
                s.scales[j] = makeQ3Quants(16, 4, x + 16 * j, s.Li + 16 * j, true)
                let scale = abs(s.scales[j])
                if scale > amax { amax = scale; maxScale = s.scales[j] }
            }
            let scales = bytes(b, 96)
            for j in 0..<12 { scales[j] = 0 }
            if maxScale != 0 {
                let iscale = -32 / maxScale
                for j in 0..<16 {
                    let l8 = Int8(truncatingIfNeeded: nearestInt(iscale * s.scales[j]))
                    let l = Int32(Int8(truncatingIfNeeded: clamp(Int32(l8), -32, 31) + 32))
                    packQ3Scales(scales, j, l)
                }
                storeHalf(b, 108, 1 / iscale)
            } else {
                storeHalf(b, 108, 0)
            }
            q3_KFinish(x, b, s.Li)
        }
    }

    /// `quantize_row_q3_K_impl`.
    static func q3_KImpl(_ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>?, _ s: QuantScratch) {
        for i in 0..<(n / 256) {
            let x = xRow + 256 * i, b = y + 110 * i
            let sigma2 = 2 * sumOfSquares(x, 256) / 256
            for j in 0..<16 {
                if let qwRow {
                    let qw = qwRow + 256 * i + 16 * j
                    for l in 0..<16 { s.weights[l] = qw[l] * (sigma2 + x[16 * j + l] * x[16 * j + l]).squareRoot() }
                } else {
                    for l in 0..<16 { s.weights[l] = x[16 * j + l] * x[16 * j + l] }
                }
                var sumw: Float = 0
                for l in 0..<16 { sumw += s.weights[l] }
                s.sw[j] = sumw
                s.scales[j] = makeQxQuants(16, 4, x + 16 * j, s.Li + 16 * j, 1, s.weights)
            }
            let scales = bytes(b, 96)
            for j in 0..<12 { scales[j] = 0 }
            let dBlock = makeQxQuants(16, 32, s.scales, s.Lsi, 1, s.sw)
            for j in 0..<16 { packQ3Scales(scales, j, Int32(s.Lsi[j])) }
            storeHalf(b, 108, dBlock)
            q3_KFinish(x, b, s.Li)
        }
    }

    /// Stores eight 6-bit scales and mins into Q4_K/Q5_K's 12 scale bytes.
    @inline(__always) private static func packK4Scales(_ scales: UnsafeMutablePointer<UInt8>, _ j: Int, _ ls: UInt8, _ lm: UInt8) {
        if j < 4 {
            scales[j] = ls
            scales[j + 4] = lm
        } else {
            scales[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            scales[j - 4] |= ((ls >> 4) << 6)
            scales[j] |= ((lm >> 4) << 6)
        }
    }

    /// Requantises Q4_K/Q5_K values with the final scales and mins into L (0...nmax).
    @inline(__always) private static func kFinish(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer, _ nmax: Int32, _ L: UnsafeMutablePointer<UInt8>) {
        let scales = UnsafePointer(bytes(b, 4))
        let dAll = loadHalf(b, 0), dminAll = loadHalf(b, 2)
        for j in 0..<8 {
            let (sc, m) = scaleMinK4(j, scales)
            let d = dAll * Float(sc)
            if d == 0 { continue }
            let dm = dminAll * Float(m)
            for ii in 0..<32 {
                let l = clamp(nearestInt((x[32 * j + ii] + dm) / d), 0, nmax)
                L[32 * j + ii] = UInt8(truncatingIfNeeded: l)
            }
        }
    }

    /// The no-importance weights of Q4_K/Q5_K ref: `sqrt(mean x²) + |x|` over 32 values.
    @inline(__always) private static func refWeights(_ x: UnsafePointer<Float>, _ w: UnsafeMutablePointer<Float>) {
        let avX = (sumOfSquares(x, 32) / 32).squareRoot()
        for l in 0..<32 { w[l] = avX + abs(x[l]) }
    }

    /// Scales and mins of a Q4_K/Q5_K ref block, quantised to 6 bits with d = max/63.
    @inline(__always) private static func kRefScales(_ b: UnsafeMutableRawPointer, _ s: QuantScratch, _ maxScale: Float, _ maxMin: Float) {
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        let scales = bytes(b, 4)
        for j in 0..<8 {
            let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * s.scales[j])))
            let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * s.mins[j])))
            packK4Scales(scales, j, ls, lm)
        }
        storeHalf(b, 0, maxScale / 63)
        storeHalf(b, 2, maxMin / 63)
    }

    /// The importance-weighted sub-block quantisation shared by Q4_K and Q5_K `_impl` (ggml takes
    /// `_ref` without an importance matrix, so the C code's no-weights branch never runs here).
    @inline(__always) private static func kImplScales(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer, _ nmax: Int32,
                                                      _ qwBlock: UnsafePointer<Float>, _ s: QuantScratch, clampLs: Bool) {
        let sigma2 = 2 * sumOfSquares(x, 256) / 256
        for j in 0..<8 {
            let qw = qwBlock + 32 * j
            for l in 0..<32 { s.weights[l] = qw[l] * (sigma2 + x[32 * j + l] * x[32 * j + l]).squareRoot() }
            var sumw: Float = 0
            for l in 0..<32 { sumw += s.weights[l] }
            s.sw[j] = sumw
            var m: Float = 0
            s.scales[j] = makeQkxQuants(32, nmax, x + 32 * j, s.weights, s.L + 32 * j, &m, s.Laux, -0.9, 0.05, 36, false, qkx3: true)
            s.mins[j] = m
        }
        let dBlock = makeQpQuants(8, 63, s.scales, s.Ls, s.sw)
        let mBlock = makeQpQuants(8, 63, s.mins, s.Lm, s.sw)
        let scales = bytes(b, 4)
        for j in 0..<8 {
            var ls = s.Ls[j], lm = s.Lm[j]
            if clampLs { ls = min(63, ls); lm = min(63, lm) }
            packK4Scales(scales, j, ls, lm)
        }
        storeHalf(b, 0, dBlock)
        storeHalf(b, 2, mBlock)
    }

    /// Packs Q4_K quants (0...15) into 128 bytes.
    @inline(__always) private static func packQ4K(_ L: UnsafeMutablePointer<UInt8>, _ b: UnsafeMutableRawPointer) {
        var q = bytes(b, 16)
        for j in stride(from: 0, to: 256, by: 64) {
            for l in 0..<32 { q[l] = L[j + l] | (L[j + l + 32] << 4) }
            q += 32
        }
    }

    /// Packs Q5_K quants (0...31): low nibbles in qs, fifth bits in qh.
    @inline(__always) private static func packQ5K(_ L: UnsafeMutablePointer<UInt8>, _ b: UnsafeMutableRawPointer) {
        let qh = bytes(b, 16)
        var ql = bytes(b, 48)
        for j in 0..<32 { qh[j] = 0 }
        var m1: UInt8 = 1, m2: UInt8 = 2
        for n in stride(from: 0, to: 256, by: 64) {
            for j in 0..<32 {
                var l1 = L[n + j]
                if l1 > 15 { l1 -= 16; qh[j] |= m1 }
                var l2 = L[n + j + 32]
                if l2 > 15 { l2 -= 16; qh[j] |= m2 }
                ql[j] = l1 | (l2 << 4)
            }
            m1 <<= 2; m2 <<= 2
            ql += 32
        }
    }

    /// `quantize_row_q4_K_ref` (`nmax` 15) and `quantize_row_q5_K_ref` (`nmax` 31): the same code
    /// but for the quant range, the `make_qkx2_quants` search steps and the packing.
    static func q45_KRef(_ nmax: Int32, _ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ k: Int, _ s: QuantScratch) {
        let isQ5 = nmax == 31
        for i in 0..<(k / 256) {
            let x = xRow + 256 * i, b = y + (isQ5 ? 176 : 144) * i
            var maxScale: Float = 0, maxMin: Float = 0
            for j in 0..<8 {
                refWeights(x + 32 * j, s.weights)
                var m: Float = 0
                s.scales[j] = makeQkxQuants(32, nmax, x + 32 * j, s.weights, s.L + 32 * j, &m, s.Laux, isQ5 ? -0.5 : -1, 0.1,
                                            isQ5 ? 15 : 20, false, qkx3: false)
                s.mins[j] = m
                if s.scales[j] > maxScale { maxScale = s.scales[j] }
                if m > maxMin { maxMin = m }
            }
            kRefScales(b, s, maxScale, maxMin)
            kFinish(x, b, nmax, s.L)
            if isQ5 { packQ5K(s.L, b) } else { packQ4K(s.L, b) }
        }
    }

    /// `quantize_row_q4_K_impl` (`nmax` 15) and `quantize_row_q5_K_impl` (`nmax` 31; it clamps the 6-bit scales).
    static func q45_KImpl(_ nmax: Int32, _ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int,
                          _ qwRow: UnsafePointer<Float>, _ s: QuantScratch) {
        let isQ5 = nmax == 31
        for i in 0..<(n / 256) {
            let x = xRow + 256 * i, b = y + (isQ5 ? 176 : 144) * i
            kImplScales(x, b, nmax, qwRow + 256 * i, s, clampLs: isQ5)
            kFinish(x, b, nmax, s.L)
            if isQ5 { packQ5K(s.L, b) } else { packQ4K(s.L, b) }
        }
    }

    /// `quantize_row_q6_K_ref` (qw nil) and `quantize_row_q6_K_impl` (qw given); they differ only
    /// in the weights passed to `make_qx_quants`.
    static func q6_K(_ xRow: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ n: Int, _ qwRow: UnsafePointer<Float>?, _ s: QuantScratch) {
        let L = s.Li
        for i in 0..<(n / 256) {
            let x = xRow + 256 * i, b = y + 210 * i
            var maxScale: Float = 0, maxAbsScale: Float = 0
            for ib in 0..<16 {
                let scale = makeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, 1, qwRow.map { $0 + 256 * i + 16 * ib })
                s.scales[ib] = scale
                if abs(scale) > maxAbsScale { maxAbsScale = abs(scale); maxScale = scale }
            }
            if maxAbsScale < groupMaxEps {
                b.initializeMemory(as: UInt8.self, repeating: 0, count: 210)
                storeHalf(b, 208, 0)
                continue
            }
            let iscale = -128 / maxScale
            storeHalf(b, 208, 1 / iscale)
            let sc = (b + 192).assumingMemoryBound(to: Int8.self)
            for ib in 0..<16 { sc[ib] = Int8(truncatingIfNeeded: min(127, nearestInt(iscale * s.scales[ib]))) }
            let dAll = loadHalf(b, 208)
            for j in 0..<16 {
                let d = dAll * Float(sc[j])
                if d == 0 { continue }
                for ii in 0..<16 {
                    let l = clamp(nearestInt(x[16 * j + ii] / d), -32, 31)
                    L[16 * j + ii] = Int8(truncatingIfNeeded: l + 32)
                }
            }
            var ql = bytes(b, 0)
            var qh = bytes(b, 128)
            L.withMemoryRebound(to: UInt8.self, capacity: 256) { Lu in
                for j in stride(from: 0, to: 256, by: 128) {
                    for l in 0..<32 {
                        let q1 = Lu[j + l] & 0xF, q2 = Lu[j + l + 32] & 0xF
                        let q3 = Lu[j + l + 64] & 0xF, q4 = Lu[j + l + 96] & 0xF
                        ql[l] = q1 | (q3 << 4)
                        ql[l + 32] = q2 | (q4 << 4)
                        qh[l] = (Lu[j + l] >> 4) | ((Lu[j + l + 32] >> 4) << 2) | ((Lu[j + l + 64] >> 4) << 4) | ((Lu[j + l + 96] >> 4) << 6)
                    }
                    ql += 64
                    qh += 32
                }
            }
        }
    }
}

// MARK: - IQ4_NL / IQ4_XS

extension GGMLQuants {
    /// `quantize_row_iq4_nl_impl` with block_size 32, for one super-block of `sbs` values
    /// (32: an IQ4_NL block; 256: an IQ4_XS block) written at `b`.
    static func iq4nlImpl(_ sbs: Int, _ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer,
                          _ qw: UnsafePointer<Float>?, _ ntry: Int, _ s: QuantScratch) {
        iq4nlValues.withUnsafeBufferPointer { kv in
            let values = kv.baseAddress!
            let L = s.L
            let weight = s.weights
            var sigma2: Float = 0
            for j in 0..<sbs { sigma2 += x[j] * x[j] }
            sigma2 *= 2 / Float(sbs)
            let nblocks = sbs / 32
            let qsOffset = nblocks > 1 ? 8 : 2
            let q4 = bytes(b, qsOffset)
            for j in 0..<(sbs / 2) { q4[j] = 0 }
            storeHalf(b, 0, 0)
            var maxScale: Float = 0, amaxScale: Float = 0
            let v0 = Float(values[0])
            for ib in 0..<nblocks {
                let xb = x + 32 * ib
                let Lb = L + 32 * ib
                if let qw {
                    let q = qw + 32 * ib
                    for j in 0..<32 { weight[j] = q[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                } else {
                    for j in 0..<32 { weight[j] = xb[j] * xb[j] }
                }
                var amax: Float = 0, maxv: Float = 0
                for j in 0..<32 where abs(xb[j]) > amax { amax = abs(xb[j]); maxv = xb[j] }
                if amax < groupMaxEps {
                    s.scales[ib] = 0
                    continue
                }
                var d = ntry > 0 ? -maxv / v0 : maxv / v0
                var id = 1 / d
                var sumqx: Float = 0, sumq2: Float = 0
                for j in 0..<32 {
                    let al = id * xb[j]
                    let l = bestIndexInt8(16, values, al)
                    Lb[j] = UInt8(truncatingIfNeeded: l)
                    let q = Float(values[l])
                    let w = weight[j]
                    sumqx += w * q * xb[j]
                    sumq2 += w * q * q
                }
                d = sumq2 > 0 ? sumqx / sumq2 : 0
                var best = d * sumqx
                if ntry > 0 {
                    for itry in -ntry...ntry {
                        id = Float(itry + Int(values[0])) / maxv
                        sumqx = 0
                        sumq2 = 0
                        for j in 0..<32 {
                            let al = id * xb[j]
                            let l = bestIndexInt8(16, values, al)
                            let q = Float(values[l])
                            let w = weight[j]
                            sumqx += w * q * xb[j]
                            sumq2 += w * q * q
                        }
                        if sumq2 > 0 && sumqx * sumqx > best * sumq2 {
                            d = sumqx / sumq2
                            best = d * sumqx
                        }
                    }
                }
                s.scales[ib] = d
                if abs(d) > amaxScale { amaxScale = abs(d); maxScale = d }
            }
            if nblocks > 1 {
                var scalesH: UInt16 = 0
                let scalesL = bytes(b, 4)
                let d = -maxScale / 32
                storeHalf(b, 0, d)
                let id: Float = d != 0 ? 1 / d : 0
                for ib in 0..<nblocks {
                    var l = clamp(nearestInt(id * s.scales[ib]), -32, 31)
                    let dl = d * Float(l)
                    let idl: Float = dl != 0 ? 1 / dl : 0
                    let Lb = L + 32 * ib
                    let xb = x + 32 * ib
                    for j in 0..<32 { Lb[j] = UInt8(truncatingIfNeeded: bestIndexInt8(16, values, idl * xb[j])) }
                    l += 32
                    let lLow = UInt8(truncatingIfNeeded: l & 0xf)
                    let lHigh = UInt8(truncatingIfNeeded: l >> 4)
                    if ib % 2 == 0 { scalesL[ib / 2] = lLow } else { scalesL[ib / 2] |= (lLow << 4) }
                    scalesH |= UInt16(truncatingIfNeeded: Int32(lHigh) << Int32(2 * (ib % 8)))
                }
                b.storeBytes(of: scalesH.littleEndian, toByteOffset: 2, as: UInt16.self)
            } else {
                storeHalf(b, 0, s.scales[0])
                if ntry > 0 {
                    let id: Float = s.scales[0] != 0 ? 1 / s.scales[0] : 0
                    for j in 0..<sbs { L[j] = UInt8(truncatingIfNeeded: bestIndexInt8(16, values, id * x[j])) }
                }
            }
            for i in 0..<(sbs / 32) {
                for j in 0..<16 { q4[16 * i + j] = L[32 * i + j] | (L[32 * i + 16 + j] << 4) }
            }
        }
    }
}
