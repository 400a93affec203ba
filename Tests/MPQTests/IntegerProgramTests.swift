import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite("Integer program")
struct IntegerProgramTests {
    /// A random program shaped like Taylor-IP's: resource 0 is a loss MSE
    /// spanning 1e-9...1e-2, the others (memory, BOPs) are O(1e3...1e6); gain
    /// grows as precision (and loss) falls. Budgets lie between the smallest
    /// and largest reachable totals.
    static func randomProgram(blocks: Int, options: Int, resources: Int, tightness: Double,
                              using rng: inout SeededGenerator) -> MultipleChoiceProgram {
        let names = ["predicted loss MSE", "memory", "BOPs"]
        let table: [[MultipleChoiceProgram.Option]] = (0..<blocks).map { _ in
            (0..<options).map { _ in
                let loss = pow(10, Double.random(in: -9 ... -2, using: &rng))
                var costs = [loss]
                for k in 1..<resources {
                    costs.append(Double.random(in: 1e3...1e6, using: &rng) * (k == 1 ? 1 : 7))
                }
                let gain = Double.random(in: 0...2, using: &rng) + (log10(loss) + 9) / 3
                return MultipleChoiceProgram.Option(gain: gain, costs: costs)
            }
        }
        let budgets = (0..<resources).map { k in
            let low = table.reduce(0) { $0 + $1.map { $0.costs[k] }.min()! }
            let high = table.reduce(0) { $0 + $1.map { $0.costs[k] }.max()! }
            return low + (high - low) * tightness
        }
        return MultipleChoiceProgram(blocks: table, budgets: budgets, resourceNames: Array(names.prefix(resources)))
    }

