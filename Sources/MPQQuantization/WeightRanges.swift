import Foundation
import MPQGraph
import MPQRuntime

/// Ranges of a weight tensor computed directly from its values (weights are small enough to keep).
public enum WeightRanges {
    /// Shrink factors 0.30, 0.31, ..., 1.00 of the min-max range that `.mse` tries.
    static let shrinkFactors: [Float] = (30...100).map { Float($0) / 100 }

    /// Per-tensor (axis nil), per-channel (axis), or per-group (axis = reduction dim, groupSize) ranges,
    /// in the element order ONNX uses for per-channel ([C]) and blocked ([.., ceil(dim/groupSize), ..]) scales.
    ///
    /// .minMax (and .percentile): each slice's exact min/max. .mse: for each slice, the range
    /// f x (min-max range) over the shrink factors f = 0.30, 0.31, ..., 1.00 minimising the
    /// round-to-nearest-even quantization MSE of the slice's values on the grid of `levels`
    /// steps that `UniformGrid` describes (ties keep the wider range).
    /// Every range is then widened to contain 0, made [-a, a] when `symmetric`, and never
    /// empty (an all-zero slice gets [-1, 1] or [0, 1]); see `quantizationRange`.
    /// - Throws: `MPQError.typeMismatch` unless float32; `MPQError.invalidInput` for NaN or
    ///   infinite weights, an axis out of range, a group size without an axis or below 1,
    ///   or levels outside 2...65536.
    public static func ranges(of weights: Tensor, method: RangeMethod, axis: Int?, groupSize: Int?,
                              levels: Int, symmetric: Bool) throws -> (minimums: [Float], maximums: [Float]) {
        guard weights.dtype == .float32 else {
            throw MPQError.typeMismatch("weight ranges need float32 weights, not \(weights.dtype)")
        }
        guard levels >= 2 && levels <= UniformGrid.maximumLevels else {
            throw MPQError.invalidInput("quantization grid of \(levels) levels is not in 2...65536")
        }
        let slices = try WeightSlices(try weights.rowMajor(), axis: axis, groupSize: groupSize)
        var minimums: [Float] = [], maximums: [Float] = []
        minimums.reserveCapacity(slices.count)
        maximums.reserveCapacity(slices.count)
        try slices.values.withUnsafeBufferPointer { buffer in
            for k in 0..<slices.count {
                let range = slices.range(k)
                guard let extremes = ValueExtremes.of(buffer.baseAddress! + range.lowerBound, count: range.count) else {
                    throw MPQError.invalidInput("non-finite weight value (NaN or infinity) in a tensor of shape \(weights.shape)")
                }
                let bounds = range.isEmpty ? quantizationRange(0, 0, symmetric: symmetric)
                    : quantizationRange(extremes.minimum, extremes.maximum, symmetric: symmetric)
                minimums.append(bounds.minimum)
                maximums.append(bounds.maximum)
            }
        }
        if method == .mse {
            shrinkToMinimumError(slices, &minimums, &maximums, levels: levels, symmetric: symmetric)
        }
        return (minimums, maximums)
    }

    /// Replaces each slice's range by its best shrunk version, scoring every (slice, factor) pair in parallel.
    private static func shrinkToMinimumError(_ slices: WeightSlices, _ minimums: inout [Float], _ maximums: inout [Float],
                                             levels: Int, symmetric: Bool) {
        let factors = shrinkFactors
        var errors = [Double](repeating: 0, count: slices.count * factors.count)
        let averageLength = max(1, slices.values.count / max(1, slices.count))
        let (lows, highs) = (minimums, maximums)
        slices.values.withUnsafeBufferPointer { values in
            errors.withUnsafeMutableBufferPointer { errors in
                ExecutionContext.allCores.parallelFor(errors.count, minimumChunk: max(1, 65_536 / averageLength)) { tasks in
                    for task in tasks {
                        let k = task / factors.count, f = factors[task % factors.count]
                        let range = slices.range(k)
                        let grid = UniformGrid(lo: lows[k] * f, hi: highs[k] * f, levels: levels, symmetric: symmetric)
                        errors[task] = grid.squaredError(of: values.baseAddress! + range.lowerBound, count: range.count)
                    }
                }
            }
        }
        for k in 0..<slices.count {
            var best = factors.count - 1
            for i in stride(from: factors.count - 2, through: 0, by: -1) {
                if errors[k * factors.count + i] < errors[k * factors.count + best] { best = i }
            }
            minimums[k] = lows[k] * factors[best]
            maximums[k] = highs[k] * factors[best]
        }
    }
}

/// A weight tensor's values regrouped so that each quantization slice is contiguous.
///
/// Per-channel along axis a of shape [outer, C, inner]: slice c holds w[o, c, i] for all o, i.
/// Per-group of G along axis a of shape [outer, D, inner]: slice (o, b, i), numbered in the
/// row-major order of the ONNX blocked scale [outer, ceil(D / G), inner], holds w[o, d, i]
/// for d in [bG, min((b + 1)G, D)).
struct WeightSlices {
    private(set) var values: [Float]
    /// Slice k is values[starts[k] ..< starts[k + 1]].
    private(set) var starts: [Int]

    var count: Int { starts.count - 1 }
    func range(_ k: Int) -> Range<Int> { starts[k]..<starts[k + 1] }

    init(_ weights: Tensor, axis: Int?, groupSize: Int?) throws {
        let shape = weights.shape
        guard let axis else {
            if let groupSize {
                throw MPQError.invalidInput("group size \(groupSize) needs an axis to group along")
            }
            values = weights.scalars(as: Float.self)
            starts = [0, values.count]
            return
        }
        guard axis >= -shape.count && axis < shape.count else {
            throw MPQError.invalidInput("axis \(axis) is out of range for weights of shape \(shape)")
        }
        let a = axis < 0 ? axis + shape.count : axis
        let outer = shape[..<a].reduce(1, *), length = shape[a], inner = shape[(a + 1)...].reduce(1, *)
        values = []
        values.reserveCapacity(weights.count)
        starts = [0]
        try weights.withUnsafeBufferPointer(as: Float.self) { w in
            if let groupSize {
                guard groupSize >= 1 else { throw MPQError.invalidInput("group size \(groupSize) is below 1") }
                let blocks = (length + groupSize - 1) / groupSize
                starts.reserveCapacity(outer * blocks * inner + 1)
                for o in 0..<outer {
                    for b in 0..<blocks {
                        for i in 0..<inner {
                            for d in (b * groupSize)..<min((b + 1) * groupSize, length) {
                                values.append(w[(o * length + d) * inner + i])
                            }
                            starts.append(values.count)
                        }
                    }
                }
            } else {
                for c in 0..<length {
                    for o in 0..<outer {
                        values.append(contentsOf: w[((o * length + c) * inner)..<((o * length + c + 1) * inner)])
                    }
                    starts.append(values.count)
                }
            }
        }
    }
}
