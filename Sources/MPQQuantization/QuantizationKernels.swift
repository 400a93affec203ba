import Foundation
import MPQGraph
import MPQRuntime

/// How the elements of a row-major tensor map to quantizer parameters.
///
/// The tensor is read as runs of consecutive elements: `[outer, rows, runLength]`. Element (o, r, i)
/// uses parameter `o * outerStride + (r / rowsPerParameter) * rowStride + (perElement ? i : 0)`: a run
/// either shares one parameter (kernels keep it in registers) or walks a parameter vector alongside the
/// data (both loops vectorize; no per-element index arithmetic).
struct QuantizerLayout {
    var rows: Int
    var runLength: Int
    var rowsPerParameter = 1
    var outerStride = 0
    var rowStride = 0
    var perElement = false

    /// Runs shorter than this use per-element parameter vectors for per-channel quantization (e.g. MatMul
    /// weights [K, N] quantized along N, where every run would be one element long).
    static let shortestSharedRun = 16

    /// Calls `body(start, count, parameter)` for each run (or part of one) in `range` of flat indices.
    func forEachRun(in range: Range<Int>, _ body: (_ start: Int, _ count: Int, _ parameter: Int) -> Void) {
        guard !range.isEmpty else { return }
        var start = range.lowerBound
        var offset = start % runLength
        var row = start / runLength
        var outer = row / rows
        row %= rows
        while start < range.upperBound {
            let count = min(range.upperBound - start, runLength - offset)
            body(start, count, outer * outerStride + (row / rowsPerParameter) * rowStride + (perElement ? offset : 0))
            start += count
            offset = 0
            row += 1
            if row == rows {
                row = 0
                outer += 1
            }
        }
    }
}

/// Rounding to a binary floating-point format with `mantissaBits` fraction bits, done on float32 bit
/// patterns so that it vectorizes: round to nearest even, subnormals of the target format included.
struct FloatGrid {
    let mantissaBits: Int
    /// Exponent of the smallest normal number (1 - exponent bias).
    let minimumExponent: Int
    /// Fraction bits of float32 dropped (23 - mantissaBits).
    let droppedBits: UInt32
    /// Normal numbers: adding `halfUlpMinusOne + lowest kept bit` then masking rounds half to even.
    let halfUlpMinusOne: UInt32
    let keptMask: UInt32
    let smallestNormal: Float
    /// 1.5 * 2^(minimumExponent - mantissaBits + 23): `(a + magic) - magic` rounds a < smallestNormal to a
    /// multiple of the subnormal spacing 2^(minimumExponent - mantissaBits), half to even.
    let subnormalMagic: Float
    let largestFinite: Float
    /// Inputs are clamped to ± this before rounding: the largest value for saturating formats (fp8, ONNX
    /// `saturate=1`), infinity for IEEE ones (fp16/bf16 overflow to infinity as a cast does).
    let clampBound: Float

    /// The grid of a float format (nil for integers and float32, which need no rounding).
    init?(_ format: QuantizationFormat) {
        let saturates: Bool
        switch format {
        case .float16: (mantissaBits, minimumExponent, saturates) = (10, -14, false)
        case .bfloat16: (mantissaBits, minimumExponent, saturates) = (7, -126, false)
        case .float8E4M3FN: (mantissaBits, minimumExponent, saturates) = (3, -6, true)
        case .float8E5M2: (mantissaBits, minimumExponent, saturates) = (2, -14, true)
        case .integer, .float32: return nil
        }
        droppedBits = UInt32(23 - mantissaBits)
        halfUlpMinusOne = (1 << (droppedBits - 1)) - 1
        keptMask = ~((1 << droppedBits) - 1)
        smallestNormal = Float(sign: .plus, exponent: minimumExponent, significand: 1)
        subnormalMagic = Float(sign: .plus, exponent: minimumExponent - mantissaBits + 23, significand: 1.5)
        largestFinite = format.largestFiniteValue!
        clampBound = saturates ? largestFinite : .infinity
    }

