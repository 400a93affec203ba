import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Predicted against measured for random mixed configurations: how well the
/// additive loss-MSE prediction ranks configurations (Spearman) and how close
/// the sum of block latencies comes to the whole deployed model's.
public struct TaylorValidation: Sendable {
    /// One random mixed configuration, predicted and measured.
    public struct Row: Sendable {
        /// Candidate index per group.
        public var assignment: [Int]
        /// Sum of the chosen candidates' Taylor sensitivities.
        public var predictedLossMSE: Double
        /// Loss MSE measured on the calibration data.
        public var measuredLossMSE: Double
        /// Sum of the blocks' measured latency, ms.
        public var predictedMilliseconds: Double
        /// Latency of the whole deployed model, ms.
        public var measuredMilliseconds: Double
    }

    /// One (group, candidate) quantized alone, everything else at its most precise candidate.
    public struct SingleGroup: Sendable {
        /// Group index.
        public var group: Int
        /// Candidate index into the group's allowed list.
        public var candidate: Int
        /// The group's Taylor sensitivity at the candidate.
        public var predictedLossMSE: Double
        /// Loss MSE measured with only this group quantized.
        public var measuredLossMSE: Double
    }

    /// The random configurations measured.
    public var rows: [Row]
    /// The most sensitive (group, candidate) pairs alone: where the first-order prediction is tested hardest.
    public var singleGroups: [SingleGroup]
    /// Spearman rank correlation of predicted and measured loss MSE.
    public var lossSpearman: Double
    /// Mean and largest |predicted - measured| / measured latency.
    public var meanLatencyError: Double
    /// Largest |predicted − measured| / measured latency.
    public var maxLatencyError: Double

    /// Measures `count` random configurations. Configuration i quantizes each group with
    /// probability (i + 0.5) / count (to a random candidate other than its most precise one),
    /// so the set spans nearly float to nearly fully quantized.
    ///
    /// - Parameters:
    ///   - search: the prepared Taylor-IP search whose predictions are checked.
    ///   - count: random configurations to measure (at least 2).
    ///   - seed: seeds the random configurations.
    ///   - measuresLatency: false skips block and end-to-end timings (latency values and errors are then NaN).
    ///   - singleGroupCount: how many of the most sensitive (group, candidate) pairs to also measure alone.
    ///   - progress: called with (measured, count) as configurations finish.
    public static func measure(_ search: TaylorIntegerProgramSearch, count: Int, seed: UInt64 = 1,
                               measuresLatency: Bool = true, singleGroupCount: Int = 5,
                               progress: ((Int, Int) -> Void)? = nil) throws -> TaylorValidation {
        guard count >= 2 else { throw MPQError.invalidInput("validation needs at least 2 configurations, got \(count)") }
        var state = seed
        func uniform() -> Double {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
        }
        var rows: [Row] = []
        for i in 0..<count {
            let probability = (Double(i) + 0.5) / Double(count)
            let assignment = search.candidates.map { allowed -> Int in
                guard allowed.count > 1, uniform() < probability else { return 0 }
                return 1 + min(Int(uniform() * Double(allowed.count - 1)), allowed.count - 2)
            }
            rows.append(Row(assignment: assignment, predictedLossMSE: try search.predictedLossMSE(assignment),
                            measuredLossMSE: try search.measuredLossMSE(assignment),
                            predictedMilliseconds: measuresLatency ? try search.predictedMilliseconds(assignment) : .nan,
                            measuredMilliseconds: measuresLatency ? try search.measuredMilliseconds(assignment) : .nan))
            progress?(i + 1, count)
        }
        let table = try search.lossMSE()
        let pairs = table.indices.flatMap { g in table[g].indices.dropFirst().map { (g, $0) } }
        let single = try pairs.sorted { table[$0.0][$0.1] > table[$1.0][$1.1] }.prefix(singleGroupCount).map { g, c in
            var assignment = [Int](repeating: 0, count: table.count)
            assignment[g] = c
            return SingleGroup(group: g, candidate: c, predictedLossMSE: table[g][c],
                               measuredLossMSE: try search.measuredLossMSE(assignment))
        }
        let errors = rows.map { abs($0.predictedMilliseconds - $0.measuredMilliseconds) / $0.measuredMilliseconds }
        return TaylorValidation(rows: rows, singleGroups: single,
                                lossSpearman: spearman(rows.map(\.predictedLossMSE), rows.map(\.measuredLossMSE)),
                                meanLatencyError: errors.reduce(0, +) / Double(errors.count),
                                maxLatencyError: errors.max() ?? .nan)
    }

    /// Spearman's rank correlation (average ranks for ties).
    public static func spearman(_ a: [Double], _ b: [Double]) -> Double {
        func ranks(_ values: [Double]) -> [Double] {
            let order = values.indices.sorted { values[$0] < values[$1] }
            var result = [Double](repeating: 0, count: values.count)
            var start = 0
            while start < order.count {
                var end = start
                while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
                for k in start...end { result[order[k]] = Double(start + end) / 2 }
                start = end + 1
            }
            return result
        }
        let x = ranks(a), y = ranks(b)
        let n = Double(x.count)
        guard n > 1 else { return .nan }
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (u, v) in zip(x, y) {
            sxy += (u - mx) * (v - my)
            sxx += (u - mx) * (u - mx)
            syy += (v - my) * (v - my)
        }
        return sxx > 0 && syy > 0 ? sxy / (sxx * syy).squareRoot() : .nan
    }
}
