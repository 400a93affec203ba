import Foundation
import MPQGraph
import MPQRuntime

/// Count, minimum and maximum of the values seen so far.
struct ValueExtremes: Equatable {
    var count = 0
    var minimum = Float.infinity
    var maximum = -Float.infinity

    mutating func include(_ other: ValueExtremes) {
        count += other.count
        minimum = min(minimum, other.minimum)
        maximum = max(maximum, other.maximum)
    }

    /// The extremes of `count` floats, or nil when one is NaN or infinite.
    ///
    /// Four independent minimum/maximum chains keep the loop from waiting on
    /// one compare latency per element; NaN (which every comparison skips) is
    /// caught by `x != x`, infinities by the extremes themselves.
    static func of(_ values: UnsafePointer<Float>, count: Int) -> ValueExtremes? {
        guard count > 0 else { return ValueExtremes() }
        let first = values[0]
        var lo0 = first, lo1 = first, lo2 = first, lo3 = first
        var hi0 = first, hi1 = first, hi2 = first, hi3 = first
        var nan: UInt32 = 0
        var j = 0
        while j + 4 <= count {
            let a = values[j], b = values[j + 1], c = values[j + 2], d = values[j + 3]
            lo0 = min(lo0, a); lo1 = min(lo1, b); lo2 = min(lo2, c); lo3 = min(lo3, d)
            hi0 = max(hi0, a); hi1 = max(hi1, b); hi2 = max(hi2, c); hi3 = max(hi3, d)
            nan |= (a != a ? 1 : 0) | (b != b ? 1 : 0) | (c != c ? 1 : 0) | (d != d ? 1 : 0)
            j += 4
        }
        while j < count {
            let a = values[j]
            lo0 = min(lo0, a); hi0 = max(hi0, a); nan |= a != a ? 1 : 0
            j += 1
        }
        let lo = min(min(lo0, lo1), min(lo2, lo3)), hi = max(max(hi0, hi1), max(hi2, hi3))
        guard nan == 0, lo.isFinite, hi.isFinite else { return nil }
        return ValueExtremes(count: count, minimum: lo, maximum: hi)
    }
}

/// A piece of the value distribution: `count` values spread uniformly over [lower, upper].
struct HistogramSegment: Equatable {
    var lower: Double
    var upper: Double
    var count: Double
}

/// An equal-width histogram of float32 values that widens as data arrive,
/// without keeping the data (ONNX Runtime's and TensorRT's calibrators widen
/// theirs the same way).
///
/// Bin edges lie on a power-of-two lattice: bin `i` covers
/// `[(offset + i) w, (offset + i + 1) w)` with `w = 2^exponent`, so 0 is
/// always an edge and |x| folds onto the same bins. The window starts at the
/// bin of the smallest value. When values fall outside the window, the width
/// doubles (merging pairs of bins exactly) until the range of all values fits
/// in `binCount` bins, and the old counts move to their new bins. The width is
/// therefore always the smallest power of two at which everything fits (and
/// at least `max(|x|) 2^-40`, keeping indices exact integers), whatever the
/// batch order or split: the same values give the same histogram, bit for
/// bit, and occupy more than half of the bins.
struct StreamingHistogram {
    struct Lattice: Equatable {
        /// log2 of the bin width.
        var exponent: Int
        /// Lattice index of the first bin.
        var offset: Int
    }

    let binCount: Int
    private(set) var lattice: Lattice?
    private(set) var counts: [Int]
    /// Four copies of the counts that `add` increments in turn, value by value:
    /// runs of equal values (ReLU zeros) would otherwise wait on one counter's
    /// store-to-load latency. Folded into `counts` by `flush`.
    private var lanes: [Int] = []
    private static let laneCount = 4

    init(binCount: Int) {
        self.binCount = binCount
        counts = [Int](repeating: 0, count: binCount)
    }

    /// The bin width (0 before any value).
    var binWidth: Double { lattice.map { exp2(Double($0.exponent)) } ?? 0 }

    /// floor(x / 2^exponent); `scale` is 2^-exponent, and x * scale is exact in Double.
    @inline(__always)
    private static func index(_ x: Float, scale: Double) -> Int {
        let y = Double(x) * scale
        let truncated = Int(y)
        return Double(truncated) > y ? truncated &- 1 : truncated
    }

