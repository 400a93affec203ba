import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// A random type per group at just under a size budget: the control a search must beat at equal
/// size (a search that cannot beat it has learnt nothing from its sensitivities).
public enum GGUFRandomAllocation {
    /// Every group takes a uniformly drawn candidate; while the mix misses `target`, a drawn group
    /// (among those above their smallest candidate) moves one candidate down; then, while some
    /// group's next candidate still fits, a drawn such group moves one up. The result is within one
    /// step of the budget. The same seed gives the same mix.
    public static func choice(space: GGUFSearchSpace, target: GGUFSearchTarget, seed: UInt64) throws -> [Int] {
        if case .maxKLD = target { throw MPQError.invalidInput("a random allocation needs a size or bits-per-weight target") }
        try target.check(in: space)
        var generator = SplitMix64(seed: seed)
        func draw(_ count: Int) -> Int { Int(generator.next() % UInt64(count)) }
        var choice = space.groups.map { draw($0.candidates.count) }
        while !target.fits(choice, in: space) {
            let lowerable = space.groups.indices.filter { choice[$0] > 0 }
            choice[lowerable[draw(lowerable.count)]] -= 1
        }
        while true {
            let raisable = space.groups.indices.filter { g in
                guard choice[g] + 1 < space.groups[g].candidates.count else { return false }
                var next = choice
                next[g] += 1
                return target.fits(next, in: space)
            }
            guard !raisable.isEmpty else { return choice }
            choice[raisable[draw(raisable.count)]] += 1
        }
    }
}
