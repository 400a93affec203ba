import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// `mpq search taylor-ip` as a library call: Taylor-IP (Markovich-Golan et al. 2025) — loss-MSE
/// sensitivities, measured block latencies and an integer program — with its outputs: sensitivity.csv,
/// latency.csv, optionally front.csv / front.svg (sweep) and validation.csv, and with a loss threshold
/// config.json, predicted.csv, model.qdq.onnx, encodings.json, report.json; written all-or-nothing.
public struct TaylorSearchWorkflow: Sendable {
    /// The task loss whose change the sensitivities predict.
    public enum Loss: String, Sendable, CaseIterable {
        /// Cross-entropy against the FP32 model's own argmax (classifiers).
        case pseudoLabel = "pseudo-label"
        /// Cross-entropy against `labels`.
        case labels
        /// Next-token cross-entropy (language models with `input_ids`).
        case nextToken = "next-token"
        /// Squared random projections of the output (any model).
        case randomProjection = "random-projection"
    }

    /// What to search, with which task loss, and which budgets the integer program keeps to.
    public struct Options: SearchWorkflowOptions, Sendable {
        /// What every search takes; its fields read and write as this struct's own (`options.batchSize`).
        public var shared: SearchOptions
        /// Largest predicted loss MSE of the chosen configuration; nil: no configuration is chosen.
        public var maxLossMSE: Double?
        /// What the integer program maximises the saving of: measured latency (default), weight memory or BOPs.
        public var objective: TaylorIntegerProgramSearch.Objective = .latency
        /// Further budgets: bytes of memory, bit operations.
        public var memoryBudget: Double?
        /// Largest bit operations (MACs x weight bits x activation bits) of the chosen configuration; nil: unbounded.
        public var bopsBudget: Double?
        /// nil: by the model (labels given: labels; classifier: pseudo-label; language model: next-token; else random-projection).
        public var loss: Loss?
        /// Heads of the random-projection loss (squared random projections of the output); default 8.
        public var projections = 8
        /// Solve at `sweepPoints` log-spaced thresholds and measure each (front.csv, front.svg).
        public var sweep = false
        /// Log-spaced loss thresholds of the sweep, at least 2; default 8.
        public var sweepPoints = 8
        /// Samples the block latency timings run on; default 1.
        public var latencyBatch = 1
        /// Most quantizer groups per timed sub-graph (block) of the partition; default 4.
        public var unitsPerBlock = 4
        /// Configurations timed exhaustively per block; beyond it a block is timed one group at a time and
        /// its time taken as additive over its groups. Default 64.
        public var maxBlockConfigurations = 64
        /// What a timing keeps of its repeated runs: the minimum (default: noise only adds time) or the median.
        public var latencyStatistic: BlockLatency.Statistic = .minimum
        /// Largest relative spread (median absolute deviation / median) of a kept round of timed runs; default 0.05.
        public var latencyTolerance = 0.05
        /// Rounds of timed runs before a still-spread timing is flagged noisy ("machine too busy"); default 4.
        public var latencyRounds = 4
        /// Relative step of the grid block timings are rounded to (0: none), and the fraction of the fastest
        /// predicted time within which configurations count as equally fast (the least lossy is chosen); default 0.02.
        public var latencyResolution = 0.02
        /// Measure this many random configurations (validation.csv) and compare with uniform int8.
        public var validateCount: Int?

        /// Options for searching `model` calibrated on `calibrationData`; the rest at defaults (no threshold yet).
        public init(model: String, calibrationData: String) {
            shared = SearchOptions(model: model, calibrationData: calibrationData)
        }
    }

    /// What a run produced.
    public struct Result: @unchecked Sendable {
        /// Loss MSE E[dL^2] per group and candidate, from the first-order Taylor term dL ~ g_W . dW + g_A . dA
        /// (Markovich-Golan et al. 2025; DESIGN.md), as in sensitivity.csv.
        public var sensitivities: [[Double]]
        /// The integer program's solution at `maxLossMSE`; nil without a threshold.
        public var choice: TaylorIntegerProgramSearch.Choice?
        /// The sweep's points: threshold, solution, measured loss MSE and time; nil without `sweep`.
        public var front: [TaylorIntegerProgramSearch.FrontPoint]?
        /// Predicted against measured over random configurations (validation.csv); nil without `validateCount`.
        public var validation: TaylorValidation?
        /// The chosen configuration's quantized model; nil without a threshold.
        public var model: QuantizedModel?
        /// The chosen model's figures on the held-out (else calibration) data; nil without a threshold.
        public var report: QuantizationReport?
        /// The chosen configuration's measured loss MSE on the calibration and held-out data.
        public var measuredLossMSE: Double?
        /// The chosen configuration's measured loss MSE on the held-out data; nil without held-out data.
        public var heldOutLossMSE: Double?
        /// Whether the held-out loss MSE stays within `maxLossMSE`; nil without held-out data.
        public var targetHeldOnHeldOut: Bool?
        /// Timings taken and how many stayed noisy (also report.json's `latency_noise`).
        public var latencyNoise: LatencyNoise?
        /// The output files (sensitivity.csv, latency.csv, ... and with a threshold the exported model), written to `output` when set.
        public var files: OutputFiles
        /// What `mpq search taylor-ip` prints.
        public var summary: String
    }

