import Foundation
import MPQGraph
import MPQRuntime

/// The integer grid a quantizer with `levels` steps lays over a clipping range
/// [lo, hi], as QuantizeLinear applies it (ONNX Runtime's parameter rule):
/// scale s = (hi - lo) / (levels - 1); zero point z = levels / 2 when symmetric
/// (the signed grid centred on 0, e.g. int8 with zero point 0), otherwise
/// round(-lo / s) clamped to [0, levels - 1]; x quantizes to
/// q = clamp(round_half_even(x / s) + z, 0, levels - 1) and comes back as (q - z) s.
struct UniformGrid {
    /// Levels above this would break the rounding trick of `squaredError(of:count:)`; int16 is the widest grid.
    static let maximumLevels = 1 << 16

    let scale: Float
    let zeroPoint: Float
    let levels: Int

    init(lo: Float, hi: Float, levels: Int, symmetric: Bool) {
        self.levels = levels
        scale = (hi - lo) / Float(levels - 1)
        zeroPoint = symmetric ? Float(levels / 2) : min(max((-lo / scale).rounded(.toNearestOrEven), 0), Float(levels - 1))
    }

    /// Smallest and largest representable values.
    var lowest: Double { -Double(zeroPoint) * Double(scale) }
    var highest: Double { (Double(levels - 1) - Double(zeroPoint)) * Double(scale) }

    /// Sum of (x - dequantize(quantize(x)))^2 over `count` values.
    func squaredError(of values: UnsafePointer<Float>, count: Int) -> Double {
        let s = scale, low = -zeroPoint, high = Float(levels - 1) - zeroPoint
        // Adding and subtracting 1.5 * 2^23 rounds |v| < 2^22 to the nearest integer, ties to even.
        let magic: Float = 12_582_912
        var sum = 0.0
        for j in 0..<count {
            let x = values[j]
            let q = (min(max(x / s, low), high) + magic) - magic
            let e = q * s - x
            sum += Double(e * e)
        }
        return sum
    }

    /// Mean of (x - dequantize(quantize(x)))^2 for x uniform on [a, b] (the value a when a == b).
    ///
    /// Clipped parts: the mean of (x - c)^2 over [a, b] is (A^2 + AB + B^2) / 3 with
    /// A = a - c, B = b - c. Inside the range, in steps z = x / s with
    /// k = round(z) and r = z - k, the integral of (z - round(z))^2 is k/12 + r^3/3,
    /// so bins narrower than a step are weighted by where they sit on the grid
    /// (a spike of exact zeros costs nothing) rather than by s^2/12.
    func meanSquaredError(from a: Double, to b: Double) -> Double {
        guard b > a else {
            var x = Float(a)
            return squaredError(of: &x, count: 1)
        }
        let low = lowest, high = highest
        var total = 0.0
        if a < low {
            let end = min(b, low)
            total += (end - a) * Self.meanOfSquare(a - low, end - low)
        }
        if b > high {
            let start = max(a, high)
            total += (b - start) * Self.meanOfSquare(start - high, b - high)
        }
        let start = max(a, low), end = min(b, high)
        if end > start { total += (end - start) * roundingMean(start, end) }
        return total / (b - a)
    }

    private static func meanOfSquare(_ a: Double, _ b: Double) -> Double { (a * a + a * b + b * b) / 3 }

    /// Mean rounding error squared over [a, b], inside the clipping range.
    private func roundingMean(_ a: Double, _ b: Double) -> Double {
        let s = Double(scale)
        let za = a / s, zb = b / s
        let ka = (za + 0.5).rounded(.down), kb = (zb + 0.5).rounded(.down)
        let ra = za - ka, rb = zb - kb
        let mean = ka == kb
            ? Self.meanOfSquare(ra, rb)
            : ((kb - ka) / 12 + (rb * rb * rb - ra * ra * ra) / 3) / (zb - za)
        return mean * s * s
    }
}