    /// `value` rounded onto the grid (NaN stays NaN, as the input's bits).
    @inline(__always)
    func round(_ value: Float) -> Float {
        var v = value < -clampBound ? -clampBound : value
        v = v > clampBound ? clampBound : v
        let bits = v.bitPattern
        let magnitude = Float(bitPattern: bits & 0x7FFF_FFFF)
        let m = magnitude.bitPattern
        let normal = (m &+ halfUlpMinusOne &+ ((m >> droppedBits) & 1)) & keptMask
        let subnormal = ((magnitude + subnormalMagic) - subnormalMagic).bitPattern
        var rounded = magnitude < smallestNormal ? subnormal : normal
        rounded = Float(bitPattern: rounded) > largestFinite ? Float.infinity.bitPattern : rounded
        return v.isNaN ? v : Float(bitPattern: rounded | (bits & 0x8000_0000))
    }
}

/// Per-element access to scale and clamp bounds, either one shared set or vectors walked with the data.
protocol QuantizerParameterAccess {
    func scale(_ i: Int) -> Float
    func lower(_ i: Int) -> Float
    func upper(_ i: Int) -> Float
}

struct SharedParameters: QuantizerParameterAccess {
    let s: Float, lo: Float, hi: Float
    @inline(__always) func scale(_ i: Int) -> Float { s }
    @inline(__always) func lower(_ i: Int) -> Float { lo }
    @inline(__always) func upper(_ i: Int) -> Float { hi }
}

struct PerElementParameters: QuantizerParameterAccess {
    let s: UnsafePointer<Float>, lo: UnsafePointer<Float>, hi: UnsafePointer<Float>
    @inline(__always) func scale(_ i: Int) -> Float { s[i] }
    @inline(__always) func lower(_ i: Int) -> Float { lo[i] }
    @inline(__always) func upper(_ i: Int) -> Float { hi[i] }
}

/// 1.5 * 2^23: for |v| <= 2^22, `(v + magic) - magic` is v rounded half to even (the sum's ulp is 1).
private let integerRoundingMagic: Float = 12_582_912

/// Integer quantize(-dequantize) of one run, as ONNX QuantizeLinear/DequantizeLinear compute it:
/// v = x / scale (float32 division), q - zp = clamp(round_half_even(v), qmin - zp, qmax - zp);
/// NaN quantizes to qmin, as ONNX Runtime does. Writes (q - zp) * scale, or the code q when
/// `dequantize` is false (`codeOffset` = qmin, so q = (q - zp) - lower + qmin).
@inline(__always)
func quantizeIntegers<P: QuantizerParameterAccess>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ p: P,
    dequantize: Bool, codeOffset: Float
) {
    if dequantize {
        for i in 0..<count {
            var v = x[i] / p.scale(i)
            v = v > p.lower(i) ? v : p.lower(i)
            v = v < p.upper(i) ? v : p.upper(i)
            y[i] = ((v + integerRoundingMagic) - integerRoundingMagic) * p.scale(i)
        }
    } else {
        for i in 0..<count {
            var v = x[i] / p.scale(i)
            v = v > p.lower(i) ? v : p.lower(i)
            v = v < p.upper(i) ? v : p.upper(i)
            y[i] = ((v + integerRoundingMagic) - integerRoundingMagic) - p.lower(i) + codeOffset
        }
    }
}

/// Float-format quantize(-dequantize) of one run: y = cast(x / scale) * scale, or the cast value itself
/// when `dequantize` is false.
@inline(__always)
func quantizeFloats<P: QuantizerParameterAccess>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ p: P,
    grid: FloatGrid, dequantize: Bool
) {
    if dequantize {
        for i in 0..<count { y[i] = grid.round(x[i] / p.scale(i)) * p.scale(i) }
    } else {
        for i in 0..<count { y[i] = grid.round(x[i] / p.scale(i)) }
    }
}

/// Elements of one run whose x / scale lies outside [lower, upper] (NaN is not counted).
@inline(__always)
func countClipped<P: QuantizerParameterAccess>(_ x: UnsafePointer<Float>, _ count: Int, _ p: P) -> Int {
    var clipped = 0
    for i in 0..<count {
        let v = x[i] / p.scale(i)
        clipped += v < p.lower(i) || v > p.upper(i) ? 1 : 0
    }
    return clipped
}