    @Test("CBC's answer equals brute force on random small programs")
    func matchesBruteForce() throws {
        var solved = 0
        var infeasible = 0
        for seed in 0..<150 {
            var rng = SeededGenerator(seed: UInt64(seed))
            let resources = 1 + seed % 3
            let options = 2 + seed % 4
            let program = Self.randomProgram(blocks: 6, options: options, resources: resources,
                                             tightness: [0.02, 0.1, 0.3, 0.6][seed % 4], using: &rng)
            let exact: MultipleChoiceProgram.Solution
            do {
                exact = try program.bruteForce()
            } catch MPQError.invalidInput {
                #expect(throws: MPQError.self, "seed \(seed): CBC must find no configuration either") {
                    try program.solve()
                }
                infeasible += 1
                continue
            }
            let solution = try program.solve()
            #expect(solution.status == .optimal, "seed \(seed)")
            #expect(abs(solution.objective - exact.objective) <= 1e-9 * max(1, abs(exact.objective)),
                    "seed \(seed): CBC \(solution.objective), brute force \(exact.objective)")
            #expect(solution.choice.count == 6)
            for (k, total) in solution.totals.enumerated() {
                #expect(total <= program.budgets[k], "seed \(seed): resource \(k) \(total) > \(program.budgets[k])")
            }
            #expect(solution.totals == program.totals(of: solution.choice))
            solved += 1
        }
        #expect(solved > 100)
        #expect(infeasible > 0)
    }

    @Test("Programs without budgets take each block's best gain")
    func unconstrained() throws {
        let program = MultipleChoiceProgram(
            blocks: [[.init(gain: 1, costs: []), .init(gain: 3, costs: [])],
                     [.init(gain: -2, costs: []), .init(gain: -5, costs: []), .init(gain: -1, costs: [])]],
            budgets: [], resourceNames: [])
        let solution = try program.solve()
        #expect(solution.choice == [1, 2])
        #expect(solution.objective == 2)
    }

    @Test("A loss budget below every configuration names the smallest reachable loss")
    func infeasibleLossBudget() throws {
        let program = MultipleChoiceProgram(
            blocks: (0..<4).map { _ in
                [.init(gain: 0, costs: [0.8e-5]), .init(gain: 1, costs: [1e-4]), .init(gain: 2, costs: [1e-3])]
            },
            budgets: [1e-6], resourceNames: ["predicted loss MSE"])
        for attempt in [{ try program.solve() }, { try program.bruteForce() }] {
            do {
                _ = try attempt()
                Issue.record("an infeasible program was solved")
            } catch let error as MPQError {
                let message = error.description
                #expect(message.contains("no configuration meets predicted loss MSE <= 1e-06"), "\(message)")
                #expect(message.contains("the smallest reachable is 3.2e-05"), "\(message)")
            }
        }
    }

    @Test("Budgets reachable alone but not together are explained")
    func jointlyInfeasible() throws {
        // Each block: precise and large, or coarse and small.
        let program = MultipleChoiceProgram(
            blocks: (0..<3).map { _ in [.init(gain: 0, costs: [1, 10]), .init(gain: 1, costs: [10, 1])] },
            budgets: [5, 5], resourceNames: ["predicted loss MSE", "memory"])
        #expect(throws: MPQError.self) { try program.bruteForce() }
        do {
            _ = try program.solve()
            Issue.record("an infeasible program was solved")
        } catch let error as MPQError {
            let message = error.description
            #expect(message.contains("each is reachable alone"), "\(message)")
            #expect(message.contains("the smallest predicted loss MSE reachable within memory <= 5 is 30"), "\(message)")
            #expect(message.contains("the smallest memory reachable within predicted loss MSE <= 5 is 30"), "\(message)")
        }
    }

    @Test("Malformed programs are rejected")
    func malformed() {
        let option = MultipleChoiceProgram.Option(gain: 1, costs: [1])
        #expect(throws: MPQError.self) {
            try MultipleChoiceProgram(blocks: [[option]], budgets: [1, 2], resourceNames: ["a", "b"]).solve()
        }
        #expect(throws: MPQError.self) {
            try MultipleChoiceProgram(blocks: [[option], []], budgets: [1], resourceNames: ["a"]).solve()
        }
        #expect(throws: MPQError.self) {
            try MultipleChoiceProgram(blocks: [[.init(gain: .nan, costs: [1])]], budgets: [1], resourceNames: ["a"]).solve()
        }
        #expect(throws: MPQError.self) {
            try MultipleChoiceProgram(blocks: [[option]], budgets: [1], resourceNames: []).solve()
        }
    }

    @Test("A node limit returns the best configuration found with its gap")
    func nodeLimit() throws {
        // 400 blocks x 10 options with three uncorrelated budgets: far from provable in 20 nodes.
        // A node limit, unlike a time limit, stops at the same point on a busy machine.
        var rng = SeededGenerator(seed: 1)
        let blocks: [[MultipleChoiceProgram.Option]] = (0..<400).map { _ in
            (0..<10).map { _ in .init(gain: Double.random(in: 0...1, using: &rng),
                                      costs: (0..<3).map { _ in Double.random(in: 0...1, using: &rng) }) }
        }
        let program = MultipleChoiceProgram(blocks: blocks, budgets: [120, 120, 120], resourceNames: ["a", "b", "c"])
        let solution = try program.solve(nodeLimit: 20)
        #expect(solution.status == .nodeLimit)
        #expect(solution.gap > 0 && solution.gap < 0.5, "gap \(solution.gap)")
        for total in solution.totals { #expect(total <= 120) }
        #expect(solution.objective == zip(blocks, solution.choice).reduce(0) { $0 + $1.0[$1.1].gain })
    }

    @Test("A MobileNetV2-sized program (60 blocks x 8 options, 3 resources) solves to optimality")
    func mobileNetSized() throws {
        var rng = SeededGenerator(seed: 2025)
        let program = Self.randomProgram(blocks: 60, options: 8, resources: 3, tightness: 0.15, using: &rng)
        let solution = try program.solve()
        #expect(solution.status == .optimal)
        #expect(solution.gap == 0)
        for (k, total) in solution.totals.enumerated() { #expect(total <= program.budgets[k]) }
        // Every block at its individually best option is over the loss budget, so the budget binds.
        let greedy = program.blocks.map { options in options.indices.max { options[$0].gain < options[$1].gain }! }
        #expect(program.totals(of: greedy)[0] > program.budgets[0])
        #expect(solution.objective < program.blocks.reduce(0) { $0 + $1.map(\.gain).max()! })
    }
}
