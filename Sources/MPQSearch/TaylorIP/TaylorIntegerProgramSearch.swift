import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Taylor-IP mixed precision (Markovich-Golan et al. 2025, arXiv 2505.13060;
/// docs/DESIGN.md method 2): loss-MSE sensitivities from one forward and backward
/// pass per sample (`TaylorSensitivity`), measured latency per sub-graph and
/// configuration (`BlockLatency`), and an exact integer program
/// (`MultipleChoiceProgram`, CBC) that picks one configuration per sub-graph.
///
/// The program has one choice set per timing factor of `BlockLatency` (a
/// block's groups together, or one group of a block timed additively) and one
/// per group in no block. An option of a choice set is a configuration of its
/// groups; its gain is, per objective, the time it saves against the block at
/// its first candidates as `BlockLatency` predicts it (`Block.change`: the
/// objective is exactly the reported prediction, up to the constant sum of
/// base times) (latency), or minus its weight bytes or BOPs; its costs
/// are the predicted loss MSE (the sum of its groups' sensitivities) and its
/// weight bytes and BOPs (`CostModel`), budgeted by `Budgets`.
public final class TaylorIntegerProgramSearch: @unchecked Sendable {
    /// Settings of calibration, sensitivity, latency measurement and the solver.
    public struct Options: Sendable {
        /// Samples per batch of the calibration pass and of the measured loss MSE.
        public var batchSize = 16
        /// Samples the latency timings run on (the first calibration samples).
        public var latencyBatchSize = 1
        /// Range estimator for activation quantizers; default MSE.
        public var activationRange: RangeMethod = .mse
        /// Range estimator for weight quantizers; default min-max.
        public var weightRange: RangeMethod = .minMax
        /// Scale granularity of weights; default per channel.
        public var weightGranularity: QuantizationConfig.WeightGranularity = .perChannel
        /// How the graph is partitioned into blocks and how they are timed.
        public var latency = BlockLatency.Options()
        /// Threads for the inference and gradient sessions.
        public var session = SessionOptions()
        /// Cache root (default: `SensitivityCache.defaultRoot`); latency tables go under `latency/`.
        public var cacheRoot: URL?
        /// Seconds CBC may spend on one program (nil: until proven optimal).
        public var solverTimeLimit: Double?
        /// The per-layer techniques' results per candidate weight format (`QuantizationTechniques.refinement`);
        /// a weight site takes the one of its candidate's format in the sensitivities and models. Empty: none.
        public var refinements: [WeightRefinement] = []
        /// Default settings.
        public init() {}
    }

    /// What the program maximises.
    public enum Objective: String, Sendable, CaseIterable {
        /// Measured time saved (sum over blocks).
        case latency
        /// Weight bytes saved.
        case memory
        /// Bit operations saved (MACs x weight bits x activation bits).
        case bops
    }

    /// Upper bounds on the chosen configuration.
    public struct Budgets: Sendable {
        /// Threshold on the predicted loss MSE, Σ over groups of E[ΔL²] (DESIGN.md, Taylor-IP).
        public var maxLossMSE: Double
        /// Largest total weight bytes; nil: unbounded.
        public var memoryBytes: Double?
        /// Largest BOPs (MACs × weight bits × activation bits); nil: unbounded.
        public var bops: Double?

        /// Budgets with a loss MSE threshold and optional memory and BOPs bounds.
        public init(maxLossMSE: Double, memoryBytes: Double? = nil, bops: Double? = nil) {
            self.maxLossMSE = maxLossMSE
            self.memoryBytes = memoryBytes
            self.bops = bops
        }
    }

    /// A solved program.
    public struct Choice: Sendable {
        /// Candidate index per group (into `candidates[group]`).
        public var assignment: [Int]
        /// Predicted loss MSE: sum of the chosen candidates' Taylor sensitivities.
        public var predictedLossMSE: Double
        /// Predicted latency, ms: sum of the blocks' measured times at the choice.
        public var predictedMilliseconds: Double
        /// Weight bytes at the choice.
        public var memoryBytes: Double
        /// BOPs at the choice.
        public var bops: Double
        /// Whether CBC proved the choice optimal or stopped at a limit.
        public var status: MultipleChoiceProgram.Solution.Status
        /// Relative optimality gap CBC reports; 0 when proven optimal.
        public var gap: Double
        /// Solver wall-clock time, seconds.
        public var solveSeconds: Double
    }

    /// One point of a threshold sweep.
    public struct FrontPoint: Sendable {
        /// The loss MSE budget the program was solved with.
        public var threshold: Double
        /// The solved configuration and its predictions.
        public var choice: Choice
        /// Loss MSE of the configuration measured on the calibration data.
        public var measuredLossMSE: Double
        /// End-to-end latency of the deployed configuration, ms.
        public var measuredMilliseconds: Double
    }

    /// Progress of a long phase.
    public typealias Progress = SearchProgress

    /// The FP32 graph searched.
    public let graph: Graph
    /// What the target runs: candidates, allow-lists and shared values.
    public let profile: HardwareProfile
    /// The search settings.
    public let options: Options
    /// Where quantizers sit in `graph`.
    public let placement: QuantizerPlacement
    /// The quantizer groups that each take one candidate.
    public let groups: QuantizerGroups
    /// Allowed candidates per group, most precise first.
    public let candidates: [[Candidate]]
    /// Ranges from the one FP32 calibration pass, for every (site, candidate format).
    public let calibration: CandidateCalibration
    /// First-order Taylor loss sensitivities E[(g_W·ΔW + g_A·ΔA)²] per (group, candidate).
    public let sensitivity: TaylorSensitivity
    /// Sub-graph partition and measured block latencies.
    public let latency: BlockLatency
    private let memoryModel: CostModel
    private let bopsModel: CostModel
    private var lossTable: [[Double]]?
    private var timings: [BlockLatency.Block]?

    /// Groups, candidates, calibration (one FP32 pass) and the partition; checks the loss.
    public init(graph: Graph, data: CalibrationData, profile: HardwareProfile, loss: TaskLoss,
                options: Options = Options(), progress: ((Progress) -> Void)? = nil) throws {
        guard options.batchSize >= 1, options.latencyBatchSize >= 1 else {
            throw MPQError.invalidInput("batch sizes must be at least 1")
        }
        self.graph = graph
        self.profile = profile
        self.options = options
        (placement, groups, candidates) = try profile.searchSpace(for: graph)
        var memoryProfile = profile, bopsProfile = profile
        memoryProfile.cost = .memory
        bopsProfile.cost = .bops
        memoryModel = try CostModel(graph: graph, groups: groups, candidates: candidates, profile: memoryProfile)
        bopsModel = try CostModel(graph: graph, groups: groups, candidates: candidates, profile: bopsProfile)
        calibration = try CandidateCalibration(
            graph: graph, placement: placement, data: data, batchSize: options.batchSize,
            activationRange: options.activationRange, weightRange: options.weightRange,
            weightGranularity: options.weightGranularity, options: options.session, refinements: options.refinements,
            progress: { progress?(Progress(phase: "calibrating", done: $0, total: $1)) })
        sensitivity = try TaylorSensitivity(graph: graph, data: data, calibration: calibration, loss: loss,
                                            options: options.session)
        let timingFeeds = data.inputs.mapValues { $0.rows(0..<min(options.latencyBatchSize, data.count)) }
        latency = try BlockLatency(graph: graph, groups: groups.groups, candidates: candidates, calibration: calibration,
                                   feeds: timingFeeds, options: options.latency,
                                   cacheRoot: options.cacheRoot ?? SensitivityCache.defaultRoot)
    }

    /// Loss MSE per (group, candidate), computed on first use.
    public func lossMSE(progress: ((Progress) -> Void)? = nil) throws -> [[Double]] {
        if let lossTable { return lossTable }
        let table = try sensitivity.lossMSE(groups: groups.groups, candidates: candidates) {
            progress?(Progress(phase: "gradients", done: $0, total: $1))
        }
        lossTable = table
        return table
    }

    /// Block timings, measured (or loaded from the cache) on first use.
    public func blockTimings(progress: ((Progress) -> Void)? = nil) throws -> [BlockLatency.Block] {
        if let timings { return timings }
        let blocks = try latency.measure { progress?(Progress(phase: "timing blocks", done: $0, total: $1)) }
        timings = blocks
        return blocks
    }

    /// Sum of the groups' loss MSE at `assignment`.
    public func predictedLossMSE(_ assignment: [Int]) throws -> Double {
        let table = try lossMSE()
        return zip(table, assignment).reduce(0.0) { $0 + $1.0[$1.1] }
    }

    /// Sum of the blocks' measured latency at `assignment`.
    public func predictedMilliseconds(_ assignment: [Int]) throws -> Double {
        latency.predictedMilliseconds(assignment, blocks: try blockTimings())
    }

    /// Weight bytes of the configuration `assignment` (`CostModel`, memory).
    public func memoryBytes(_ assignment: [Int]) -> Double { memoryModel.cost(assignment) }
    /// BOPs of the configuration `assignment` (`CostModel`, bops).
    public func bops(_ assignment: [Int]) -> Double { bopsModel.cost(assignment) }

    /// Every group at `candidate` where allowed, else at its most precise candidate.
    public func uniformAssignment(_ candidate: Candidate) -> [Int] {
        candidates.map { $0.firstIndex(of: candidate) ?? 0 }
    }

    // MARK: The integer program

    /// A set of groups the program chooses together and the configurations it chooses among.
    struct ChoiceSet {
        var groups: [Int]
        var configurations: [[Int]]
        /// Block time of each configuration minus the block at its first candidates, scaled as the
        /// prediction scales it (`BlockLatency.Block.change`; 0 outside blocks).
        var milliseconds: [Double]
    }

    func choiceSets() throws -> [ChoiceSet] {
        var sets: [ChoiceSet] = []
        for block in try blockTimings() {
            for (f, factor) in block.factors.enumerated() {
                sets.append(ChoiceSet(groups: factor.groups, configurations: factor.configurations,
                                      milliseconds: factor.configurations.indices.map { block.change(factor: f, configuration: $0) }))
            }
        }
        for group in latency.unplacedGroups {
            sets.append(ChoiceSet(groups: [group], configurations: candidates[group].indices.map { [$0] },
                                  milliseconds: [Double](repeating: 0, count: candidates[group].count)))
        }
        return sets
    }

    /// The program for `objective` within `budgets`, and its choice sets.
    func program(objective: Objective, budgets: Budgets) throws -> (MultipleChoiceProgram, [ChoiceSet]) {
        let table = try lossMSE()
        let sets = try choiceSets()
        let base = [Int](repeating: 0, count: groups.groups.count)
        let baseMemory = memoryBytes(base), baseBOPs = bops(base)
        var names = ["predicted loss MSE"]
        var limits = [budgets.maxLossMSE]
        if let memory = budgets.memoryBytes { names.append("memory (bytes)"); limits.append(memory - baseMemory) }
        if let limit = budgets.bops { names.append("BOPs"); limits.append(limit - baseBOPs) }
        let blocks = sets.map { set in
            set.configurations.enumerated().map { index, configuration -> MultipleChoiceProgram.Option in
                var assignment = base
                for (group, candidate) in zip(set.groups, configuration) { assignment[group] = candidate }
                let loss = zip(set.groups, configuration).reduce(0.0) { $0 + table[$1.0][$1.1] }
                let memory = memoryBytes(assignment) - baseMemory, operations = bops(assignment) - baseBOPs
                var costs = [loss]
                if budgets.memoryBytes != nil { costs.append(memory) }
                if budgets.bops != nil { costs.append(operations) }
                let gain: Double
                switch objective {
                case .latency: gain = -set.milliseconds[index]
                case .memory: gain = -memory
                case .bops: gain = -operations
                }
                return MultipleChoiceProgram.Option(gain: gain, costs: costs)
            }
        }
        return (MultipleChoiceProgram(blocks: blocks, budgets: limits, resourceNames: names), sets)
    }

    /// Solves the program exactly (CBC), then among the choices whose gain comes within the
    /// timings' noise of the optimum picks the one with the least predicted loss MSE (a second
    /// solve): for the latency objective, configurations predicted within `latency.resolution` of
    /// the fastest one's time count as equally fast (a busy machine reorders them from run to run;
    /// their losses do not change), for memory and BOPs only exact ties do. Throws
    /// `MPQError.invalidInput` naming the smallest reachable loss MSE (and other budgets) when
    /// nothing meets `budgets`.
    public func solve(objective: Objective, budgets: Budgets) throws -> Choice {
        let (program, sets) = try program(objective: objective, budgets: budgets)
        func assignment(_ choice: [Int]) -> [Int] {
            var assignment = [Int](repeating: 0, count: groups.groups.count)
            for (set, option) in zip(sets, choice) {
                for (group, candidate) in zip(set.groups, set.configurations[option]) { assignment[group] = candidate }
            }
            return assignment
        }
        let best = try program.solve(timeLimit: options.solverTimeLimit)
        let slack = objective == .latency ? options.latency.resolution * (try predictedMilliseconds(assignment(best.choice))) : 0
        let solution = best.status == .optimal ? try leastLoss(program, reaching: best, within: slack) : best
        let assignment = assignment(solution.choice)
        return Choice(assignment: assignment, predictedLossMSE: try predictedLossMSE(assignment),
                      predictedMilliseconds: try predictedMilliseconds(assignment), memoryBytes: memoryBytes(assignment),
                      bops: bops(assignment), status: solution.status, gap: solution.gap,
                      solveSeconds: solution.solveSeconds)
    }

    /// `program` re-solved for the least first resource (the predicted loss MSE) among the choices
    /// whose gain reaches `best`'s less `slack`; the gain and totals reported are `program`'s.
    func leastLoss(_ program: MultipleChoiceProgram, reaching best: MultipleChoiceProgram.Solution,
                   within slack: Double) throws -> MultipleChoiceProgram.Solution {
        let floor = best.objective - max(slack, 1e-9 * max(1, abs(best.objective)))
        let blocks = program.blocks.map { options in
            options.map { MultipleChoiceProgram.Option(gain: -$0.costs[0], costs: $0.costs + [-$0.gain]) }
        }
        let tieBreak = MultipleChoiceProgram(blocks: blocks, budgets: program.budgets + [-floor],
                                             resourceNames: program.resourceNames + ["lost gain"])
        var solution = try tieBreak.solve(timeLimit: options.solverTimeLimit)
        guard solution.status == .optimal else { return best }
        solution.objective = zip(program.blocks, solution.choice).reduce(0) { $0 + $1.0[$1.1].gain }
        solution.totals = program.totals(of: solution.choice)
        solution.solveSeconds += best.solveSeconds
        return solution
    }

    /// The smallest loss MSE any configuration reaches, and the loss MSE of the best
    /// configuration for `objective` without a loss budget (other budgets kept).
    public func reachableLossMSE(objective: Objective, budgets: Budgets) throws -> (smallest: Double, unconstrained: Double) {
        let table = try lossMSE()
        let smallest = try choiceSets().reduce(0.0) { total, set in
            total + (set.configurations.map { zip(set.groups, $0).reduce(0.0) { $0 + table[$1.0][$1.1] } }.min() ?? 0)
        }
        var open = budgets
        open.maxLossMSE = table.reduce(0.0) { $0 + ($1.max() ?? 0) } * 2 + 1
        return (smallest, try solve(objective: objective, budgets: open).predictedLossMSE)
    }

    /// Solves at `count` loss thresholds log-spaced from the smallest positive reachable loss MSE
    /// to that of the unconstrained optimum (one threshold when the optimum is also the least
    /// lossy configuration), and measures each distinct configuration:
    /// loss MSE on the calibration data, latency of the whole deployed model.
    public func sweep(objective: Objective, budgets: Budgets, count: Int = 8,
                      progress: ((Progress) -> Void)? = nil) throws -> [FrontPoint] {
        guard count >= 2 else { throw MPQError.invalidInput("a sweep needs at least 2 thresholds, got \(count)") }
        let table = try lossMSE()
        let (smallest, unconstrained) = try reachableLossMSE(objective: objective, budgets: budgets)
        let positive = table.flatMap { $0 }.filter { $0 > 0 }.min() ?? 0
        let low = max(smallest, positive), high = unconstrained
        // When the best configuration is also the least lossy one (or no loss is positive), the front is that point.
        let thresholds = high <= low || low <= 0 ? [high] : (0..<count).map { i in
            low * pow(high / low, Double(i) / Double(count - 1))
        }
        var points: [FrontPoint] = []
        var measured: [[Int]: (loss: Double, milliseconds: Double)] = [:]
        for (index, threshold) in thresholds.enumerated() {
            var limited = budgets
            limited.maxLossMSE = threshold
            let choice = try solve(objective: objective, budgets: limited)
            if measured[choice.assignment] == nil {
                measured[choice.assignment] = (try measuredLossMSE(choice.assignment),
                                               try measuredMilliseconds(choice.assignment))
            }
            let values = measured[choice.assignment] ?? (0, 0)
            points.append(FrontPoint(threshold: threshold, choice: choice, measuredLossMSE: values.loss,
                                     measuredMilliseconds: values.milliseconds))
            progress?(Progress(phase: "sweep", done: index + 1, total: thresholds.count))
        }
        return points
    }

    // MARK: Configurations

    /// Formats of every site under `assignment`.
    public func formats(_ assignment: [Int]) -> [String: QuantizationFormat] {
        CandidateAssignment(groups: groups, candidates: candidates, choice: assignment).formats
    }

    /// The simulated quantized model of `assignment`.
    public func quantizedModel(_ assignment: [Int]) throws -> QuantizedModel {
        try calibration.quantizedModel(formats(assignment), options: options.session)
    }

    /// The true loss MSE of `assignment` on the calibration data.
    public func measuredLossMSE(_ assignment: [Int]) throws -> Double {
        try sensitivity.measuredLossMSE(quantizedModel(assignment))
    }

    /// Milliseconds of the whole deployed model of `assignment`, timed as the blocks are.
    public func measuredMilliseconds(_ assignment: [Int]) throws -> Double {
        try latency.measuredMilliseconds(assignment)
    }

    /// The configuration in the `mpq quantize --config FILE.json` layout: every site's format
    /// under "tensors", plus the candidate per group.
    public func configJSON(_ assignment: [Int]) throws -> Data {
        try CandidateAssignment(groups: groups, candidates: candidates, choice: assignment).configJSON(
            granularity: options.weightGranularity, weightRange: options.weightRange, activationRange: options.activationRange)
    }
}
