import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite("Latency measurement")
struct LatencyMeasurementTests {
    @Test("Median, extremes and median absolute deviation of run times")
    func statistics() throws {
        let odd = try Timing(samples: [3, 1, 2, 10, 2])
        #expect(odd == Timing(median: 2, minimum: 1, maximum: 10, deviation: 1))
        let even = try Timing(samples: [4, 1, 3, 2])
        #expect(even.median == 2.5)
        #expect(even.deviation == 1)
        #expect(throws: MPQError.self) { try Timing(samples: []) }
    }

    @Test("Warm-up runs are not timed; each repetition is")
    func warmupAndRepetitions() throws {
        var calls = 0
        let timing = try LatencyMeasurement.measure(warmup: 2, repetitions: 5, noise: .singleRound) {
            calls += 1
            Thread.sleep(forTimeInterval: calls <= 2 ? 0.05 : 0.002)
        }
        #expect(calls == 7)
        // Sleeps last at least as long as asked; the 50 ms warm-up runs are not among the samples.
        #expect(timing.minimum >= 2)
        #expect(timing.median < 50)
        #expect(timing.minimum <= timing.median && timing.median <= timing.maximum)
        #expect(throws: MPQError.self) { try LatencyMeasurement.measure(repetitions: 0) {} }
    }

    /// One run per call from `times`, in order.
    static func replay(_ times: [Double]) -> () throws -> Double {
        var next = 0
        return {
            defer { next += 1 }
            return times[next % times.count]
        }
    }

    @Test("Rounds repeat until one is quiet; the quiet round is kept")
    func quietRoundIsKept() throws {
        // Warm-up 1, then a round spread by a neighbour (half the runs doubled), then a quiet round.
        let noisy: [Double] = [5, 1, 2, 1, 2, 1, 2, 1.5]
        let quiet: [Double] = [1.00, 1.01, 0.99, 1.00, 1.02, 1.00, 0.98]
        let timing = try LatencyMeasurement.timing(warmup: 1, repetitions: 7, noise: .init(tolerance: 0.05, maxRounds: 4),
                                                    run: Self.replay(noisy + quiet))
        #expect(timing.rounds == 2)
        #expect(!timing.isNoisy)
        #expect(timing.median == 1 && timing.minimum == 0.98)
        #expect(timing.relativeSpread <= 0.05)
    }

    @Test("A timing still spread after the last round is flagged, with its quietest round")
    func busyMachineIsFlagged() throws {
        // Every round alternates fast and slow runs: the spread never drops below the tolerance.
        let timing = try LatencyMeasurement.timing(warmup: 0, repetitions: 4, noise: .init(tolerance: 0.05, maxRounds: 3),
                                                    run: Self.replay([1, 3, 1, 3, 2, 3, 2, 3, 1, 3, 1, 3]))
        #expect(timing.isNoisy)
        #expect(timing.rounds == 3)
        // Round 2 (2, 3, 2, 3) has the smallest spread (0.5 / 2.5), though above 5%.
        #expect(timing.median == 2.5 && timing.minimum == 2)
        var noise = LatencyNoise(limit: .init(tolerance: 0.05, maxRounds: 3))
        noise.record(timing)
        noise.record(try Timing(samples: [1, 1, 1]))
        #expect(noise.noisy == 1 && noise.timings == 2)
        #expect(noise.warning == "machine too busy: 1 of 2 timings still spread > 5% after 3 rounds; latencies may be off")
        #expect(LatencyNoise(limit: .init()).warning == nil)
        #expect(throws: MPQError.self) {
            try LatencyMeasurement.timing(warmup: 0, repetitions: 3, noise: .init(tolerance: 0.05, maxRounds: 0), run: Self.replay([1]))
        }
    }

    @Test("Parts of one run (blocks) each keep their first quiet round")
    func partsKeepTheirFirstQuietRound() throws {
        // Part 0 is quiet from the start; part 1 is spread in round 1 and quiet in round 2.
        let runs: [[Double]] = [[1, 1], [1, 3], [1, 1], [1, 3], [2, 2], [2, 2], [2, 2], [2, 2]]
        var next = 0
        let timings = try LatencyMeasurement.measureParts(warmup: 0, repetitions: 4, noise: .init(tolerance: 0.05, maxRounds: 3)) {
            defer { next += 1 }
            return runs[next]
        }
        #expect(next == 8, "a second round for part 1 only; no third")
        #expect(timings.map(\.rounds) == [1, 2])
        #expect(timings.map(\.median) == [1, 2])
        #expect(timings.allSatisfy { !$0.isNoisy })
    }

    static func matMul(rows: Int) -> (Graph, [String: Tensor]) {
        var rng = SeededGenerator(seed: 11)
        let graph = Graph(name: "matmul", nodes: [Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                          inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(rows), .fixed(512)])],
                          outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
                          initializers: ["w": Tensor.random([512, 512], using: &rng)], opset: 17)
        return (graph, ["x": Tensor.random([rows, 512], using: &rng)])
    }

    @Test("A timed run reports each step of the fused plan by node name and gives the same outputs")
    func stepTimes() throws {
        let graph = SubgraphPartitionTests.residualChain()
        var rng = SeededGenerator(seed: 5)
        let feeds = ["x": Tensor.random([4, 8], using: &rng)]
        let session = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
        var steps: [(String, Double)] = []
        let timed = try session.run(feeds) { node, milliseconds in steps.append((node, milliseconds)) }
        #expect(try session.run(feeds).mapValues { $0.scalars(as: Float.self) } == timed.mapValues { $0.scalars(as: Float.self) })
        #expect(!steps.isEmpty && steps.allSatisfy { $0.1 >= 0 })
        let names = Set(graph.nodes.map(\.name))
        #expect(steps.allSatisfy { names.contains($0.0) }, "\(steps.map(\.0))")
    }

    @Test("A MatMul with 8x the work measures slower")
    func relativeCost() throws {
        let (small, smallFeeds) = Self.matMul(rows: 64)
        let (large, largeFeeds) = Self.matMul(rows: 512)
        let options = SessionOptions(threads: 1)
        let fast = try LatencyMeasurement.measure(graph: small, feeds: smallFeeds, options: options, repetitions: 9)
        let slow = try LatencyMeasurement.measure(graph: large, feeds: largeFeeds, options: options, repetitions: 9)
        #expect(slow.median > fast.median, "8x work: \(slow.median) ms, 1x: \(fast.median) ms")
    }

    @Test("A block of a partition is timed on its entry values")
    func block() throws {
        let graph = SubgraphPartitionTests.residualChain()
        let partition = try SubgraphPartition(graph: graph, units: [["mm1"], ["mm2"], ["mm3"]], maxUnitsPerBlock: 1)
        var rng = SeededGenerator(seed: 2)
        let feeds = ["x": Tensor.random([4, 8], using: &rng)]
        let entries = try partition.entryValues(of: graph, feeds: feeds, options: SessionOptions(threads: 1))
        for index in partition.blocks.indices {
            let timing = try LatencyMeasurement.measure(block: index, of: partition, graph: graph, inputShapes: ["x": [4, 8]],
                                                        feeds: entries[index], options: SessionOptions(threads: 1),
                                                        warmup: 1, repetitions: 3)
            #expect(timing.median > 0 && timing.minimum <= timing.median)
        }
    }
}
