import Foundation
import MPQGGUF

/// A random type per group at just under a size budget: the control a search must beat at equal
/// size (a search that cannot beat it has learnt nothing from its sensitivities).
public enum GGUFRandomAllocation {
    /// From every group at its smallest candidate, repeatedly moves a uniformly drawn group one
    /// candidate up, among the groups whose next candidate still fits `target`, until none fits:
    /// the result is within one step of the budget. The same seed gives the same mix.
    public static func choice(space: GGUFSearchSpace, target: GGUFSearchTarget, seed: UInt64) throws -> [Int] {
        if case .maxKLD = target { throw MPQError.invalidInput("a random allocation needs a size or bits-per-weight target") }
        try target.check(in: space)
        var generator = SplitMix64(seed: seed)
        var choice = space.smallest
        while true {
            let movable = space.groups.indices.filter { g in
                guard choice[g] + 1 < space.groups[g].candidates.count else { return false }
                var next = choice
                next[g] += 1
                return target.fits(next, in: space)
            }
            guard !movable.isEmpty else { return choice }
            choice[movable[Int(generator.next() % UInt64(movable.count))]] += 1
        }
    }
}
