import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Wall-clock timing of repeated runs, in milliseconds.
public struct Timing: Sendable, Codable, Equatable {
    /// Median run time, ms.
    public var median: Double
    /// Fastest run, ms.
    public var minimum: Double
    /// Slowest run, ms.
    public var maximum: Double
    /// Median absolute deviation from the median: a spread that ignores outliers.
    public var deviation: Double
    /// Rounds of repetitions taken before the spread was small enough (or the round limit was reached).
    public var rounds = 1
    /// True when every round's relative spread stayed above the tolerance: the machine was too busy
    /// for this timing to be trusted (`LatencyMeasurement.NoiseLimit`).
    public var isNoisy = false

    /// A timing from its statistics (all in ms).
    public init(median: Double, minimum: Double, maximum: Double, deviation: Double) {
        self.median = median
        self.minimum = minimum
        self.maximum = maximum
        self.deviation = deviation
    }

    /// Summarises individual run times (ms); throws when there are none.
    public init(samples: [Double]) throws {
        guard !samples.isEmpty else { throw MPQError.invalidInput("a timing needs at least one run") }
        let sorted = samples.sorted()
        let center = Self.median(ofSorted: sorted)
        median = center
        minimum = sorted[0]
        maximum = sorted[sorted.count - 1]
        deviation = Self.median(ofSorted: sorted.map { abs($0 - center) }.sorted())
    }

    /// Median absolute deviation over the median: how far a typical run strays, as a fraction.
    public var relativeSpread: Double { median > 0 ? deviation / median : 0 }

    private static func median(ofSorted values: [Double]) -> Double {
        let middle = values.count / 2
        return values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
    }
}

/// Latency measured with the real kernels, as Taylor-IP's time objective
/// needs (Markovich-Golan et al. 2025: each sub-graph configuration is timed
/// on the target): warm-up runs first (primitive creation, caches, page
/// faults), then rounds of repeated runs until one round's spread is small
/// (`NoiseLimit`): a machine shared with other work shows up as a wide
/// spread, and a timing that stays wide after the last round is flagged
/// (`Timing.isNoisy`) instead of trusted.
public enum LatencyMeasurement {
    /// When a round of repetitions is quiet enough to keep.
    public struct NoiseLimit: Sendable, Equatable {
        /// Largest relative spread (median absolute deviation / median) of a kept round; default 0.05.
        public var tolerance: Double
        /// Most rounds before the timing is flagged noisy; default 4.
        public var maxRounds: Int

        /// A limit of `tolerance` relative spread within `maxRounds` rounds.
        public init(tolerance: Double = 0.05, maxRounds: Int = 4) {
            self.tolerance = tolerance
            self.maxRounds = maxRounds
        }

        /// One round, whatever its spread: the timing is never flagged.
        public static let singleRound = NoiseLimit(tolerance: .infinity, maxRounds: 1)
    }

    /// Times `body`: `warmup` untimed runs, then rounds of `repetitions` timed ones until a round's
    /// relative spread is within `noise.tolerance`; after `noise.maxRounds` rounds the quietest
    /// round is kept and flagged noisy.
    public static func measure(warmup: Int = 3, repetitions: Int = 15, noise: NoiseLimit = NoiseLimit(),
                               _ body: () throws -> Void) throws -> Timing {
        try timing(warmup: warmup, repetitions: repetitions, noise: noise) {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        }
    }

    /// The rounds of `measure(warmup:repetitions:noise:_:)` over `run`, which performs one run and
    /// returns its milliseconds (tests give it synthetic times).
    static func timing(warmup: Int, repetitions: Int, noise: NoiseLimit, run: () throws -> Double) throws -> Timing {
        try measureParts(warmup: warmup, repetitions: repetitions, noise: noise) { [try run()] }[0]
    }

    /// Times the parts of one run (the sub-graphs of a model run with per-node timers): `run` performs
    /// one run and returns each part's milliseconds, always as many. After `warmup` untimed runs,
    /// rounds of `repetitions` runs repeat until every part has had a round within
    /// `noise.tolerance`; a part keeps its first quiet round, or after `noise.maxRounds` rounds its
    /// quietest, flagged noisy.
    public static func measureParts(warmup: Int, repetitions: Int, noise: NoiseLimit,
                                    run: () throws -> [Double]) throws -> [Timing] {
        guard warmup >= 0, repetitions >= 1 else {
            throw MPQError.invalidInput("latency needs warmup >= 0 and repetitions >= 1 (got \(warmup), \(repetitions))")
        }
        guard noise.maxRounds >= 1, noise.tolerance >= 0 else {
            throw MPQError.invalidInput("latency needs at least 1 round and a tolerance >= 0 (got \(noise.maxRounds), \(noise.tolerance))")
        }
        for _ in 0..<warmup { _ = try run() }
        var kept: [Timing?] = []
        var quiet: [Bool] = []
        for round in 1...noise.maxRounds {
            var samples: [[Double]] = []
            for _ in 0..<repetitions {
                let parts = try run()
                if samples.isEmpty { samples = Array(repeating: [], count: parts.count) }
                guard parts.count == samples.count else {
                    throw MPQError.invalidInput("a timed run returned \(parts.count) parts, an earlier one \(samples.count)")
                }
                for (index, value) in parts.enumerated() { samples[index].append(value) }
            }
            if kept.isEmpty {
                kept = Array(repeating: nil, count: samples.count)
                quiet = Array(repeating: false, count: samples.count)
            }
            for (index, partSamples) in samples.enumerated() where !quiet[index] {
                var timing = try Timing(samples: partSamples)
                timing.rounds = round
                quiet[index] = timing.relativeSpread <= noise.tolerance
                if quiet[index] || kept[index].map({ timing.relativeSpread < $0.relativeSpread }) ?? true {
                    kept[index] = timing
                }
            }
            if !quiet.contains(false) { break }
        }
        return zip(kept, quiet).map { timing, isQuiet in
            guard var timing else { return Timing(median: 0, minimum: 0, maximum: 0, deviation: 0) }
            if !isQuiet {
                timing.rounds = noise.maxRounds
                timing.isNoisy = true
            }
            return timing
        }
    }

    /// Times `graph` running on `feeds` in a fresh `InferenceSession` (plan
    /// creation and oneDNN primitive setup happen in the warm-up runs).
    public static func measure(graph: Graph, feeds: [String: Tensor], options: SessionOptions = SessionOptions(),
                               warmup: Int = 3, repetitions: Int = 15, noise: NoiseLimit = NoiseLimit()) throws -> Timing {
        let session = try InferenceSession(graph: graph, options: options)
        return try measure(warmup: max(warmup, 1), repetitions: repetitions, noise: noise) { _ = try session.run(feeds) }
    }

    /// Times one block of a partition: its subgraph of `graph` (which may be a
    /// quantized variant of the partitioned graph, with the same node names)
    /// on `feeds`, its entry values (see `SubgraphPartition.entryValues`);
    /// `inputShapes` are the whole graph's input shapes those values come from.
    public static func measure(block: Int, of partition: SubgraphPartition, graph: Graph,
                               inputShapes: [String: [Int]], feeds: [String: Tensor],
                               options: SessionOptions = SessionOptions(),
                               warmup: Int = 3, repetitions: Int = 15, noise: NoiseLimit = NoiseLimit()) throws -> Timing {
        let subgraph = try partition.subgraph(block, of: graph, inputShapes: inputShapes)
        return try measure(graph: subgraph, feeds: feeds, options: options, warmup: warmup, repetitions: repetitions,
                           noise: noise)
    }
}
