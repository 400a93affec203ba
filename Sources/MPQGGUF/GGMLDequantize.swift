import Foundation

/// ggml's tensor-type arithmetic: dequantisation (`dequantize_row_*` in ggml-quants.c) and
/// quantisation (`ggml_quantize_chunk`), ported operation for operation so that results are
/// bit-identical to ggml's reference C code.
public enum GGMLQuants {
    /// The 16 non-linear levels of IQ4_NL and IQ4_XS (`kvalues_iq4nl`).
    public static let iq4nlValues: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    /// Dequantises `count` values of `type` from `bytes` into float32, exactly as ggml's `to_float`.
    ///
    /// Throws when the type is not supported, `count` is not a whole number of blocks, or `bytes`
    /// is shorter than the data for `count` values.
    public static func dequantize(_ type: GGMLType, bytes: UnsafeRawBufferPointer, count: Int) throws -> [Float] {
        try checkSizes(type, count: count, available: bytes.count)
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                dequantizeUnchecked(type, UnsafeRawPointer(bytes.baseAddress!), buffer.baseAddress!, count)
            }
            initialized = count
        }
    }

    /// `dequantize(_:bytes:count:)` for a byte array or `Data`.
    public static func dequantize<D: ContiguousBytes>(_ type: GGMLType, data: D, count: Int) throws -> [Float] {
        try data.withUnsafeBytes { try dequantize(type, bytes: $0, count: count) }
    }

    /// Dequantises into caller-provided memory; `output.count` values are produced from `bytes`.
    public static func dequantize(_ type: GGMLType, bytes: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>) throws {
        try checkSizes(type, count: output.count, available: bytes.count)
        if output.count > 0 { dequantizeUnchecked(type, UnsafeRawPointer(bytes.baseAddress!), output.baseAddress!, output.count) }
    }

    static func checkSizes(_ type: GGMLType, count: Int, available: Int) throws {
        guard type.canDequantize else { throw GGUFError(.unsupportedType, file: "", "dequantisation of \(type.name) is not supported") }
        guard let needed = type.byteCount(elements: count) else {
            throw GGUFError(.invalidArgument, file: "", "\(count) values is not a whole number of \(type.name) blocks of \(type.blockSize)")
        }
        guard needed <= available else {
            throw GGUFError(.invalidArgument, file: "", "\(count) \(type.name) values need \(needed) bytes, got \(available)")
        }
    }

    @inline(__always) static func f16(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        GGMLScalar.fp16ToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
    }

    @inline(__always) static func u32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        p.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
    }

    /// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
    @inline(__always) static func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (UInt8, UInt8) {
        if j < 4 {
            return (q[j] & 63, q[j + 4] & 63)
        }
        return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }

    /// Dequantises `k` values; the caller guarantees sizes.
    static func dequantizeUnchecked(_ type: GGMLType, _ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ k: Int) {
        let nb = k / type.blockSize
        let bs = type.bytesPerBlock
        switch type {
        case .f32:
            for i in 0..<k { y[i] = Float(bitPattern: u32(x, 4 * i)) }
        case .f16:
            for i in 0..<k { y[i] = GGMLScalar.fp16ToFloat(x.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) }
        case .bf16:
            for i in 0..<k { y[i] = GGMLScalar.bf16ToFloat(x.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) }
        case .q4_0, .q4_1, .q5_0, .q5_1:
            // 32 values a block: low nibbles, then high ones; Q5's fifth bits in qh; the _1 types add a min.
            let hasMin = type == .q4_1 || type == .q5_1, hasHigh = type == .q5_0 || type == .q5_1
            let qhOffset = hasMin ? 4 : 2, qsOffset = qhOffset + (hasHigh ? 4 : 0)
            let zero: Int32 = hasMin ? 0 : hasHigh ? 16 : 8
            for i in 0..<nb {
                let b = x + i * bs
                let d = f16(b, 0), m = hasMin ? f16(b, 2) : 0
                let qh = hasHigh ? u32(b, qhOffset) : 0
                let qs = (b + qsOffset).assumingMemoryBound(to: UInt8.self)
                let out = y + i * 32
                for j in 0..<16 {
                    let xh0 = UInt8(truncatingIfNeeded: ((qh >> UInt32(j)) << 4) & 0x10)
                    let xh1 = UInt8(truncatingIfNeeded: (qh >> UInt32(j + 12)) & 0x10)
                    let x0 = Int32((qs[j] & 0x0F) | xh0) - zero, x1 = Int32((qs[j] >> 4) | xh1) - zero
                    out[j] = hasMin ? Float(x0) * d + m : Float(x0) * d
                    out[j + 16] = hasMin ? Float(x1) * d + m : Float(x1) * d
                }
            }
        case .q8_0:
            for i in 0..<nb {
                let b = x + i * bs
                let d = f16(b, 0)
                let qs = (b + 2).assumingMemoryBound(to: Int8.self)
                let out = y + i * 32
                for j in 0..<32 { out[j] = Float(qs[j]) * d }
            }
        case .q2_K:
            for i in 0..<nb {
                let b = x + i * bs
                let scales = b.assumingMemoryBound(to: UInt8.self)
                var q = (b + 16).assumingMemoryBound(to: UInt8.self)
                let d = f16(b, 80), dmin = f16(b, 82)
                var out = y + i * 256
                var isc = 0
                for _ in 0..<2 {
                    var shift: UInt8 = 0
                    for _ in 0..<4 {
                        for half in stride(from: 0, to: 32, by: 16) {
                            let sc = scales[isc]; isc += 1
                            let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                            for l in 0..<16 { out[l] = dl * Float((q[half + l] >> shift) & 3) - ml }
                            out += 16
                        }
                        shift += 2
                    }
                    q += 32
                }
            }
        case .q3_K:
            let kmask1: UInt32 = 0x0303_0303, kmask2: UInt32 = 0x0f0f_0f0f
            for i in 0..<nb {
                let b = x + i * bs
                let hm = b.assumingMemoryBound(to: UInt8.self)
                var q = (b + 32).assumingMemoryBound(to: UInt8.self)
                let dAll = f16(b, 108)
                var aux = (u32(b, 96), u32(b, 100), u32(b, 104), UInt32(0))
                let tmp = aux.2
                aux.2 = ((aux.0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
                aux.3 = ((aux.1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
                aux.0 = (aux.0 & kmask2) | (((tmp >> 0) & kmask1) << 4)
                aux.1 = (aux.1 & kmask2) | (((tmp >> 2) & kmask1) << 4)
                let words = aux
                @inline(__always) func scale(_ j: Int) -> Int8 {
                    let word = j < 4 ? words.0 : j < 8 ? words.1 : j < 12 ? words.2 : words.3
                    return Int8(truncatingIfNeeded: word >> UInt32(8 * (j % 4)))
                }
                var out = y + i * 256
                var isc = 0
                var m: UInt8 = 1
                for _ in 0..<2 {
                    var shift: UInt8 = 0
                    for _ in 0..<4 {
                        for half in stride(from: 0, to: 32, by: 16) {
                            let dl = dAll * Float(Int32(scale(isc)) - 32); isc += 1
                            for l in half..<(half + 16) {
                                out[l - half] = dl * Float(Int32((q[l] >> shift) & 3) - ((hm[l] & m) != 0 ? 0 : 4))
                            }
                            out += 16
                        }
                        shift += 2
                        m <<= 1
                    }
                    q += 32
                }
            }
        case .q4_K, .q5_K:
            // Q5_K adds 16 where its qh bit is set; it stores those 32 bytes where Q4_K's quants start.
            let hasHigh = type == .q5_K
            for i in 0..<nb {
                let b = x + i * bs
                let d = f16(b, 0), dmin = f16(b, 2)
                let scales = (b + 4).assumingMemoryBound(to: UInt8.self)
                let qh = (b + 16).assumingMemoryBound(to: UInt8.self)
                var ql = (b + (hasHigh ? 48 : 16)).assumingMemoryBound(to: UInt8.self)
                var out = y + i * 256
                var isc = 0
                var u1: UInt8 = 1, u2: UInt8 = 2
                for _ in 0..<4 {
                    var (sc, m) = scaleMinK4(isc, scales)
                    let d1 = d * Float(sc), m1 = dmin * Float(m)
                    (sc, m) = scaleMinK4(isc + 1, scales)
                    let d2 = d * Float(sc), m2 = dmin * Float(m)
                    for l in 0..<32 { out[l] = d1 * Float(Int32(ql[l] & 0xF) + (hasHigh && (qh[l] & u1) != 0 ? 16 : 0)) - m1 }
                    for l in 0..<32 { out[32 + l] = d2 * Float(Int32(ql[l] >> 4) + (hasHigh && (qh[l] & u2) != 0 ? 16 : 0)) - m2 }
                    out += 64; ql += 32; isc += 2
                    u1 <<= 2; u2 <<= 2
                }
            }
        case .q6_K:
            for i in 0..<nb {
                let b = x + i * bs
                var ql = b.assumingMemoryBound(to: UInt8.self)
                var qh = (b + 128).assumingMemoryBound(to: UInt8.self)
                var sc = (b + 192).assumingMemoryBound(to: Int8.self)
                let d = f16(b, 208)
                var out = y + i * 256
                for _ in 0..<2 {
                    for l in 0..<32 {
                        let isc = l / 16
                        let q1 = Int32(Int8(truncatingIfNeeded: (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4))) - 32
                        let q2 = Int32(Int8(truncatingIfNeeded: (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4))) - 32
                        let q3 = Int32(Int8(truncatingIfNeeded: (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4))) - 32
                        let q4 = Int32(Int8(truncatingIfNeeded: (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4))) - 32
                        out[l] = d * Float(sc[isc]) * Float(q1)
                        out[l + 32] = d * Float(sc[isc + 2]) * Float(q2)
                        out[l + 64] = d * Float(sc[isc + 4]) * Float(q3)
                        out[l + 96] = d * Float(sc[isc + 6]) * Float(q4)
                    }
                    out += 128; ql += 64; qh += 32; sc += 8
                }
            }
        case .iq4_nl, .iq4_xs:
            // An IQ4_NL block is one 32-value sub-block scaled by d; IQ4_XS has eight with 6-bit scales.
            let subBlocks = type.blockSize / 32
            iq4nlValues.withUnsafeBufferPointer { kv in
                for i in 0..<nb {
                    let b = x + i * bs
                    let d = f16(b, 0)
                    let scalesH = subBlocks > 1 ? UInt32(b.loadUnaligned(fromByteOffset: 2, as: UInt16.self).littleEndian) : 0
                    let scalesL = (b + 4).assumingMemoryBound(to: UInt8.self)
                    var qs = (b + (subBlocks > 1 ? 8 : 2)).assumingMemoryBound(to: UInt8.self)
                    var out = y + i * 32 * subBlocks
                    for ib in 0..<subBlocks {
                        let ls = subBlocks > 1 ? Int32((scalesL[ib / 2] >> UInt8(4 * (ib % 2))) & 0xF) | Int32(((scalesH >> UInt32(2 * ib)) & 3) << 4) : 0
                        let dl = subBlocks > 1 ? d * Float(ls - 32) : d
                        for j in 0..<16 {
                            out[j] = dl * Float(kv[Int(qs[j] & 0xF)])
                            out[j + 16] = dl * Float(kv[Int(qs[j] >> 4)])
                        }
                        out += 32; qs += 16
                    }
                }
            }
        default:
            break  // rejected by checkSizes
        }
    }
}