    /// The run's options.
    public var options: Options

    /// A search with `options`; nothing is loaded or run until `run(progress:)`.
    public init(_ options: Options) { self.options = options }

    /// Checks the options before any work: something to do (a threshold, a sweep or a validation), finite
    /// non-negative threshold and budgets, at least one projection, at least 2 sweep points, and labels where
    /// the loss needs them (not with held-out data); throws `MPQError.invalidInput`.
    public func validate() throws {
        try options.shared.check()
        guard options.maxLossMSE != nil || options.sweep || options.validateCount != nil else {
            throw MPQError.invalidInput("a Taylor-IP search needs a loss threshold (--max-loss-mse T), a sweep (--sweep) or a validation (--validate N)")
        }
        if let threshold = options.maxLossMSE, !(threshold >= 0 && threshold.isFinite) {
            throw MPQError.invalidInput("loss threshold \(threshold) must be a finite number >= 0")
        }
        for (name, value) in [("memory", options.memoryBudget), ("bops", options.bopsBudget)] {
            if let value, !(value >= 0 && value.isFinite) { throw MPQError.invalidInput("\(name) budget \(value) must be a finite number >= 0") }
        }
        guard options.latencyTolerance >= 0 && options.latencyTolerance.isFinite, options.latencyRounds >= 1,
              options.latencyResolution >= 0 && options.latencyResolution.isFinite else {
            throw MPQError.invalidInput("latency tolerance \(options.latencyTolerance) and resolution \(options.latencyResolution) must be finite numbers >= 0 and rounds \(options.latencyRounds) at least 1")
        }
        guard options.projections >= 1 else { throw MPQError.invalidInput("projections \(options.projections) must be >= 1") }
        if options.sweep && options.sweepPoints < 2 { throw MPQError.invalidInput("a sweep needs at least 2 thresholds, got \(options.sweepPoints)") }
        if options.loss == .labels && options.labels == nil { throw MPQError.invalidInput("--loss labels needs --labels FILE.npy") }
        if options.evaluationData != nil && (options.loss == .labels || (options.loss == nil && options.labels != nil)) {
            throw MPQError.invalidInput("the labels loss with held-out data (--eval) is not supported: labels are per calibration sample")
        }
    }

    /// The loss of `options.loss`, or the default for the model's output: logits [N, C] -> pseudo-labels;
    /// [N, T, V] with int64 `input_ids` and V >= 1000 -> next-token; else random projections.
    func taskLoss(graph: Graph, data: CalibrationData) throws -> TaskLoss {
        let output = graph.outputs.first
        let rank = output?.shape?.count
        let isLanguageModel = rank == 3 && graph.inputs.contains { $0.name == "input_ids" } && (output?.shape?.last?.value ?? 0) >= 1000
        let chosen = options.loss ?? (options.labels != nil ? .labels : rank == 2 ? .pseudoLabel : isLanguageModel ? .nextToken : .randomProjection)
        switch chosen {
        case .pseudoLabel: return .pseudoLabelCrossEntropy
        case .nextToken: return .nextTokenCrossEntropy()
        case .randomProjection: return .randomProjection(count: options.projections, seed: 1)
        case .labels:
            guard let file = options.labels else { throw MPQError.invalidInput("--loss labels needs --labels FILE.npy") }
            return .crossEntropy(labels: try ClassLabels.load(file, graph: graph, samples: data.count))
        }
    }

