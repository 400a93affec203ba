import Foundation

/// SplitMix64 with Box-Muller normals: the same sequence for the same seed on every platform
/// (random projections, random configurations, reproducible test inputs).
package struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform value in (0, 1).
    package mutating func nextUnit() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }

    package mutating func nextGaussian() -> Double {
        sqrt(-2 * log(nextUnit())) * cos(2 * Double.pi * nextUnit())
    }
}
