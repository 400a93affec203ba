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

    private static func median(ofSorted values: [Double]) -> Double {
        let middle = values.count / 2
        return values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
    }
}

/// Latency measured with the real kernels, as Taylor-IP's time objective
/// needs (Markovich-Golan et al. 2025: each sub-graph configuration is timed
/// on the target): warm-up runs first (primitive creation, caches, page
/// faults), then the median of repeated runs, which is robust to the
/// occasional slow run on a shared machine.
public enum LatencyMeasurement {
    /// Times `body`: `warmup` untimed runs, then `repetitions` timed ones.
    public static func measure(warmup: Int = 3, repetitions: Int = 15, _ body: () throws -> Void) throws -> Timing {
        guard warmup >= 0, repetitions >= 1 else {
            throw MPQError.invalidInput("latency needs warmup >= 0 and repetitions >= 1 (got \(warmup), \(repetitions))")
        }
        for _ in 0..<warmup { try body() }
        var samples: [Double] = []
        samples.reserveCapacity(repetitions)
        for _ in 0..<repetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return try Timing(samples: samples)
    }

    /// Times `graph` running on `feeds` in a fresh `InferenceSession` (plan
    /// creation and oneDNN primitive setup happen in the warm-up runs).
    public static func measure(graph: Graph, feeds: [String: Tensor], options: SessionOptions = SessionOptions(),
                               warmup: Int = 3, repetitions: Int = 15) throws -> Timing {
        let session = try InferenceSession(graph: graph, options: options)
        return try measure(warmup: max(warmup, 1), repetitions: repetitions) { _ = try session.run(feeds) }
    }

    /// Times one block of a partition: its subgraph of `graph` (which may be a
    /// quantized variant of the partitioned graph, with the same node names)
    /// on `feeds`, its entry values (see `SubgraphPartition.entryValues`);
    /// `inputShapes` are the whole graph's input shapes those values come from.
    public static func measure(block: Int, of partition: SubgraphPartition, graph: Graph,
                               inputShapes: [String: [Int]], feeds: [String: Tensor],
                               options: SessionOptions = SessionOptions(),
                               warmup: Int = 3, repetitions: Int = 15) throws -> Timing {
        let subgraph = try partition.subgraph(block, of: graph, inputShapes: inputShapes)
        return try measure(graph: subgraph, feeds: feeds, options: options, warmup: warmup, repetitions: repetitions)
    }
}
