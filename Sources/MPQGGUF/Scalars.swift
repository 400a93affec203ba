// Scalar helpers ported bit-for-bit from ggml (ggml-impl.h, ggml-quants.c), so that
// quantised bytes match llama.cpp's reference quantisers exactly.

/// Conversions and rounding helpers with ggml's exact semantics.
public enum GGMLScalar {
    /// IEEE binary16 bits to Float, exactly as `ggml_compute_fp16_to_fp32` (ggml-impl.h).
    ///
    /// The conversion is exact for every finite, infinite and NaN input; ported rather than
    /// using `Float16` so that the result does not depend on platform support for `Float16`.
    @inline(__always)
    public static func fp16ToFloat(_ h: UInt16) -> Float {
        let w = UInt32(h) << 16
        let sign = w & 0x8000_0000
        let twoW = w &+ w
        let expOffset: UInt32 = 0xE0 << 23
        let expScale = Float(bitPattern: 0x0780_0000)  // 0x1.0p-112f
        let normalized = Float(bitPattern: (twoW >> 4) &+ expOffset) * expScale
        let magicMask: UInt32 = 126 << 23
        let denormalized = Float(bitPattern: (twoW >> 17) | magicMask) - 0.5
        let cutoff: UInt32 = 1 << 27
        return Float(bitPattern: sign | (twoW < cutoff ? denormalized.bitPattern : normalized.bitPattern))
    }

    /// Float to IEEE binary16 bits, exactly as `ggml_compute_fp32_to_fp16` (ggml-impl.h):
    /// round to nearest even, overflow to infinity, every NaN becomes the quiet NaN 0x7E00 (with sign).
    ///
    /// This is `GGML_FP32_TO_FP16`, which ggml-quants.c uses for every block scale.
    @inline(__always)
    public static func floatToFP16(_ f: Float) -> UInt16 {
        let scaleToInf = Float(bitPattern: 0x7780_0000)   // 0x1.0p+112f
        let scaleToZero = Float(bitPattern: 0x0880_0000)  // 0x1.0p-110f
        var base = (abs(f) * scaleToInf) * scaleToZero
        let w = f.bitPattern
        let shl1W = w &+ w
        let sign = w & 0x8000_0000
        var bias = shl1W & 0xFF00_0000
        if bias < 0x7100_0000 { bias = 0x7100_0000 }
        base = Float(bitPattern: (bias >> 1) &+ 0x0780_0000) + base
        let bits = base.bitPattern
        let expBits = (bits >> 13) & 0x0000_7C00
        let mantissaBits = bits & 0x0000_0FFF
        let nonsign = expBits &+ mantissaBits
        return UInt16(truncatingIfNeeded: (sign >> 16) | (shl1W > 0xFF00_0000 ? 0x7E00 : nonsign))
    }

    /// bfloat16 bits to Float (`ggml_compute_bf16_to_fp32`): the bits are the top half of a float32.
    @inline(__always)
    public static func bf16ToFloat(_ h: UInt16) -> Float {
        Float(bitPattern: UInt32(h) << 16)
    }

    /// Float to bfloat16 bits, exactly as `ggml_compute_fp32_to_bf16`: round to nearest even,
    /// NaNs are made quiet (bit 6 of the half set) and keep their top payload bits.
    @inline(__always)
    public static func floatToBF16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if (u & 0x7fff_ffff) > 0x7f80_0000 {
            return UInt16(truncatingIfNeeded: (u >> 16) | 64)
        }
        return UInt16(truncatingIfNeeded: (u &+ (0x7fff &+ ((u >> 16) & 1))) >> 16)
    }

    /// `nearest_int` from ggml-quants.c: round to nearest (ties to even) via the 1.5·2^23 trick.
    ///
    /// Valid for |x| ≤ 4194303 like the C code; outside that range it returns the same
    /// (meaningless) bits as the C code instead of trapping.
    @inline(__always)
    public static func nearestInt(_ x: Float) -> Int32 {
        let v = x + 12582912
        let i = Int32(bitPattern: v.bitPattern)
        return (i & 0x007f_ffff) - 0x0040_0000
    }

    /// C's float-to-integer conversion as compiled for x86-64 (`cvttss2si`): truncation toward zero,
    /// and the "integer indefinite" value `INT32_MIN` for NaN or out-of-range input, never a trap.
    /// A C cast to a narrower type, such as `(int8_t)x`, is this value truncated to that width.
    @inline(__always)
    public static func truncateToInt32(_ x: Float) -> Int32 {
        guard x > -2147483904, x < 2147483648 else { return Int32.min }  // also false for NaN
        return Int32(x)
    }
}