    /// Runs Taylor-IP (Markovich-Golan et al. 2025, DESIGN.md): per-group loss-MSE sensitivities from one
    /// forward+backward pass per sample, measured block latencies, then as asked a validation, a sweep of
    /// thresholds, and the integer program (CBC) at `maxLossMSE` with its choice exported and measured;
    /// the files go to `output` all-or-nothing.
    ///
    /// - Parameter progress: receives the steps, sensitivity and timing progress and notes (default silent).
    public func run(progress: ProgressReporter = SilentProgress()) throws -> Result {
        try validate()
        let inputs = try SearchInputs(options.shared, progress: progress)
        let loss = try taskLoss(graph: inputs.graph, data: inputs.data)
        var settings = TaylorIntegerProgramSearch.Options()
        settings.batchSize = options.batchSize
        settings.latencyBatchSize = options.latencyBatch
        settings.session = options.session
        settings.latency.session = options.session
        settings.latency.maxUnitsPerBlock = options.unitsPerBlock
        settings.latency.maxConfigurations = options.maxBlockConfigurations
        settings.latency.statistic = options.latencyStatistic
        settings.latency.noise = LatencyMeasurement.NoiseLimit(tolerance: options.latencyTolerance, maxRounds: options.latencyRounds)
        settings.latency.resolution = options.latencyResolution
        settings.cacheRoot = options.cacheFolder.map { URL(fileURLWithPath: $0) }
        settings.activationRange = options.activationRange
        settings.weightRange = options.weightRange
        settings.refinements = inputs.refinements
        let search = try TaylorIntegerProgramSearch(graph: inputs.graph, data: inputs.data, profile: inputs.profile, loss: loss,
                                                    options: settings, progress: progress.search)
        let budgets = TaylorIntegerProgramSearch.Budgets(maxLossMSE: options.maxLossMSE ?? 0, memoryBytes: options.memoryBudget,
                                                         bops: options.bopsBudget)
        try checkReachableBudgets(search)
        progress.note("\(search.groups.groups.count) quantizer groups, \(search.latency.partition.blocks.count) blocks, "
                      + "\(search.latency.measurementCount) block timings (cache \(search.latency.cacheFolder.path))")
        let sensitivities = try search.lossMSE(progress: progress.search)
        let blocks = try search.blockTimings(progress: progress.search)
        if let threshold = options.maxLossMSE {
            let reachable = try search.reachableLossMSE(objective: options.objective, budgets: budgets)
            if threshold < reachable.smallest {
                throw MPQError.invalidInput("loss threshold \(TaylorSearchFiles.text(threshold)) is below the smallest predicted loss MSE any configuration reaches within the budgets (reachable: \(TaylorSearchFiles.text(reachable.smallest)) and above; the best configuration for \(options.objective.rawValue) without a loss limit predicts \(TaylorSearchFiles.text(reachable.unconstrained)))")
            }
        }
        var outcome = Result(sensitivities: sensitivities, files: OutputFiles(), summary: "")
        var lines: [String] = []
        outcome.files.add("sensitivity.csv", TaylorSearchFiles.sensitivityCSV(search, sensitivities))
        outcome.files.add("latency.csv", TaylorSearchFiles.latencyCSV(search, blocks))
        if let count = options.validateCount {
            lines += try TaylorValidationRun(search: search, objective: options.objective, budgets: budgets)
                .run(count: count, progress: progress, result: &outcome)
        }
        if options.sweep {
            let front = try search.sweep(objective: options.objective, budgets: budgets, count: options.sweepPoints, progress: progress.search)
            outcome.front = front
            outcome.files.add("front.csv", TaylorSearchFiles.frontCSV(front))
            outcome.files.add("front.svg", Data(TaylorSearchFiles.frontPlot(front, search: search).svg().utf8))
            for point in front {
                lines.append(String(format: "threshold %.4g: predicted loss MSE %.4g, measured %.4g; predicted %.3f ms, measured %.3f ms",
                                    point.threshold, point.choice.predictedLossMSE, point.measuredLossMSE,
                                    point.choice.predictedMilliseconds, point.measuredMilliseconds))
            }
        }
        if let threshold = options.maxLossMSE {
            lines += try choose(search, threshold: threshold, budgets: budgets, loss: loss, inputs: inputs, progress: progress,
                                result: &outcome)
        }
        outcome.latencyNoise = search.latency.noise
        if let warning = search.latency.noise.warning { progress.note("warning: " + warning) }
        if let output = options.output {
            try outcome.files.write(to: output)
            lines.append("wrote \(output)/" + outcome.files.names.joined(separator: ", "))
        }
        outcome.summary = lines.joined(separator: "\n")
        return outcome
    }

    /// Rejects memory and BOPs budgets below the cheapest configuration's, before sensitivities and timings.
    private func checkReachableBudgets(_ search: TaylorIntegerProgramSearch) throws {
        for (name, budget, cost) in [("memory", options.memoryBudget, search.memoryBytes), ("bops", options.bopsBudget, search.bops)] {
            guard let budget else { continue }
            let lowest = cost(cheapestAssignment(search.candidates, cost: cost)), highest = cost([Int](repeating: 0, count: search.candidates.count))
            if budget < lowest {
                throw MPQError.invalidInput("\(name) budget \(TaylorSearchFiles.text(budget)) is below the cheapest configuration's (reachable: \(TaylorSearchFiles.text(lowest))...\(TaylorSearchFiles.text(highest)))")
            }
        }
    }
}