/// The clipping range minimising the expected quantization MSE over a
/// histogram (bins taken as uniform densities; see `UniformGrid.meanSquaredError`).
///
/// Candidates run coarse to fine: a geometric ladder of thresholds from "no
/// clipping" down to one bin width, then repeated linear refinements between
/// the best candidate's neighbours. Symmetric ranges score every candidate on
/// the full histogram; asymmetric ones search lo and hi jointly, scoring the
/// ladder grid (up to ~2000 pairs) on alike bins merged up to 8 at a time.
struct ClippingSearch {
    let fine: [HistogramSegment]
    let coarse: [HistogramSegment]
    /// The histogram's bin width: thresholds below it are not resolved.
    let resolution: Double
    let levels: Int

    init(histogram: StreamingHistogram, extremes: ValueExtremes, levels: Int) {
        fine = histogram.segments(lo: extremes.minimum, hi: extremes.maximum)
        coarse = fine.mergingAlike(upTo: 8)
        resolution = histogram.binWidth
        self.levels = levels
    }

    /// Sum over the segments of count x mean squared error (nil for an empty range).
    private func error(lo: Double, hi: Double, symmetric: Bool, over segments: [HistogramSegment]) -> Double? {
        let lo = Float(lo), hi = Float(hi)
        guard hi > lo else { return nil }
        let grid = UniformGrid(lo: lo, hi: hi, levels: levels, symmetric: symmetric)
        return segments.reduce(0) { $0 + $1.count * grid.meanSquaredError(from: $1.lower, to: $1.upper) }
    }

    /// Thresholds top, top 2^(-1/perOctave), ... down to the resolution, ascending.
    private func ladder(from top: Double, perOctave: Int) -> [Double] {
        let octaves = top > resolution ? log2(top / resolution) : 0
        let count = 1 + min(perOctave * 24, Int(Double(perOctave) * octaves))
        return (0..<count).reversed().map { top * exp2(-Double($0) / Double(perOctave)) }
    }

    /// Evenly spaced candidates between the neighbours of `values[index]`.
    private static func refined(_ values: [Double], around index: Int, count: Int) -> [Double] {
        let lower = values[max(index - 1, 0)], upper = values[min(index + 1, values.count - 1)]
        guard upper > lower else { return [values[index]] }
        return (0..<count).map { lower + (upper - lower) * Double($0) / Double(count - 1) }
    }

    /// Index of the candidate (lo, hi) with the smallest error; the first one wins ties.
    private func best(_ candidates: [(lo: Double, hi: Double)], symmetric: Bool,
                      over segments: [HistogramSegment]) -> Int {
        var best = 0, smallest = Double.infinity
        for (index, candidate) in candidates.enumerated() {
            if let e = error(lo: candidate.lo, hi: candidate.hi, symmetric: symmetric, over: segments), e < smallest {
                smallest = e
                best = index
            }
        }
        return best
    }

    /// The threshold a of the best symmetric range [-a, a] for data in [lo, hi].
    ///
    /// The ladder starts where the grid represents lo and hi unclipped: with an
    /// even number of levels the grid reaches only (levels/2 - 1) s above 0.
    func symmetricThreshold(lo: Double, hi: Double) -> Double {
        let half = Double(levels / 2), steps = Double(levels - 1)
        let top = max(steps > half ? hi * steps / (2 * (steps - half)) : hi, -lo * steps / (2 * half))
        var candidates = ladder(from: top, perOctave: 16)
        var index = best(candidates.map { (-$0, $0) }, symmetric: true, over: fine)
        for count in [33, 17] {
            candidates = Self.refined(candidates, around: index, count: count)
            index = best(candidates.map { (-$0, $0) }, symmetric: true, over: fine)
        }
        return candidates[index]
    }

    /// The best asymmetric range inside [min(lo, 0), max(hi, 0)].
    func asymmetricRange(lo: Double, hi: Double) -> (lo: Double, hi: Double) {
        var los = lo < 0 ? ladder(from: -lo, perOctave: 4).reversed().map { -$0 } + [0] : [0]
        var his = hi > 0 ? [0] + ladder(from: hi, perOctave: 4) : [0]
        let pairs = { (los: [Double], his: [Double]) in los.flatMap { lo in his.map { (lo, $0) } } }
        var index = best(pairs(los, his), symmetric: false, over: coarse)
        for _ in 0..<3 {
            los = Self.refined(los, around: index / his.count, count: 9)
            his = Self.refined(his, around: index % his.count, count: 9)
            index = best(pairs(los, his), symmetric: false, over: fine)
        }
        return (los[index / his.count], his[index % his.count])
    }
}
