import ArgumentParser
import Foundation
import MPQ

/// The options of the Taylor-IP search.
struct TaylorArguments: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: largest predicted loss MSE of the chosen configuration.", valueName: "T"))
    var maxLossMse: Double?

    @Option(help: ArgumentHelp("taylor-ip: what to maximise the saving of (default latency).", valueName: "KIND"))
    var objective: TaylorIntegerProgramSearch.Objective?

    @Option(help: ArgumentHelp("taylor-ip: a further budget, memory=BYTES or bops=R (repeatable).", valueName: "KIND=VALUE"))
    var budget: [String] = []

    @Option(help: ArgumentHelp("taylor-ip: task loss (default by model: labels given: labels; classifier: pseudo-label; language model: next-token; else random-projection).", valueName: "LOSS"))
    var loss: TaylorSearchWorkflow.Loss?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: heads of the random-projection loss (default 8).", valueName: "K"))
    var projections: Int?

    @Flag(help: "taylor-ip: solve at log-spaced loss thresholds and write front.csv and front.svg.")
    var sweep = false

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: thresholds of --sweep (default 8).", valueName: "N"))
    var sweepPoints: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: samples the latency timings run on (default 1).", valueName: "N"))
    var latencyBatch: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: quantizer groups a timed sub-graph may join (default 4).", valueName: "N"))
    var unitsPerBlock: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: configurations timed per sub-graph; beyond it a sub-graph is timed one group at a time and taken as additive (default 64).", valueName: "N"))
    var maxBlockConfigurations: Int?

    @Option(help: ArgumentHelp("taylor-ip: what a timing keeps of its repeated runs (default minimum; median).", valueName: "STAT"))
    var latencyStatistic: BlockLatency.Statistic?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: largest relative spread (MAD / median) of a kept round of timed runs (default 0.05).", valueName: "F"))
    var latencyTolerance: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: rounds of timed runs before a timing still spread wider is flagged and the machine reported too busy (default 4).", valueName: "N"))
    var latencyRounds: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: relative step of the grid block timings are rounded to, so that differences within the noise do not decide (default 0.02; 0: none).", valueName: "F"))
    var latencyResolution: Double?

    @Option(name: .customLong("validate"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: also measure N random configurations (predicted vs measured) and compare with uniform int8; writes validation.csv.", valueName: "N"))
    var validateCount: Int?

    /// The options given on the command line (to reject them under pareto).
    var given: [String] {
        [("--max-loss-mse", maxLossMse != nil), ("--objective", objective != nil), ("--budget", !budget.isEmpty), ("--loss", loss != nil),
         ("--projections", projections != nil), ("--sweep", sweep), ("--sweep-points", sweepPoints != nil),
         ("--latency-batch", latencyBatch != nil), ("--units-per-block", unitsPerBlock != nil),
         ("--max-block-configurations", maxBlockConfigurations != nil), ("--latency-statistic", latencyStatistic != nil),
         ("--latency-tolerance", latencyTolerance != nil), ("--latency-rounds", latencyRounds != nil),
         ("--latency-resolution", latencyResolution != nil),
         ("--validate", validateCount != nil)].filter(\.1).map(\.0)
    }

    func validate() throws {
        try Check.range(maxLossMse, "--max-loss-mse", 0...Double.greatestFiniteMagnitude)
        try Check.range(projections, "--projections", 1...4096)
        try Check.range(sweepPoints, "--sweep-points", 2...1000)
        try Check.range(latencyBatch, "--latency-batch", 1...65_536)
        try Check.range(unitsPerBlock, "--units-per-block", 1...64)
        try Check.range(maxBlockConfigurations, "--max-block-configurations", 1...1_000_000)
        try Check.range(validateCount, "--validate", 1...100_000)
        try Check.range(latencyTolerance, "--latency-tolerance", 0...10)
        try Check.range(latencyRounds, "--latency-rounds", 1...100)
        try Check.range(latencyResolution, "--latency-resolution", 0...1)
        if sweepPoints != nil && !sweep { throw ValidationError("--sweep-points needs --sweep") }
        _ = try budgets()
    }

    /// `--budget` as (memory bytes, BOPs).
    func budgets() throws -> (memory: Double?, bops: Double?) {
        var result: (memory: Double?, bops: Double?) = (nil, nil)
        for entry in budget {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["memory", "bops"].contains(parts[0]) else {
                throw ValidationError("--budget \(entry): write memory=BYTES or bops=NUMBER (budgets: memory, bops)")
            }
            guard let value = Double(parts[1]), value.isFinite, value >= 0 else {
                throw ValidationError("--budget \(entry): the value must be a finite number >= 0")
            }
            if parts[0] == "memory" { result.memory = value } else { result.bops = value }
        }
        return result
    }

    /// Runs the search with the shared options and prints what it found.
    func run(_ common: SearchArguments) throws {
        var options = TaylorSearchWorkflow.Options(model: common.model, calibrationData: common.calib)
        try common.fill(&options.shared)
        options.maxLossMSE = maxLossMse
        options.objective = objective ?? .latency
        (options.memoryBudget, options.bopsBudget) = try budgets()
        options.loss = loss
        options.projections = projections ?? 8
        options.sweep = sweep
        options.sweepPoints = sweepPoints ?? 8
        options.latencyBatch = latencyBatch ?? 1
        options.unitsPerBlock = unitsPerBlock ?? 4
        options.maxBlockConfigurations = maxBlockConfigurations ?? 64
        options.latencyStatistic = latencyStatistic ?? .minimum
        options.latencyTolerance = latencyTolerance ?? 0.05
        options.latencyRounds = latencyRounds ?? 4
        options.latencyResolution = latencyResolution ?? 0.02
        options.validateCount = validateCount
        print(try TaylorSearchWorkflow(options).run(progress: TerminalProgress()).summary)
    }
}
