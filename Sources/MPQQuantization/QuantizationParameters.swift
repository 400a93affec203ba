import Foundation
import MPQGraph
import MPQRuntime

/// Scales and zero points of one quantizer; arrays have one entry per channel / group, in the row-major
/// order of ONNX's scale tensor (per-channel: `[C]`; per-group: the tensor shape with dim `axis` divided
/// by the group size; see `QuantizationGranularity.parameterShape(for:)`).
public struct QuantizationParameters: Hashable, Sendable {
    /// The number format the parameters quantize to.
    public var format: QuantizationFormat
    /// Per tensor, per channel (with axis) or per group (with axis and size).
    public var granularity: QuantizationGranularity
    /// Step sizes: real value = scale × (q − zeroPoint).
    public var scales: [Float]
    /// Codes that represent the real value 0 (0 for symmetric and floating-point formats).
    public var zeroPoints: [Int]
    /// The clipping range each scale was computed from (for reports/encodings): the requested range
    /// widened to include 0, and made symmetric (`[-m, m]`, m = max(|min|, |max|)) for symmetric integer
    /// formats and fp8.
    public var minimums: [Float]
    /// Upper ends of the clipping ranges (see `minimums`).
    public var maximums: [Float]

    /// Parameters from per-channel/group ranges `[minimums[i], maximums[i]]`, computed as ONNX Runtime's
    /// quantization tool does (`quant_utils.compute_scale_zp`), in float64, then stored as float32:
    /// - the range is first widened to include 0;
    /// - integer, symmetric: m = max(|min|, |max|), scale = 2m / (qmax - qmin) (= m / 127.5 for int8,
    ///   m / 127 for int8-narrow), zero point round_half_even((qmin + qmax) / 2) (0 signed, 2^(N-1) unsigned);
    /// - integer, asymmetric: scale = (max - min) / (qmax - qmin), zero point
    ///   round_half_even(qmin - min / scale) clamped to [qmin, qmax];
    /// - a range narrower than float32's smallest normal number gives scale 1 (never 0 or NaN) and zero
    ///   point 0 (symmetric: the symmetric zero point, so every channel shares it; ONNX Runtime uses 0);
    /// - fp8: scale = max(|min|, |max|) / the format's largest value, so the range maps onto the whole
    ///   format (scale 1 for a zero range), zero point 0;
    /// - fp16, bf16, float32: scale 1, zero point 0.
    /// Mismatched array lengths keep the shorter one; `Tensor.fakeQuantized` then reports the count.
    public init(format: QuantizationFormat, granularity: QuantizationGranularity, minimums: [Float], maximums: [Float]) {
        self.format = format
        self.granularity = granularity
        let channels = zip(minimums, maximums).map { Self.channel(format, minimum: $0, maximum: $1) }
        scales = channels.map(\.scale)
        zeroPoints = channels.map(\.zeroPoint)
        self.minimums = channels.map(\.minimum)
        self.maximums = channels.map(\.maximum)
    }

    /// Parameters with given scales and zero points (e.g. read from a QDQ model or an encodings file);
    /// the ranges are the representable ones: [(qmin - zp) * scale, (qmax - zp) * scale] for integers,
    /// ± the format's largest finite value times the scale for floats.
    public init(format: QuantizationFormat, granularity: QuantizationGranularity, scales: [Float], zeroPoints: [Int]) {
        self.format = format
        self.granularity = granularity
        self.scales = scales
        self.zeroPoints = zeroPoints
        if let largest = format.largestFiniteValue {
            minimums = scales.map { -largest * $0 }
            maximums = scales.map { largest * $0 }
        } else {
            minimums = zip(scales, zeroPoints).map { Float(format.qmin - $1) * $0 }
            maximums = zip(scales, zeroPoints).map { Float(format.qmax - $1) * $0 }
        }
    }

    private static func channel(_ format: QuantizationFormat, minimum: Float, maximum: Float)
        -> (scale: Float, zeroPoint: Int, minimum: Float, maximum: Float) {
        let low = min(minimum, 0), high = max(maximum, 0)
        let magnitude = max(-low, high)
        switch format {
        case .integer(_, _, let symmetric, _):
            let qmin = Double(format.qmin), qmax = Double(format.qmax)
            let (rangeMinimum, rangeMaximum) = symmetric ? (-magnitude, magnitude) : (low, high)
            let scale = (Double(rangeMaximum) - Double(rangeMinimum)) / (qmax - qmin)
            let zeroPoint: Double
            if symmetric {
                zeroPoint = ((qmin + qmax) / 2).rounded(.toNearestOrEven)
            } else if scale < Double(Float.leastNormalMagnitude) {
                zeroPoint = min(max(0, qmin), qmax)
            } else {
                zeroPoint = min(max((qmin - Double(rangeMinimum) / scale).rounded(.toNearestOrEven), qmin), qmax)
            }
            let stored = scale < Double(Float.leastNormalMagnitude) ? 1 : Float(scale)
            // NaN ranges give a NaN scale, which fakeQuantized reports; the zero point must stay an integer.
            return (stored, zeroPoint.isFinite ? Int(zeroPoint) : 0, rangeMinimum, rangeMaximum)
        case .float8E4M3FN, .float8E5M2:
            let scale = Double(magnitude) / Double(format.largestFiniteValue!)
            return (scale < Double(Float.leastNormalMagnitude) ? 1 : Float(scale), 0, -magnitude, magnitude)
        case .float16, .bfloat16, .float32:
            return (1, 0, low, high)
        }
    }

    /// Checks the parameters against a tensor of `shape`: the format, the number of scales and zero points
    /// (`MPQError.shapeMismatch`), scales positive and finite, zero points on the grid
    /// (`MPQError.invalidInput`). Returns the number of parameters.
    @discardableResult
    public func validate(for shape: [Int]) throws -> Int {
        try format.validate()
        let expected = try granularity.parameterShape(for: shape).reduce(1, *)
        guard scales.count == expected, zeroPoints.count == expected else {
            throw MPQError.shapeMismatch("\(granularity) \(format) quantization of a tensor of shape \(shape) needs "
                + "\(expected) scales and zero points, got \(scales.count) and \(zeroPoints.count)")
        }
        if let index = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw MPQError.invalidInput("\(format) quantization: scale \(scales[index]) at index \(index) "
                + "is not a positive finite number")
        }
        let allowed = format.qmin...format.qmax
        if let index = zeroPoints.firstIndex(where: { !allowed.contains($0) }) {
            throw MPQError.invalidInput("\(format) quantization: zero point \(zeroPoints[index]) at index \(index) "
                + "is outside \(allowed)")
        }
        return expected
    }
}
