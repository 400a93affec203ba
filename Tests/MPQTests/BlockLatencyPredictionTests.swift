import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQQuantization
@testable import MPQRuntime
@testable import MPQSearch

/// The block time model on synthetic timings: predictions never negative, the integer program's
/// changes adding up to the reported prediction, and timings rounded to a grid above the noise.
@Suite("Block latency prediction")
struct BlockLatencyPredictionTests {
    /// A block of three groups timed one group at a time: each group's int8 candidate (index 1)
    /// alone saves most of the base time, as on a busy machine whose base run was slow.
    static func additiveBlock(fastest: Double) -> BlockLatency.Block {
        let factors = [(0, 2.0), (1, 3.0), (2, 4.0)].map { group, int8 in
            BlockLatency.Factor(groups: [group], configurations: [[0], [1]], milliseconds: [10, int8])
        }
        return BlockLatency.Block(nodes: ["a", "b", "c"], groups: [0, 1, 2], floatMilliseconds: 10, baseMilliseconds: 10,
                                  factors: factors, fastestMilliseconds: fastest)
    }

    static let assignments: [[Int]] = (0..<8).map { bits in (0..<3).map { (bits >> $0) & 1 } }

    @Test("Savings that once summed to -11 ms are scaled to the measured all-fastest time")
    func neverNegative() {
        let block = Self.additiveBlock(fastest: 4)
        // The unscaled additive sum: 10 + (2 - 10) + (3 - 10) + (4 - 10) = -11 ms.
        let unscaled = block.factors.reduce(block.baseMilliseconds) { $0 + $1.milliseconds[1] - block.baseMilliseconds }
        #expect(unscaled < 0)
        #expect(abs(block.changeScale - 6.0 / 21) < 1e-12)
        #expect(abs(block.milliseconds([1, 1, 1]) - 4) < 1e-12, "the all-fastest configuration predicts what it measured")
        #expect(block.milliseconds([0, 0, 0]) == 10)
        for assignment in Self.assignments {
            let predicted = block.milliseconds(assignment)
            #expect(predicted >= 4 - 1e-12 && predicted <= 10, "\(assignment): \(predicted) ms")
        }
    }

    @Test("An all-fastest time above the base (noise) leaves every configuration at the base time")
    func noisyFastestRun() {
        let block = Self.additiveBlock(fastest: 12)
        #expect(block.changeScale == 0)
        for assignment in Self.assignments { #expect(block.milliseconds(assignment) == 10) }
    }

    @Test("Exhaustive blocks predict their measured configurations unscaled")
    func exhaustive() {
        let factor = BlockLatency.Factor(groups: [0, 1], configurations: [[0, 0], [0, 1], [1, 0], [1, 1]],
                                         milliseconds: [10, 7, 6, 2])
        let block = BlockLatency.Block(nodes: ["a"], groups: [0, 1], floatMilliseconds: 11, baseMilliseconds: 10,
                                       factors: [factor])
        #expect(block.isExhaustive && block.changeScale == 1)
        #expect(block.milliseconds([1, 1]) == 2 && block.milliseconds([0, 1]) == 7)
    }

    @Test("The integer program's changes add up to the reported prediction")
    func objectiveMatchesPrediction() {
        for block in [Self.additiveBlock(fastest: 4), Self.additiveBlock(fastest: 12)] {
            for assignment in Self.assignments {
                let changes = block.factors.indices.reduce(0.0) { total, f in
                    total + block.change(factor: f, configuration: BlockLatency.configurationIndex(block.factors[f], assignment))
                }
                #expect(abs(block.baseMilliseconds + changes - block.milliseconds(assignment)) < 1e-12)
            }
        }
    }

    @Test("Timings are rounded to a relative grid: within half a step, monotone, equal below the resolution")
    func rounding() {
        let resolution = 0.02
        var previous = 0.0
        for value in stride(from: 0.01, through: 50, by: 0.037) {
            let rounded = BlockLatency.rounded(value, resolution: resolution)
            #expect(abs(rounded - value) / value <= resolution / 2 + 1e-12)
            #expect(rounded >= previous)
            previous = rounded
        }
        let grid = BlockLatency.rounded(3, resolution: resolution)
        #expect(BlockLatency.rounded(grid * 1.004, resolution: resolution) == grid)
        #expect(BlockLatency.rounded(grid * 0.996, resolution: resolution) == grid)
        #expect(BlockLatency.rounded(1.234, resolution: 0) == 1.234)
    }
}