    private static func index(_ x: Float, exponent: Int) -> Int {
        index(x, scale: exp2(-Double(exponent)))
    }

    /// The lattice with the smallest exponent (at least `minimumExponent`) whose window holds [lo, hi].
    private static func fitting(_ lo: Float, _ hi: Float, minimumExponent: Int, binCount: Int) -> Lattice {
        let magnitude = max(abs(lo), abs(hi))
        // Below 2^-100 the reciprocal width overflows; below |x| 2^-40 indices leave exact Int range.
        var exponent = max(minimumExponent, -100, magnitude > 0 ? Int(magnitude.exponent) - 40 : -100)
        let span = Double(hi) - Double(lo)
        if span > 0 {
            // 2^ceil(log2(span / (bins - 1))) always fits; a quarter of it never does.
            exponent = max(exponent, Int(log2(span / Double(binCount - 1)).rounded(.up)) - 2)
        }
        while index(hi, exponent: exponent) - index(lo, exponent: exponent) >= binCount { exponent += 1 }
        return Lattice(exponent: exponent, offset: index(lo, exponent: exponent))
    }

    /// Widens (or shifts) the window to hold [lo, hi], which must include every value counted so far.
    mutating func cover(_ lo: Float, _ hi: Float, minimumExponent: Int = .min) {
        if let lattice, lattice.exponent >= minimumExponent {
            // Compared in Double: with a tiny bin width (all values so far 0) the index leaves Int's range.
            let scale = exp2(-Double(lattice.exponent))
            if (Double(lo) * scale).rounded(.down) >= Double(lattice.offset),
               (Double(hi) * scale).rounded(.down) < Double(lattice.offset + binCount) { return }
        }
        let target = Self.fitting(lo, hi, minimumExponent: max(minimumExponent, lattice?.exponent ?? .min),
                                  binCount: binCount)
        flush()
        let old = counts
        counts = [Int](repeating: 0, count: binCount)
        if let source = lattice {
            lattice = target
            accumulate(old, from: source)
        } else {
            lattice = target
        }
    }

    /// Adds `source` counts laid out on `from` (a lattice no coarser than ours) into our bins.
    private mutating func accumulate(_ source: [Int], from: Lattice) {
        guard let lattice else { return }
        let shift = lattice.exponent - from.exponent
        for (i, count) in source.enumerated() where count != 0 {
            counts[((from.offset + i) >> shift) - lattice.offset] += count
        }
    }

    /// Counts `count` values, all inside the window (call `cover` with their extremes first).
    mutating func add(_ values: UnsafePointer<Float>, count: Int) {
        guard let lattice else { preconditionFailure("histogram has no window yet") }
        if lanes.isEmpty { lanes = [Int](repeating: 0, count: Self.laneCount * binCount) }
        let scale = exp2(-Double(lattice.exponent))
        let offset = lattice.offset, bins = binCount
        lanes.withUnsafeMutableBufferPointer { buffer in
            let lane0 = buffer.baseAddress!
            let lane1 = lane0 + bins, lane2 = lane1 + bins, lane3 = lane2 + bins
            var j = 0
            while j + 4 <= count {
                lane0[Self.index(values[j], scale: scale) &- offset] &+= 1
                lane1[Self.index(values[j + 1], scale: scale) &- offset] &+= 1
                lane2[Self.index(values[j + 2], scale: scale) &- offset] &+= 1
                lane3[Self.index(values[j + 3], scale: scale) &- offset] &+= 1
                j += 4
            }
            while j < count {
                lane0[Self.index(values[j], scale: scale) &- offset] &+= 1
                j += 1
            }
        }
    }

    /// Folds the lanes `add` counted into `counts` (and frees them).
    mutating func flush() {
        guard !lanes.isEmpty else { return }
        for lane in 0..<Self.laneCount {
            for i in 0..<binCount { counts[i] += lanes[lane * binCount + i] }
        }
        lanes = []
    }

