import Crypto
import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Pareto-greedy mixed precision (Pandey et al. 2023, "A Practical Mixed Precision Algorithm for
/// Post-Training Quantization", arXiv 2302.05397; the algorithm of AIMET's AMP).
///
/// - Phase 1 (`sensitivities`): for every (group, candidate), quantize only that group and score the
///   model output against FP32 over the calibration set. Only the part of the graph from the group's
///   first affected node on runs: the FP32 values crossing that cut come from an `ActivationCache`
///   that is advanced group by group (one FP32 pass in total). Scores go to a `SensitivityCache` after
///   each evaluation, so an interrupted run resumes.
/// - Phase 2 (`front`): every group starts at its most precise candidate; entries (group, candidate)
///   are applied from least to most sensitive (ties: more bits first, then the larger cost reduction),
///   skipping any that would not lower the group's precision; each applied entry is a point of the front.
/// - Phase 3 (`select`): binary search along the front with real evaluations for the cheapest point
///   that meets the target.
public final class ParetoGreedySearch: @unchecked Sendable {
    /// Settings that change scores (and so the cache key) and how the search runs.
    public struct Options: Sendable {
        /// Score of the model output against FP32 used in every phase; default SQNR (dB).
        public var metric: SearchMetric = .sqnr
        /// Calibration samples per forward pass; default 16.
        public var batchSize = 16
        /// Range estimator for activation quantizers; default MSE.
        public var activationRange: RangeMethod = .mse
        /// Range estimator for weight quantizers; default min-max.
        public var weightRange: RangeMethod = .minMax
        /// Scale granularity of weights; default per channel.
        public var weightGranularity: QuantizationConfig.WeightGranularity = .perChannel
        /// Class labels per calibration sample (for `.accuracy`).
        public var labels: [Int]?
        /// Where scores are cached (a folder per search key); nil: `SensitivityCache.defaultRoot`.
        public var cacheRoot: URL?
        /// Bytes of cut activations kept in memory; the rest spill to disk.
        public var activationCacheBytes = 2 << 30
        /// Run only the graph downstream of each group (false: the whole model per evaluation).
        public var usesActivationCache = true
        /// Threads for the inference sessions (not part of the cache key).
        public var session = SessionOptions()
        /// The per-layer techniques' results per candidate weight format (`QuantizationTechniques.refinement`);
        /// a weight site takes the one of its candidate's format in every phase. Empty: none.
        public var refinements: [WeightRefinement] = []

        /// Default settings: SQNR, batches of 16, MSE activation and min-max per-channel weight ranges.
        public init() {}
    }

    /// What to select in phase 3.
    public enum Target: Sendable {
        /// The metric at least this (at most, for KL), e.g. `--target-sqnr 30`.
        case score(Double)
        /// At most this drop in the metric from FP32 (SQNR: from the all-most-precise configuration).
        case maximumDrop(Double)
        /// Relative cost at most this.
        case relativeCost(Double)
    }

    /// A step of the search, reported while it runs.
    public typealias Progress = SearchProgress

    /// The FP32 graph searched.
    public let graph: Graph
    /// What the target runs: candidates, allow-lists, shared values and the cost kind.
    public let profile: HardwareProfile
    /// The search settings.
    public let options: Options
    /// Where quantizers sit in `graph`.
    public let placement: QuantizerPlacement
    /// The quantizer groups that each take one candidate.
    public let groups: QuantizerGroups
    /// Allowed candidates of each group, most precise first.
    public let candidates: [[Candidate]]
    /// Cost of a configuration (BOPs, memory or latency) as the profile asks.
    public let costModel: CostModel
    /// Phase-1 and phase-3 scores on disk, keyed by model, data, profile and settings.
    public let cache: SensitivityCache
    private let data: CalibrationData
    private var calibration: CandidateCalibration?
    private var statistics = ParetoSearchResult.Statistics()

    /// Builds groups, checks the profile allows a candidate for each, and opens the score cache.
    public init(graph: Graph, data: CalibrationData, profile: HardwareProfile, options: Options = Options()) throws {
        guard options.batchSize >= 1 else { throw MPQError.invalidInput("batch size must be at least 1") }
        if let labels = options.labels, labels.count != data.count {
            throw MPQError.invalidInput("\(labels.count) labels for \(data.count) calibration samples")
        }
        if options.metric == .accuracy && options.labels == nil {
            throw MPQError.invalidInput("the accuracy metric needs labels (--labels FILE.npy)")
        }
        self.graph = graph
        self.data = data
        self.profile = profile
        self.options = options
        (placement, groups, candidates) = try profile.searchSpace(for: graph)
        costModel = try CostModel(graph: graph, groups: groups, candidates: candidates, profile: profile)
        let settings = [
            "pareto-greedy 1", "profile \(profile.source)", "metric \(options.metric.rawValue)", "batch \(options.batchSize)",
            "activation range \(options.activationRange.rawValue)", "weight range \(options.weightRange.rawValue)",
            "granularity \(options.weightGranularity)",
        ] + options.refinements.map { "refined \($0.format.name): \($0.techniques.map(\.rawValue).joined(separator: ","))" }
          + zip(groups.groups, candidates).map { "\($0.name): \($1.map(\.name).joined(separator: ","))" }
        // The refinements' values are part of the key, as if they were initializers of the graph.
        var keyed = graph
        for refinement in options.refinements { keyed.initializers.merge(refinement.keyTensors) { _, refined in refined } }
        let key = SensitivityCache.key(graph: keyed, data: data, labels: options.labels, settings: settings)
        cache = try SensitivityCache(root: options.cacheRoot ?? SensitivityCache.defaultRoot, key: key)
    }

    /// Runs phases 1 to 3 and evaluates the uniform reference configurations.
    /// - Parameters: shouldStop: polled before each evaluation; when it returns true the search throws
    ///   `CancellationError` (scores so far stay cached).
    public func run(target: Target?, progress: ((Progress) -> Void)? = nil,
                    shouldStop: @escaping () -> Bool = { false }) throws -> ParetoSearchResult {
        let start = Date()
        let scores = try sensitivities(progress: progress, shouldStop: shouldStop)
        statistics.phase1Seconds = Date().timeIntervalSince(start)
        var front = front(sensitivities: scores)
        var references: [ParetoSearchResult.ReferencePoint] = []
        for candidate in profile.candidates {
            let assignment = candidates.map { allowed in allowed.firstIndex(of: candidate) ?? 0 }
            references.append(.init(candidate: candidate.name, assignment: assignment, relativeCost: relativeCost(assignment),
                                    score: try evaluate(assignment, shouldStop: shouldStop)))
        }
        // The best front point within each reference's cost, evaluated for the comparison.
        for reference in references {
            if let index = front.firstIndex(where: { $0.relativeCost <= reference.relativeCost + 1e-12 }), front[index].evaluatedScore == nil {
                front[index].evaluatedScore = try evaluate(front[index].assignment, shouldStop: shouldStop)
            }
        }
        var chosen: Int?
        if let target { chosen = try select(target, front: &front, shouldStop: shouldStop) }
        return ParetoSearchResult(metric: options.metric, groups: groups.groups, candidates: candidates, sensitivities: scores,
                                  front: front, references: references, chosen: chosen, statistics: statistics)
    }

    /// Counts and times of the work done so far (phase 3 included, unlike a `run` result's).
    public var currentStatistics: ParetoSearchResult.Statistics { statistics }

    /// The calibration (ranges for every format and FP32 outputs), computed on first use.
    public func calibrated(progress: ((Progress) -> Void)? = nil) throws -> CandidateCalibration {
        if let calibration { return calibration }
        let result = try CandidateCalibration(
            graph: graph, placement: placement, data: data, batchSize: options.batchSize,
            activationRange: options.activationRange, weightRange: options.weightRange,
            weightGranularity: options.weightGranularity, options: options.session, refinements: options.refinements,
            progress: { progress?(Progress(phase: "calibrating", done: $0, total: $1)) })
        calibration = result
        return result
    }

    // MARK: Phase 1

    /// Score of each (group, allowed candidate) with only that group quantized: `[group][candidate]`.
    public func sensitivities(progress: ((Progress) -> Void)? = nil, shouldStop: @escaping () -> Bool = { false })
        throws -> [[Double]] {
        var scores = candidates.map { [Double?](repeating: nil, count: $0.count) }
        var pending: [(group: Int, candidate: Int)] = []
        for (g, allowed) in candidates.enumerated() {
            for c in allowed.indices {
                if let score = cache.score(sensitivityKey(g, c)) {
                    scores[g][c] = score
                    statistics.phase1Loaded += 1
                } else {
                    pending.append((g, c))
                }
            }
        }
        if !pending.isEmpty {
            let calibration = try calibrated(progress: progress)
            let facts = try ValueFacts(graph)
            let activations = ActivationCache(folder: cache.folder.appendingPathComponent("activations-\(getpid())"),
                                              memoryLimit: options.activationCacheBytes)
            defer { activations.removeAll() }
            var frontier = GraphCut(graph: graph, position: 0, facts: facts)
            var done = 0
            progress?(Progress(phase: "sensitivity", done: 0, total: pending.count))
            for g in Array(Set(pending.map(\.group))).sorted() {
                let position = options.usesActivationCache ? min(groups.groups[g].firstAffectedNode, graph.nodes.count) : 0
                if position > frontier.position {
                    let next = GraphCut(graph: graph, position: position, facts: facts)
                    try advance(activations, from: frontier, to: next, calibration: calibration)
                    frontier = next
                }
                for c in pending.filter({ $0.group == g }).map(\.candidate) {
                    if shouldStop() { throw CancellationError() }
                    let score = try score(group: g, candidate: candidates[g][c], cut: frontier, activations: activations,
                                          calibration: calibration, facts: facts)
                    try cache.store(sensitivityKey(g, c), score)
                    scores[g][c] = score
                    statistics.phase1Evaluations += 1
                    done += 1
                    progress?(Progress(phase: "sensitivity", done: done, total: pending.count))
                }
            }
            statistics.activationBytesSpilled = activations.bytesSpilled
        }
        return scores.map { $0.map { $0 ?? .nan } }
    }

    private func sensitivityKey(_ group: Int, _ candidate: Int) -> String {
        "sensitivity\t\(groups.groups[group].name)\t\(candidates[group][candidate].name)"
    }

    /// Moves the cached FP32 values from cut `old` to the later cut `new` by running the nodes between them.
    private func advance(_ activations: ActivationCache, from old: GraphCut, to new: GraphCut,
                         calibration: CandidateCalibration) throws {
        let facts = Set(new.cachedValues)
        let fresh = new.cachedValues.filter { !old.cachedValues.contains($0) }
        var session: InferenceSession?
        var segment: Graph?
        if !fresh.isEmpty {
            let graph = old.subgraph(nodes: old.nodeIndices.filter { $0 < new.position }, outputs: fresh)
            segment = graph
            session = try InferenceSession(graph: graph, options: options.session)
        }
        for (b, batch) in calibration.batches.enumerated() {
            var values = try activations.values(batch: b).filter { facts.contains($0.key) }
            if let session, let segment {
                let feeds = try Self.feeds(for: segment, batch: batch, cached: activations.values(batch: b))
                for (name, value) in try session.run(feeds) { values[name] = value }
            }
            try activations.store(values, batch: b)
        }
    }

    /// The subgraph's inputs from a batch's model inputs and the cached values.
    private static func feeds(for graph: Graph, batch: [String: Tensor], cached: [String: Tensor]) throws -> [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        for input in graph.inputs {
            guard let value = batch[input.name] ?? cached[input.name] else {
                throw MPQError.invalidModel("value '\(input.name)' crossing a search cut is missing from the activation cache")
            }
            feeds[input.name] = value
        }
        return feeds
    }

    /// Scores `candidate` on group `g` alone, running the graph after `cut`.
    private func score(group g: Int, candidate: Candidate, cut: GraphCut, activations: ActivationCache,
                       calibration: CandidateCalibration, facts: ValueFacts) throws -> Double {
        let group = groups.groups[g]
        var weights: [String: Tensor] = [:]
        for site in group.weights {
            let refined = calibration.refinedInitializers(of: site.value, format: candidate.weights)
            for (name, tensor) in refined { weights[name] = tensor }
            guard let weight = refined[site.value] ?? graph.initializers[site.value] else { continue }
            weights[site.value] = try weight.fakeQuantized(try calibration.parameters(for: site.value, format: candidate.weights))
        }
        var quantizers: [String: QuantizationParameters] = [:]
        for site in group.activations {
            quantizers[site.value] = try calibration.parameters(for: site.value, format: candidate.activations)
        }
        let nodeSet = Set(cut.nodeIndices)
        let outputs = graph.outputs.map(\.name).filter { facts.producer[$0].map(nodeSet.contains) ?? false }
        var accumulator = ScoreAccumulator(metric: options.metric)
        let subgraph = cut.subgraph(nodes: cut.nodeIndices, outputs: outputs, weights: weights)
        // Quantizers as graph nodes: the tail keeps operator fusion.
        let fedValues = Set(subgraph.inputs.map(\.name))
        let quantizedTail = subgraph.insertingFakeQuantizers(inputs: quantizers.filter { fedValues.contains($0.key) },
                                                             computed: quantizers.filter { !fedValues.contains($0.key) })
        let session = outputs.isEmpty ? nil : try InferenceSession(graph: quantizedTail, options: options.session)
        var offset = 0
        for (b, batch) in calibration.batches.enumerated() {
            var quantized = calibration.referenceOutputs[b]
            if let session {
                let feeds = try Self.feeds(for: subgraph, batch: batch, cached: activations.values(batch: b))
                for (name, value) in try session.run(feeds) { quantized[name] = value }
            }
            // Model outputs produced before the cut that the group quantizes (an output group).
            for (name, value) in quantized where !outputs.contains(name) {
                if let parameters = quantizers[name] { quantized[name] = try value.fakeQuantized(parameters) }
            }
            let size = batch.values.first?.shape.first ?? 0
            accumulator.add(reference: calibration.referenceOutputs[b], quantized: quantized, feeds: batch,
                            labels: options.labels.map { Array($0[offset..<min(offset + size, $0.count)]) })
            offset += size
        }
        return try accumulator.value()
    }

    // MARK: Phase 2

    /// Relative cost of a configuration (1 = every group at its most precise candidate).
    public func relativeCost(_ assignment: [Int]) -> Double {
        let baseline = costModel.cost([Int](repeating: 0, count: candidates.count))
        return baseline > 0 ? costModel.cost(assignment) / baseline : 1
    }

    /// The predicted score of a configuration from the phase-1 scores, assuming groups add
    /// independent errors (as AIMET does):
    /// - SQNR: each group's noise-to-signal fraction n = 10^(-SQNR/10) adds up, predicted SQNR = -10 log10(sum n);
    /// - other metrics: each group's drop from the FP32 value adds up, predicted = FP32 value -/+ sum of drops.
    public func predictedScore(_ assignment: [Int], sensitivities: [[Double]]) -> Double {
        let values = zip(sensitivities, assignment).map { $0[$1] }
        if options.metric == .sqnr {
            let noise = values.reduce(0.0) { $0 + pow(10, -$1 / 10) }
            return noise == 0 ? .infinity : -10 * log10(noise)
        }
        let perfect = options.metric.perfect(referenceAccuracy: referenceAccuracy)
        let drops = values.reduce(0.0) { $0 + abs(perfect - $1) }
        return options.metric.higherIsBetter ? perfect - drops : perfect + drops
    }

    private var referenceAccuracy: Double? {
        guard let labels = options.labels, let calibration = try? calibrated() else { return nil }
        var comparison = OutputComparison(), offset = 0
        for (b, batch) in calibration.batches.enumerated() {
            let size = batch.values.first?.shape.first ?? 0
            comparison.add(reference: calibration.referenceOutputs[b], quantized: calibration.referenceOutputs[b], feeds: batch,
                           labels: Array(labels[offset..<min(offset + size, labels.count)]))
            offset += size
        }
        return comparison.accuracy?.reference
    }

    /// The front traced by applying entries from least to most sensitive.
    public func front(sensitivities: [[Double]]) -> [ParetoSearchResult.FrontPoint] {
        var assignment = [Int](repeating: 0, count: candidates.count)
        let metric = options.metric
        let perfect = metric.perfect(referenceAccuracy: referenceAccuracy)
        // Larger is more sensitive: minus SQNR, or the drop from FP32.
        func sensitivity(_ score: Double) -> Double {
            if metric == .sqnr { return -score }
            return metric.higherIsBetter ? perfect - score : score - perfect
        }
        let baselineCost = costModel.cost(assignment)
        struct Entry { var group: Int; var candidate: Int; var sensitivity: Double; var bits: Int; var saving: Double }
        var entries: [Entry] = []
        for (g, allowed) in candidates.enumerated() {
            for c in allowed.indices.dropFirst() {
                var single = assignment
                single[g] = c
                entries.append(Entry(group: g, candidate: c, sensitivity: sensitivity(sensitivities[g][c]),
                                     bits: allowed[c].bitProduct, saving: baselineCost - costModel.cost(single)))
            }
        }
        entries.sort {
            if $0.sensitivity != $1.sensitivity { return $0.sensitivity < $1.sensitivity }
            if $0.bits != $1.bits { return $0.bits > $1.bits }
            if $0.saving != $1.saving { return $0.saving > $1.saving }
            return ($0.group, $0.candidate) < ($1.group, $1.candidate)
        }
        var points = [ParetoSearchResult.FrontPoint(step: 0, group: nil, candidate: nil, assignment: assignment,
                                                     relativeCost: relativeCost(assignment),
                                                     predictedScore: predictedScore(assignment, sensitivities: sensitivities))]
        for entry in entries {
            let current = candidates[entry.group][assignment[entry.group]], next = candidates[entry.group][entry.candidate]
            guard current.isMorePrecise(than: next) else { continue }
            assignment[entry.group] = entry.candidate
            points.append(.init(step: points.count, group: groups.groups[entry.group].name, candidate: next.name,
                                assignment: assignment, relativeCost: relativeCost(assignment),
                                predictedScore: predictedScore(assignment, sensitivities: sensitivities)))
        }
        return points
    }

    // MARK: Phase 3 and real evaluations

    /// The metric of a configuration evaluated end to end (the whole quantized model over the data); cached.
    public func evaluate(_ assignment: [Int], shouldStop: () -> Bool = { false }) throws -> Double {
        var hash = SHA256()
        hash.update(data: Data(zip(candidates, assignment).map { $0[$1].name }.joined(separator: ",").utf8))
        let key = "configuration\t" + hash.finalize().map { String(format: "%02x", $0) }.joined()
        if let score = cache.score(key) { return score }
        if shouldStop() { throw CancellationError() }
        let calibration = try calibrated()
        let model = try quantizedModel(assignment)
        var accumulator = ScoreAccumulator(metric: options.metric), offset = 0
        for (b, batch) in calibration.batches.enumerated() {
            let size = batch.values.first?.shape.first ?? 0
            accumulator.add(reference: calibration.referenceOutputs[b], quantized: try model.run(batch), feeds: batch,
                            labels: options.labels.map { Array($0[offset..<min(offset + size, $0.count)]) })
            offset += size
        }
        let score = try accumulator.value()
        try cache.store(key, score)
        statistics.fullEvaluations += 1
        return score
    }

    /// Formats of every site under `assignment`.
    public func formats(_ assignment: [Int]) -> [String: QuantizationFormat] {
        CandidateAssignment(groups: groups, candidates: candidates, choice: assignment).formats
    }

    /// The quantized model of a configuration.
    public func quantizedModel(_ assignment: [Int]) throws -> QuantizedModel {
        try calibrated().quantizedModel(formats(assignment), options: options.session)
    }

    /// Phase 3: the cheapest front point whose evaluated score meets `target`, by binary search
    /// (O(log n) evaluations; the front's scores fall as its cost falls). Evaluated scores are written
    /// into `front`. Throws `MPQError.invalidInput` naming the closest point when none meets it.
    public func select(_ target: Target, front: inout [ParetoSearchResult.FrontPoint],
                       shouldStop: () -> Bool = { false }) throws -> Int {
        func evaluated(_ index: Int) throws -> Double {
            if let score = front[index].evaluatedScore { return score }
            let score = try evaluate(front[index].assignment, shouldStop: shouldStop)
            front[index].evaluatedScore = score
            return score
        }
        let metric = options.metric
        let threshold: Double
        switch target {
        case .relativeCost(let limit):
            guard let index = front.firstIndex(where: { $0.relativeCost <= limit }) else {
                let cheapest = front.min { $0.relativeCost < $1.relativeCost }!
                throw MPQError.invalidInput(String(format: "no point of the front costs at most %.4g; the cheapest, step %d, costs %.4g",
                                                   limit, cheapest.step, cheapest.relativeCost))
            }
            _ = try evaluated(index)
            return index
        case .score(let value):
            threshold = value
        case .maximumDrop(let drop):
            if metric == .sqnr {
                threshold = try evaluated(0) - drop
            } else {
                let perfect = metric.perfect(referenceAccuracy: referenceAccuracy)
                threshold = metric.higherIsBetter ? perfect - drop : perfect + drop
            }
        }
        func meets(_ score: Double) -> Bool { metric.higherIsBetter ? score >= threshold : score <= threshold }
        var best: Int?
        var low = 0, high = front.count - 1
        while low <= high {
            let middle = (low + high) / 2
            if meets(try evaluated(middle)) {
                best = middle
                low = middle + 1
            } else {
                high = middle - 1
            }
        }
        if let best { return best }
        let tried = front.filter { $0.evaluatedScore != nil }
        let closest = tried.min { abs($0.evaluatedScore! - threshold) < abs($1.evaluatedScore! - threshold) }!
        throw MPQError.invalidInput(String(format: "no point of the front meets the target %@ %.4g; the closest evaluated point, step %d (relative cost %.4g), scores %.4g",
                                           metric.rawValue, threshold, closest.step, closest.relativeCost, closest.evaluatedScore!))
    }
}

/// Everything a Pareto-greedy search found.
public struct ParetoSearchResult: Sendable {
    /// A point of the front: the configuration after applying `step` entries.
    public struct FrontPoint: Sendable {
        /// Number of (group, candidate) entries applied; 0 is the all-most-precise configuration.
        public var step: Int
        /// The group and candidate changed at this step (nil at step 0).
        public var group: String?
        /// Name of the candidate the group moved to (nil at step 0).
        public var candidate: String?
        /// Candidate index into each group's allowed list.
        public var assignment: [Int]
        /// Cost relative to the all-most-precise configuration (1 at step 0).
        public var relativeCost: Double
        /// Score predicted from phase-1 scores (`ParetoGreedySearch.predictedScore`).
        public var predictedScore: Double
        /// The end-to-end score, where it was evaluated.
        public var evaluatedScore: Double?
    }

    /// A uniform configuration (every group at one candidate where allowed, else its most precise one).
    public struct ReferencePoint: Sendable {
        /// Name of the uniform candidate.
        public var candidate: String
        /// Candidate index into each group's allowed list.
        public var assignment: [Int]
        /// Cost relative to the all-most-precise configuration.
        public var relativeCost: Double
        /// The evaluated end-to-end score.
        public var score: Double
    }

    /// Counts and times of the work done, for the report.
    public struct Statistics: Sendable {
        /// Phase-1 evaluations run (not read from the cache).
        public var phase1Evaluations = 0
        /// Phase-1 scores read from the cache.
        public var phase1Loaded = 0
        /// Wall-clock time of phase 1 (calibration included), seconds.
        public var phase1Seconds = 0.0
        /// End-to-end evaluations run (references, front points, phase 3).
        public var fullEvaluations = 0
        /// Bytes of cut activations written to disk because they exceeded `activationCacheBytes`.
        public var activationBytesSpilled = 0
    }

    /// The score used throughout.
    public var metric: SearchMetric
    /// The quantizer groups searched, in the order of every per-group array.
    public var groups: [QuantizerGroups.Group]
    /// Allowed candidates per group, most precise first.
    public var candidates: [[Candidate]]
    /// `[group][candidate]` phase-1 scores.
    public var sensitivities: [[Double]]
    /// The Pareto front of predicted score vs relative cost, from step 0 on.
    public var front: [FrontPoint]
    /// Uniform configurations (w8a8, w4a8, ...) evaluated for comparison.
    public var references: [ReferencePoint]
    /// Index into `front` of the selected point.
    public var chosen: Int?
    /// Work done and time spent.
    public var statistics: Statistics
}
