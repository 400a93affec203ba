import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// `mpq search pareto` as a library call: the Pareto-greedy search (Pandey et al. 2023) over a hardware
/// profile's candidates, its front and, with a target, the chosen configuration exported: pareto.csv,
/// pareto.json, sensitivity.csv, pareto.svg, report.html and with a target config.json, model.qdq.onnx,
/// encodings.json, report.json, written all-or-nothing to `output`.
public struct ParetoSearchWorkflow: Sendable {
    /// What to search, how to score configurations, and what to select.
    public struct Options: SearchWorkflowOptions, Sendable {
        /// What every search takes; its fields read and write as this struct's own (`options.batchSize`).
        public var shared: SearchOptions
        /// The score of a configuration against FP32 on the calibration data (phase 1 and 3); default SQNR in dB.
        public var metric: SearchMetric = .sqnr
        /// What to select; nil: the front only.
        public var target: ParetoGreedySearch.Target?
        /// Memory for cached activations; the rest spills to the cache folder.
        public var activationCacheBytes = 2 << 30
        /// Phase 1 runs only the part of the model after each group.
        public var usesActivationCache = true

        /// Options for searching `model` calibrated on `calibrationData`; the rest at defaults.
        public init(model: String, calibrationData: String) {
            shared = SearchOptions(model: model, calibrationData: calibrationData)
        }
    }

    /// What a run produced.
    public struct Result: @unchecked Sendable {
        /// The search itself: phase-1 sensitivities, the phase-2 front of score vs relative cost, the uniform
        /// references, statistics and, with a target, the chosen point (phase 3).
        public var search: ParetoSearchResult
        /// The chosen point's model and report (with a target).
        public var model: QuantizedModel?
        /// The chosen model's figures on the held-out (else calibration) data; nil without a target.
        public var report: QuantizationReport?
        /// The chosen point's metric on the held-out data, and whether the target held there.
        public var heldOutScore: Double?
        /// Whether the chosen point still meets the target on the held-out data (a cost target always does);
        /// nil without a target or held-out data.
        public var targetHeldOnHeldOut: Bool?
        /// The output files (pareto.csv ... report.html, and with a target the exported model), written to `output` when set.
        public var files: OutputFiles
        /// What `mpq search` prints.
        public var summary: String
    }

    /// The run's options.
    public var options: Options

    /// A search with `options`; nothing is loaded or run until `run(progress:)`.
    public init(_ options: Options) { self.options = options }

    /// Checks the options before any work: the shared ones, labels for the accuracy metric (and no held-out
    /// data with it), and a finite target (a drop >= 0, a relative cost > 0); throws `MPQError.invalidInput`.
    public func validate() throws {
        try options.shared.check()
        if options.metric == .accuracy && options.labels == nil { throw MPQError.invalidInput("the accuracy metric needs labels (--labels FILE.npy)") }
        if options.metric == .accuracy && options.evaluationData != nil {
            throw MPQError.invalidInput("the accuracy metric with held-out data (--eval) is not supported: labels are per calibration sample")
        }
        switch options.target {
        case .score(let value)?: guard value.isFinite else { throw MPQError.invalidInput("target \(value) is not a finite number") }
        case .maximumDrop(let drop)?: guard drop.isFinite, drop >= 0 else { throw MPQError.invalidInput("maximum drop \(drop) must be a finite number >= 0") }
        case .relativeCost(let cost)?: guard cost.isFinite, cost > 0 else { throw MPQError.invalidInput("target cost \(cost) must be a positive relative cost (e.g. 0.25)") }
        case nil: break
        }
    }

