import CCBC
import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// The integer program of Taylor-IP (Markovich-Golan et al. 2025, arXiv 2505.13060):
/// choose exactly one option per block (one configuration per sub-graph or
/// quantizer group) to maximise the summed gain (e.g. measured time saved)
/// subject to one budget per resource (predicted loss MSE, memory, BOPs...).
///
/// `solve` hands the program to CBC as a 0/1 program: one binary per
/// (block, option), an equality row per block (exactly one option) and a `<=`
/// row per resource. Every row and the objective are scaled before CBC sees
/// them, because loss-MSE sensitivities span 1e-9...1e-2 while CBC's primal,
/// integrality and gap tolerances are absolute (~1e-7):
/// - each block's costs are shifted by the block's cheapest option (exactly
///   one option is chosen, so the budget shifts by the sum of those minima and
///   every coefficient becomes >= 0 with the cheapest option at 0);
/// - each resource row is then divided by its largest shifted coefficient, so
///   coefficients lie in [0, 1]; rows that cannot bind are dropped;
/// - gains are shifted by each block's best gain and divided by the largest
///   spread, so objective coefficients lie in [-1, 0].
/// CBC runs with primal and integrality tolerances of 1e-9 and no relative
/// gap, and the chosen configuration is re-checked against the budgets in the
/// original units.
public struct MultipleChoiceProgram: Sendable {
    /// One choice for a block: what it gains and what it costs per resource.
    public struct Option: Sendable, Hashable {
        /// What choosing the option adds to the objective (maximised), e.g. milliseconds saved.
        public var gain: Double
        /// Indexed like `budgets`.
        public var costs: [Double]

        /// An option with its gain and one cost per resource.
        public init(gain: Double, costs: [Double]) {
            self.gain = gain
            self.costs = costs
        }
    }

    /// The answer: one option per block.
    public struct Solution: Sendable {
        /// Whether CBC proved the solution optimal or stopped at a limit.
        public enum Status: String, Sendable, Codable {
            /// Proven optimal.
            case optimal
            /// The time or node limit stopped the search; `gap` bounds how far the
            /// objective may be from the optimum.
            case timeLimit = "time limit"
            case nodeLimit = "node limit"
        }

        /// The chosen option index of each block.
        public var choice: [Int]
        /// Summed gain of the chosen options.
        public var objective: Double
        /// Summed cost per resource of the chosen options (indexed like `budgets`).
        public var totals: [Double]
        /// Optimal, or the limit that stopped CBC.
        public var status: Status
        /// Relative optimality gap: |best bound - objective| / max(|objective|, 1e-12); 0 when proven optimal.
        public var gap: Double
        /// CBC wall-clock time, seconds.
        public var solveSeconds: Double
    }

    /// Options of each block (choice set); exactly one per block is chosen.
    public var blocks: [[Option]]
    /// One budget per resource: the chosen options' costs must sum to at most this.
    public var budgets: [Double]
    /// Resource names for messages, e.g. "predicted loss MSE", "memory (bytes)".
    public var resourceNames: [String]

    /// A program over `blocks`; every option's `costs` must be indexed like `budgets` and `resourceNames`.
    public init(blocks: [[Option]], budgets: [Double], resourceNames: [String]) {
        self.blocks = blocks
        self.budgets = budgets
        self.resourceNames = resourceNames
    }

