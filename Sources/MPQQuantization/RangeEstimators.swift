import Foundation
import MPQGraph
import MPQRuntime

/// How a quantizer's clipping range is chosen from calibration data.
public enum RangeMethod: String, Sendable, Codable, CaseIterable {
    /// Running minimum and maximum over all batches.
    case minMax = "minmax"
    /// Symmetric-tail percentile of the histogram (see `RangeObserver.percentile`).
    case percentile
    /// The range minimising the quantization MSE: over the histogram for
    /// activations, over the values themselves for weights.
    case mse
}

/// Streaming statistics of one tensor: activations are fed batch after batch
/// and never kept, only their count, extremes and (for percentile and MSE) a
/// `StreamingHistogram` of `bins` bins.
///
/// Percentile: a symmetric range [-a, a] takes a as the `percentile` of |x|
/// (the histogram folded at 0); an asymmetric range clips both tails equally,
/// [P(100 - p), P(p)]. Either is then widened to contain 0.
/// Thread safe: batches may come from several threads.
public final class RangeObserver: @unchecked Sendable {
    /// How the range is chosen from the statistics.
    public let method: RangeMethod
    /// The percentile (0, 100] the `.percentile` method keeps.
    public let percentile: Double
    /// Histogram bins (unused for `.minMax`).
    public let bins: Int

    private var extremes = ValueExtremes()
    /// Stays empty for `.minMax`.
    private var histogram: StreamingHistogram
    private let lock = NSLock()
    /// Values per block: each block's extremes are found, the histogram
    /// widened if needed, and the block binned while it is still in L1.
    private static let blockSize = 4096

    /// - Parameters: method; percentile (e.g. 99.99) used by .percentile; bins (default 2048, at least 8).
    public init(method: RangeMethod, percentile: Double = 99.99, bins: Int = 2048) {
        precondition(percentile > 0 && percentile <= 100, "percentile \(percentile) is not in (0, 100]")
        precondition(bins >= 8, "a histogram needs at least 8 bins, not \(bins)")
        self.method = method
        self.percentile = percentile
        self.bins = bins
        histogram = StreamingHistogram(binCount: bins)
    }

    /// Adds a batch of float32 values (any shape); the observer is unchanged when it throws.
    ///
    /// Large batches are split over all cores: each worker bins its blocks into
    /// its own histogram and the histograms merge exactly (see `StreamingHistogram`).
    /// - Throws: `MPQError.invalidInput` when a value is NaN or infinite,
    ///   `MPQError.typeMismatch` for tensors that are not float32.
    public func observe(_ values: Tensor) throws {
        guard values.dtype == .float32 else {
            throw MPQError.typeMismatch("range observer takes float32 values, not \(values.dtype)")
        }
        let values = try values.rowMajor()
        let total = values.count
        guard total > 0 else { return }
        let blocks = (total + Self.blockSize - 1) / Self.blockSize
        let binned = method != .minMax, binCount = bins
        var pieces: [(extremes: ValueExtremes, histogram: StreamingHistogram?)] = []
        var finite = true
        let piecesLock = NSLock()
        withExtendedLifetime(values) {
            let base = values.pointer(as: Float.self)
            ExecutionContext.allCores.parallelFor(blocks, minimumChunk: 16) { range in
                var extremes = ValueExtremes()
                var histogram = binned ? StreamingHistogram(binCount: binCount) : nil
                for block in range {
                    let start = block * Self.blockSize, count = min(Self.blockSize, total - start)
                    guard let blockExtremes = ValueExtremes.of(base + start, count: count) else {
                        piecesLock.lock(); finite = false; piecesLock.unlock()
                        return
                    }
                    extremes.include(blockExtremes)
                    histogram?.cover(extremes.minimum, extremes.maximum)
                    histogram?.add(base + start, count: count)
                }
                histogram?.flush()
                piecesLock.lock(); pieces.append((extremes, histogram)); piecesLock.unlock()
            }
        }
        guard finite else {
            throw MPQError.invalidInput("non-finite value (NaN or infinity) in a calibration batch of shape \(values.shape)")
        }
        lock.lock(); defer { lock.unlock() }
        for piece in pieces { extremes.include(piece.extremes) }
        for case let (_, piece?) in pieces {
            histogram.merge(piece, lo: extremes.minimum, hi: extremes.maximum)
        }
    }