    /// Runs the Pareto-greedy search (Pandey et al. 2023, DESIGN.md): phase 1 scores every (group, candidate)
    /// alone against FP32 (cached on disk, resumable), phase 2 traces the front of score vs relative cost, and
    /// with a target phase 3 picks the cheapest front point whose evaluated score meets it, which is then
    /// exported, reported and scored on the held-out data; the files go to `output` all-or-nothing.
    ///
    /// - Parameter progress: receives the steps, phase-1 progress and notes (default silent).
    public func run(progress: ProgressReporter = SilentProgress()) throws -> Result {
        try validate()
        let inputs = try SearchInputs(options.shared, progress: progress)
        var settings = ParetoGreedySearch.Options()
        settings.metric = options.metric
        settings.batchSize = options.batchSize
        settings.labels = try options.labels.map { try ClassLabels.load($0, graph: inputs.graph, samples: inputs.data.count) }
        settings.cacheRoot = options.cacheFolder.map { URL(fileURLWithPath: $0) }
        settings.activationCacheBytes = options.activationCacheBytes
        settings.usesActivationCache = options.usesActivationCache
        settings.session = options.session
        settings.activationRange = options.activationRange
        settings.weightRange = options.weightRange
        settings.refinements = inputs.refinements
        let search = try ParetoGreedySearch(graph: inputs.graph, data: inputs.data, profile: inputs.profile, options: settings)
        try checkReachableCost(search)
        progress.note("\(search.groups.groups.count) quantizer groups, \(search.candidates.reduce(0) { $0 + $1.count }) (group, candidate) entries; cache \(search.cache.folder.path)")
        var result = try search.run(target: nil, progress: progress.search)
        if let target = options.target {
            do {
                result.chosen = try search.select(target, front: &result.front)
            } catch MPQError.invalidInput(let message) {
                let best = try search.evaluate(result.front[0].assignment)
                throw MPQError.invalidInput("\(message); reachable: best \(options.metric.rawValue) \(ParetoSearchFiles.text(best)) (the most precise configuration, relative cost \(ParetoSearchFiles.text(result.front[0].relativeCost))), relative cost down to \(ParetoSearchFiles.text(result.front.last?.relativeCost))")
            }
        }
        result.statistics = search.currentStatistics

        var files = OutputFiles()
        let names = inputs.profile.candidates.map(\.name)
        let plot = ParetoSearchFiles.plot(result, costName: inputs.profile.cost.rawValue)
        files.add("pareto.csv", ParetoSearchFiles.paretoCSV(result))
        files.add("pareto.json", try ParetoSearchFiles.paretoJSON(result))
        files.add("sensitivity.csv", ParetoSearchFiles.sensitivityCSV(result, candidateNames: names))
        files.add("pareto.svg", Data(plot.svg().utf8))
        files.add("report.html", Data(SearchReportHTML.html(model: options.model, profile: inputs.profile, result: result, plot: plot,
                                                             candidateNames: names).utf8))
        var lines = [Self.frontSummary(result)]
        var outcome = Result(search: result, files: files, summary: "")
        if let chosen = result.chosen, let target = options.target {
            let point = result.front[chosen]
            outcome.files.add("config.json", try ParetoSearchFiles.configJSON(search, assignment: point.assignment))
            let model = try search.quantizedModel(point.assignment)
            var section: [String: Any] = ["method": "pareto", "metric": options.metric.rawValue, "target": Self.describe(target),
                                          "relative_cost": point.relativeCost,
                                          "calibration_score": ParetoSearchFiles.jsonNumber(point.evaluatedScore)]
            inputs.describe(model, in: &section)
            lines.append(String(format: "chosen: step %d, relative cost %.4f, evaluated %@ %@", point.step, point.relativeCost,
                                result.metric.rawValue, ParetoSearchFiles.text(point.evaluatedScore)))
            if let heldOut = inputs.heldOut {
                let scorer = try HeldOutScorer(graph: inputs.reference, data: heldOut, metric: options.metric,
                                               batchSize: options.batchSize, session: options.session)
                let score = try scorer.score(model)
                let threshold = try heldOutThreshold(target, scorer: scorer, search: search, front: result.front)
                let held = threshold.map { options.metric.higherIsBetter ? score >= $0 : score <= $0 } ?? true
                (outcome.heldOutScore, outcome.targetHeldOnHeldOut) = (score, held)
                section["held_out_score"] = ParetoSearchFiles.jsonNumber(score)
                section["held_out_threshold"] = ParetoSearchFiles.jsonNumber(threshold)
                section["target_held_on_held_out"] = held
                lines.append("held-out --eval data: \(options.metric.rawValue) \(ParetoSearchFiles.text(score)) (calibration \(ParetoSearchFiles.text(point.evaluatedScore))): "
                             + (threshold == nil ? "the target is a cost, met on any data" : held ? "the target holds" : "the target does NOT hold (threshold \(ParetoSearchFiles.text(threshold)))"))
            }
            var report = try QuantizationReport(model: model, data: inputs.evaluated, batchSize: options.batchSize,
                                                labels: inputs.heldOut == nil ? settings.labels : nil, options: options.session,
                                                progress: progress.steps("evaluating"))
            report.heldOut = inputs.heldOut != nil
            try QuantizedModelFiles.add(model, report: &report, search: section, to: &outcome.files)
            lines.append(report.summary)
            (outcome.model, outcome.report) = (model, report)
        } else {
            lines.append("no target given: the front only (give a target to export a configuration)")
        }
        if let output = options.output {
            try outcome.files.write(to: output)
            lines.append("wrote \(output)/" + outcome.files.names.joined(separator: ", "))
        }
        outcome.summary = lines.joined(separator: "\n")
        return outcome
    }

    /// Rejects a cost target below the cheapest configuration before any search work.
    private func checkReachableCost(_ search: ParetoGreedySearch) throws {
        guard case .relativeCost(let limit)? = options.target else { return }
        let lowest = search.relativeCost(cheapestAssignment(search.candidates, cost: search.relativeCost))
        if limit < lowest - 1e-12 {
            throw MPQError.invalidInput("target relative cost \(ParetoSearchFiles.text(limit)) is below the cheapest configuration's (reachable: \(ParetoSearchFiles.text(lowest))...1)")
        }
    }

    /// The score the chosen point must reach on the held-out data; nil for a cost target.
    private func heldOutThreshold(_ target: ParetoGreedySearch.Target, scorer: HeldOutScorer, search: ParetoGreedySearch,
                                  front: [ParetoSearchResult.FrontPoint]) throws -> Double? {
        switch target {
        case .score(let value): return value
        case .relativeCost: return nil
        case .maximumDrop(let drop):
            if options.metric == .sqnr { return try scorer.score(search.quantizedModel(front[0].assignment)) - drop }
            let perfect = options.metric.perfect(referenceAccuracy: nil)
            return options.metric.higherIsBetter ? perfect - drop : perfect + drop
        }
    }

    static func describe(_ target: ParetoGreedySearch.Target) -> String {
        switch target {
        case .score(let value): return "score \(value)"
        case .maximumDrop(let drop): return "maximum drop \(drop)"
        case .relativeCost(let cost): return "relative cost \(cost)"
        }
    }

    static func frontSummary(_ result: ParetoSearchResult) -> String {
        var lines = ["\(result.groups.count) groups; phase 1: \(result.statistics.phase1Evaluations) evaluations run, "
            + "\(result.statistics.phase1Loaded) cached, " + String(format: "%.1f s", result.statistics.phase1Seconds)
            + "; front of \(result.front.count) points; \(result.statistics.fullEvaluations) end-to-end evaluations"]
        for reference in result.references {
            lines.append(String(format: "uniform %@: relative cost %.4f, %@ %@", reference.candidate, reference.relativeCost,
                                result.metric.rawValue, ParetoSearchFiles.text(reference.score)))
        }
        return lines.joined(separator: "\n")
    }
}