    /// Solves the program exactly with CBC, stopping early after `timeLimit` seconds or
    /// `nodeLimit` branch-and-bound nodes when given (the node limit is deterministic:
    /// the same program stops at the same point on any machine).
    /// Throws `MPQError.invalidInput` when no choice meets every budget, naming
    /// the smallest reachable total of each resource.
    public func solve(timeLimit: Double? = nil, nodeLimit: Int? = nil) throws -> Solution {
        try validate()
        let start = DispatchTime.now().uptimeNanoseconds
        let scaled = try scaledRows()

        let answer = try Self.solverLock.withLock { try runCBC(scaled, timeLimit: timeLimit, nodeLimit: nodeLimit) }
        guard let answer else { throw try infeasibility() }
        let choice = answer.choice
        let objective = zip(blocks, choice).reduce(0) { $0 + $1.0[$1.1].gain }
        let status: Solution.Status = answer.optimal ? .optimal : answer.stoppedAtNodeLimit ? .nodeLimit : .timeLimit
        let bound = scaled.gainOffset + answer.bound * scaled.gainScale
        let gap = answer.optimal ? 0 : abs(bound - objective) / max(abs(objective), 1e-12)
        // CBC meets each scaled row to its primal tolerance, and each binary to its integrality tolerance.
        let totals = self.totals(of: choice)
        let slack = Double(blocks.count + 1) * Self.budgetTolerance
        for (k, total) in totals.enumerated() where total > budgets[k] + slack * scaled.costScales[k] {
            throw MPQError.kernelFailure(
                "CBC returned a configuration with \(resourceNames[k]) \(total) above the budget \(budgets[k])")
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Solution(choice: choice, objective: objective, totals: totals, status: status, gap: gap,
                        solveSeconds: seconds)
    }

    /// Enumerates every combination (for tests and tiny problems; at most
    /// 10 million combinations). Ties keep the first combination found.
    public func bruteForce() throws -> Solution {
        try validate()
        let start = DispatchTime.now().uptimeNanoseconds
        let combinations = blocks.reduce(1.0) { $0 * Double($1.count) }
        guard combinations <= 1e7 else {
            throw MPQError.invalidInput("brute force over \(combinations) combinations is too large (at most 1e7)")
        }
        var current = [Int](repeating: 0, count: blocks.count)
        var best: (choice: [Int], objective: Double)?
        while true {
            let totals = self.totals(of: current)
            if zip(totals, budgets).allSatisfy({ $0 <= $1 }) {
                let objective = zip(blocks, current).reduce(0) { $0 + $1.0[$1.1].gain }
                if objective > best?.objective ?? -.infinity { best = (current, objective) }
            }
            // Next combination, odometer style.
            var block = blocks.count - 1
            while block >= 0 {
                current[block] += 1
                if current[block] < blocks[block].count { break }
                current[block] = 0
                block -= 1
            }
            if block < 0 { break }
        }
        guard let best else { throw try infeasibility() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Solution(choice: best.choice, objective: best.objective, totals: totals(of: best.choice),
                        status: .optimal, gap: 0, solveSeconds: seconds)
    }

    /// Summed cost per resource of a choice.
    public func totals(of choice: [Int]) -> [Double] {
        budgets.indices.map { k in zip(blocks, choice).reduce(0) { $0 + $1.0[$1.1].costs[k] } }
    }

    // MARK: - Solver

    /// CBC's C interface (CbcMain1 underneath) keeps global state: one solve at a time.
    private static let solverLock = NSLock()
    /// CBC's primal and integrality tolerance, in units of a scaled row.
    private static let budgetTolerance = 1e-9

    /// Rows and objective after the scaling described on the type.
    private struct ScaledProgram {
        /// Objective coefficient per (block, option), in [-1, 0].
        var gains: [[Double]]
        var gainOffset: Double
        var gainScale: Double
        /// Resource rows that can bind: coefficients per (block, option) and right-hand side.
        var rows: [(resource: Int, coefficients: [[Double]], bound: Double)]
        /// Per resource, what one unit of its scaled row is in original units.
        var costScales: [Double]
    }

    private func scaledRows() throws -> ScaledProgram {
        let bestGains = blocks.map { $0.map(\.gain).max() ?? 0 }
        let spread = zip(blocks, bestGains).map { options, best in options.map { best - $0.gain }.max() ?? 0 }.max() ?? 0
        let gainScale = spread > 0 ? spread : 1
        let gains = zip(blocks, bestGains).map { options, best in options.map { ($0.gain - best) / gainScale } }

        var rows: [(resource: Int, coefficients: [[Double]], bound: Double)] = []
        var costScales = [Double](repeating: 1, count: budgets.count)
        for k in budgets.indices {
            let minima = blocks.map { $0.map { $0.costs[k] }.min() ?? 0 }
            let slack = budgets[k] - minima.reduce(0, +)
            guard slack >= 0 else { throw try infeasibility() }
            let shifted = zip(blocks, minima).map { options, low in options.map { $0.costs[k] - low } }
            let largest = shifted.map { $0.max() ?? 0 }
            let scale = largest.max() ?? 0
            guard scale > 0 else { continue }
            costScales[k] = scale
            // A row whose worst case fits the budget never binds.
            guard largest.reduce(0, +) > slack else { continue }
            rows.append((k, shifted.map { $0.map { $0 / scale } }, slack / scale))
        }
        return ScaledProgram(gains: gains, gainOffset: bestGains.reduce(0, +), gainScale: gainScale, rows: rows,
                             costScales: costScales)
    }

    /// Runs CBC; nil when it proves the program infeasible.
    private func runCBC(_ program: ScaledProgram, timeLimit: Double?, nodeLimit: Int?) throws
        -> (choice: [Int], optimal: Bool, stoppedAtNodeLimit: Bool, bound: Double)? {
        guard let model = Cbc_newModel() else { throw MPQError.kernelFailure("CBC could not create a model") }
        defer { Cbc_deleteModel(model) }
        var firstColumn: [Int] = []
        var column = 0
        for (b, options) in program.gains.enumerated() {
            firstColumn.append(column)
            for (o, gain) in options.enumerated() {
                Cbc_addCol(model, "x_\(b)_\(o)", 0, 1, gain, 1, 0, nil, nil)
                column += 1
            }
        }
        for (b, options) in blocks.enumerated() {
            let columns = (0..<options.count).map { Int32(firstColumn[b] + $0) }
            let ones = [Double](repeating: 1, count: options.count)
            Cbc_addRow(model, "one_\(b)", Int32(columns.count), columns, ones, CChar(UInt8(ascii: "E")), 1)
        }
        for row in program.rows {
            var columns: [Int32] = []
            var values: [Double] = []
            for (b, coefficients) in row.coefficients.enumerated() {
                for (o, value) in coefficients.enumerated() where value != 0 {
                    columns.append(Int32(firstColumn[b] + o))
                    values.append(value)
                }
            }
            Cbc_addRow(model, "budget_\(row.resource)", Int32(columns.count), columns, values,
                       CChar(UInt8(ascii: "L")), row.bound)
        }
        Cbc_setObjSense(model, -1)
        Cbc_setParameter(model, "log", "0")
        Cbc_setParameter(model, "allowableGap", "1e-9")
        Cbc_setParameter(model, "ratioGap", "0")
        Cbc_setParameter(model, "primalTolerance", "\(Self.budgetTolerance)")
        Cbc_setParameter(model, "integerTolerance", "\(Self.budgetTolerance)")
        if let timeLimit { Cbc_setMaximumSeconds(model, max(timeLimit, 0.01)) }
        if let nodeLimit { Cbc_setMaximumNodes(model, Int32(clamping: max(nodeLimit, 0))) }
        Cbc_solve(model)

        if Cbc_isProvenInfeasible(model) != 0 { return nil }
        if Cbc_isAbandoned(model) != 0 {
            throw MPQError.kernelFailure("CBC abandoned the integer program (numerical difficulties)")
        }
        guard let solution = Cbc_bestSolution(model) else {
            if Cbc_isSecondsLimitReached(model) != 0 {
                throw MPQError.invalidInput("CBC found no configuration within the time limit of \(timeLimit ?? 0) s")
            }
            if Cbc_isNodeLimitReached(model) != 0 {
                throw MPQError.invalidInput("CBC found no configuration within the node limit of \(nodeLimit ?? 0)")
            }
            return nil
        }
        let choice = blocks.indices.map { b in
            (0..<blocks[b].count).max { solution[firstColumn[b] + $0] < solution[firstColumn[b] + $1] } ?? 0
        }
        return (choice, Cbc_isProvenOptimal(model) != 0, Cbc_isNodeLimitReached(model) != 0,
                Cbc_getBestPossibleObjValue(model))
    }

    // MARK: - Input checks and messages

    private func validate() throws {
        guard budgets.count == resourceNames.count else {
            throw MPQError.invalidInput("\(budgets.count) budgets but \(resourceNames.count) resource names")
        }
        guard !blocks.isEmpty else { throw MPQError.invalidInput("the integer program has no blocks") }
        for (k, budget) in budgets.enumerated() where !budget.isFinite {
            throw MPQError.invalidInput("the budget for \(resourceNames[k]) is \(budget); it must be finite")
        }
        for (b, options) in blocks.enumerated() {
            guard !options.isEmpty else { throw MPQError.invalidInput("block \(b) has no options") }
            for (o, option) in options.enumerated() {
                guard option.costs.count == budgets.count else {
                    throw MPQError.invalidInput(
                        "block \(b) option \(o) has \(option.costs.count) costs; there are \(budgets.count) resources")
                }
                guard option.gain.isFinite, option.costs.allSatisfy(\.isFinite) else {
                    throw MPQError.invalidInput("block \(b) option \(o) has a gain or cost that is not finite")
                }
            }
        }
    }

    /// The error for a program no choice satisfies: for each budget, the
    /// smallest total reachable alone (each block at its cheapest option for
    /// that resource) and, when every budget is reachable alone, the smallest
    /// total reachable within all the other budgets.
    private func infeasibility() throws -> MPQError {
        let smallest = budgets.indices.map { k in blocks.reduce(0) { $0 + ($1.map { $0.costs[k] }.min() ?? 0) } }
        let unreachable = budgets.indices.filter { smallest[$0] > budgets[$0] }
        if !unreachable.isEmpty {
            let parts = unreachable.map { k in
                "\(resourceNames[k]) <= \(format(budgets[k])): the smallest reachable is \(format(smallest[k])) (every block at its option of least \(resourceNames[k]))"
            }
            return .invalidInput("no configuration meets " + parts.joined(separator: "; nor "))
        }
        var parts: [String] = []
        for k in budgets.indices {
            // Minimise resource k within the other budgets.
            let others = budgets.indices.filter { $0 != k }
            let program = MultipleChoiceProgram(
                blocks: blocks.map { options in
                    options.map { option in Option(gain: -option.costs[k], costs: others.map { option.costs[$0] }) }
                },
                budgets: others.map { budgets[$0] }, resourceNames: others.map { resourceNames[$0] })
            let within = others.map { "\(resourceNames[$0]) <= \(format(budgets[$0]))" }.joined(separator: ", ")
            if let best = try? program.solve() {
                parts.append("the smallest \(resourceNames[k]) reachable within \(within) is \(format(-best.objective))")
            } else {
                parts.append("\(within) cannot be met together even without the \(resourceNames[k]) budget")
            }
        }
        let all = budgets.indices.map { "\(resourceNames[$0]) <= \(format(budgets[$0]))" }.joined(separator: ", ")
        return .invalidInput("no configuration meets \(all) at once (each is reachable alone): " + parts.joined(separator: "; "))
    }

    private func format(_ value: Double) -> String { String(format: "%.4g", value) }
}