    /// Number of values seen.
    public var count: Int { lock.withLock { extremes.count } }
    /// Smallest value seen (0 before any).
    public var minimum: Float { lock.withLock { extremes.count > 0 ? extremes.minimum : 0 } }
    /// Largest value seen (0 before any).
    public var maximum: Float { lock.withLock { extremes.count > 0 ? extremes.maximum : 0 } }
    /// Width of the histogram's bins, the resolution of percentile and MSE ranges (0 for min-max).
    public var binWidth: Float { lock.withLock { Float(histogram.binWidth) } }

    /// The clipping range for an integer grid of `levels` = qmax - qmin + 1 steps
    /// (2...65536), symmetric ([-a, a]) or asymmetric ([lo, hi]); always contains 0.
    /// Without data, or for all-zero data, it is [-1, 1] or [0, 1] (never empty).
    ///
    /// MSE ranges minimise the expected error of the grid `UniformGrid` describes
    /// (QuantizeLinear with ONNX Runtime's scale and zero point for the range).
    public func range(levels: Int, symmetric: Bool) -> (minimum: Float, maximum: Float) {
        precondition(levels >= 2 && levels <= UniformGrid.maximumLevels, "levels \(levels) is not in 2...65536")
        lock.lock(); defer { lock.unlock() }
        guard extremes.count > 0 else { return quantizationRange(0, 0, symmetric: symmetric) }
        let lo = extremes.minimum, hi = extremes.maximum
        switch method {
        case .minMax:
            return quantizationRange(lo, hi, symmetric: symmetric)
        case .percentile where symmetric:
            let a = Float(histogram.magnitudeSegments(lo: lo, hi: hi).quantile(percentile / 100))
            return quantizationRange(-a, a, symmetric: true)
        case .percentile:
            let segments = histogram.segments(lo: lo, hi: hi)
            return quantizationRange(Float(segments.quantile(1 - percentile / 100)),
                                     Float(segments.quantile(percentile / 100)), symmetric: false)
        case .mse where symmetric:
            let search = ClippingSearch(histogram: histogram, extremes: extremes, levels: levels)
            let a = Float(search.symmetricThreshold(lo: Double(lo), hi: Double(hi)))
            return quantizationRange(-a, a, symmetric: true)
        case .mse:
            let search = ClippingSearch(histogram: histogram, extremes: extremes, levels: levels)
            let best = search.asymmetricRange(lo: Double(lo), hi: Double(hi))
            return quantizationRange(Float(best.lo), Float(best.hi), symmetric: false)
        }
    }
}

/// [lo, hi] widened to contain 0, made [-a, a] (a = max(|lo|, |hi|)) when
/// symmetric; a range narrower than 2^-100 (all zeros) becomes [-1, 1] or
/// [0, 1], so the scale (width / (levels - 1)) stays a normal float.
func quantizationRange(_ lo: Float, _ hi: Float, symmetric: Bool) -> (minimum: Float, maximum: Float) {
    var lo = min(lo, 0), hi = max(hi, 0)
    if symmetric {
        hi = max(-lo, hi)
        lo = -hi
    }
    guard hi - lo >= 0x1p-100 else { return symmetric ? (-1, 1) : (0, 1) }
    return (lo, hi)
}

extension ExecutionContext {
    /// A context using every core, for quantization work outside a model run.
    static let allCores = ExecutionContext(threads: ProcessInfo.processInfo.activeProcessorCount)
}