    /// Adds a flushed histogram's counts; [lo, hi] must hold every value counted by both.
    mutating func merge(_ other: StreamingHistogram, lo: Float, hi: Float) {
        guard let theirs = other.lattice else { return }
        cover(lo, hi, minimumExponent: theirs.exponent)
        accumulate(other.counts, from: theirs)
    }

    /// The nonempty bins in increasing order, the outer edges tightened to [lo, hi].
    func segments(lo: Float, hi: Float) -> [HistogramSegment] {
        guard let lattice else { return [] }
        let width = binWidth
        var result: [HistogramSegment] = []
        for (i, count) in counts.enumerated() where count != 0 {
            let edge = Double(lattice.offset + i) * width
            result.append(HistogramSegment(lower: edge, upper: edge + width, count: Double(count)))
        }
        tighten(&result, lo: Double(lo), hi: Double(hi))
        return result
    }

    /// The histogram of |x| (bins fold onto themselves since 0 is an edge), in increasing order.
    func magnitudeSegments(lo: Float, hi: Float) -> [HistogramSegment] {
        guard let lattice else { return [] }
        let magnitude = { (i: Int) -> Int in let a = lattice.offset + i; return a >= 0 ? a : -a - 1 }
        let occupied = counts.indices.filter { counts[$0] != 0 }.map(magnitude)
        guard let base = occupied.min(), let top = occupied.max() else { return [] }
        var folded = [Int](repeating: 0, count: top - base + 1)
        for (i, count) in counts.enumerated() where count != 0 { folded[magnitude(i) - base] += count }
        let width = binWidth
        var result: [HistogramSegment] = []
        for (j, count) in folded.enumerated() where count != 0 {
            result.append(HistogramSegment(lower: Double(base + j) * width, upper: Double(base + j + 1) * width,
                                           count: Double(count)))
        }
        let smallest: Float = lo >= 0 ? lo : (hi <= 0 ? -hi : 0)
        tighten(&result, lo: Double(smallest), hi: Double(max(-lo, hi)))
        return result
    }

    private func tighten(_ segments: inout [HistogramSegment], lo: Double, hi: Double) {
        guard !segments.isEmpty else { return }
        segments[0].lower = max(segments[0].lower, lo)
        segments[segments.count - 1].upper = min(segments[segments.count - 1].upper, hi)
    }
}

extension Array where Element == HistogramSegment {
    /// The q-quantile in numpy's default (linear) convention: the value at rank
    /// h = q (n - 1) of the sorted values, interpolated between ranks floor(h) and
    /// floor(h) + 1. A segment's c values are taken evenly spread, the k-th at
    /// lower + (k + 1/2)(upper - lower) / c, except that ranks 0 and n - 1 are the
    /// outer edges (the exact extremes): each value, hence the result, is within one bin.
    func quantile(_ q: Double) -> Double {
        let total = reduce(0) { $0 + $1.count }
        guard let first, let last, total > 0 else { return 0 }
        let value = { (rank: Double) -> Double in
            if rank <= 0 { return first.lower }
            if rank >= total - 1 { return last.upper }
            var below = 0.0
            for segment in self {
                if rank < below + segment.count {
                    return segment.lower + (rank - below + 0.5) * (segment.upper - segment.lower) / segment.count
                }
                below += segment.count
            }
            return last.upper
        }
        let h = q * (total - 1), rank = h.rounded(.down)
        return h == rank ? value(rank) : value(rank) + (h - rank) * (value(rank + 1) - value(rank))
    }

    /// Adjacent segments merged while their counts stay alike (within half the
    /// group's mean count plus twice its Poisson noise), at most `limit` at a
    /// time: a smooth density loses little by being spread evenly over the group,
    /// while a spike (ReLU's zeros) keeps its own bin.
    func mergingAlike(upTo limit: Int) -> [HistogramSegment] {
        var result: [HistogramSegment] = []
        var members = 0
        for segment in self {
            if let group = result.last, members < limit, segment.lower == group.upper {
                let mean = group.count / Double(members)
                if abs(segment.count - mean) <= mean / 2 + 2 * mean.squareRoot() {
                    result[result.count - 1].upper = segment.upper
                    result[result.count - 1].count += segment.count
                    members += 1
                    continue
                }
            }
            result.append(segment)
            members = 1
        }
        return result
    }
}
