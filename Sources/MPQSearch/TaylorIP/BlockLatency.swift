import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Measured latency of sequential sub-graphs per configuration, Taylor-IP's
/// time model (Markovich-Golan et al. 2025, arXiv 2505.13060; docs/DESIGN.md
/// method 2): the model's predicted latency is the sum of its blocks'.
///
/// Units of the `SubgraphPartition` are the quantizer groups: a group's
/// compute nodes, or for a group without any (a model input, a graph output,
/// residual-Add operands) the nodes that read its sites and the producers of
/// its graph outputs, so that it lands in the block whose kernels its format
/// changes (a model input's format decides whether the first convolution runs
/// int8). Groups none of whose nodes survive constant folding belong to no
/// block: they change no kernel and get no latency.
///
/// Each block is timed as deployed and in place: the whole model quantized
/// with the configuration's formats (`QuantizedModel`) and lowered with
/// `Int8Lowering(simulatingTheRest: false)` (int8 kernels where the CPU has
/// them, float32 elsewhere) runs with per-node timers, and each block's time
/// is the sum of its nodes' steps (`measure`), so the block sum adds up to the
/// model's run (a block timed alone, as its own session on its entry values,
/// ran with its weights hot in the caches and paid the session's per-run
/// overhead and row-major hand-overs at its edges); the run's cost outside
/// the steps is the first block's. Timings keep the minimum
/// (or median, `Options.statistic`) of repetitions after warm-up
/// (`LatencyMeasurement.measureParts`), repeated in rounds
/// until the runs' spread is within `Options.noise`. A block whose
/// configurations (the product of its groups' candidate counts) number at
/// most `maxConfigurations` is timed for each; beyond that it is timed with
/// every group at its first (most precise) candidate, with one group changed
/// at a time, and with every group at its fastest candidate, and the block's
/// time is taken as additive over its groups with the changes scaled so that
/// the all-fastest configuration predicts what it measured
/// (`Block.changeScale`): the prediction of every configuration is then at
/// least that measured time, never negative, and still linear in the
/// choices, so the integer program optimises exactly the reported prediction.
/// Timings are rounded to a relative grid (`Options.resolution`) so that
/// differences below the noise do not decide between configurations.
///
/// Every quiet timing is stored in a cache keyed by the model, the timing
/// inputs, the candidates, the partition settings, threads and the CPU, after
/// each measurement, so an interrupted measurement resumes; noisy timings are
/// not stored, so a later run on a quieter machine measures them again.
public final class BlockLatency: @unchecked Sendable {
    /// Which summary of the repeated runs a timing keeps.
    public enum Statistic: String, Sendable, CaseIterable {
        /// The median run (robust to occasional slow runs).
        case median
        /// The fastest run (robust to a machine shared with other work, whose noise only adds time).
        case minimum
    }

    /// Partition and timing settings (part of the latency cache key, threads included).
    public struct Options: Sendable {
        /// Which summary of the repetitions a timing keeps; default minimum (noise on a CPU only adds time,
        /// so the fastest run is the most repeatable statistic).
        public var statistic = Statistic.minimum
        /// Most units (quantizer groups) per block of the partition; default 4.
        public var maxUnitsPerBlock = 4
        /// Largest number of configurations a block is timed exhaustively for; beyond it the
        /// block's time is taken as additive over its groups. Default 64.
        public var maxConfigurations = 64
        /// Untimed runs before each timing; default 3.
        public var warmup = 3
        /// Timed runs per timing; default 15.
        public var repetitions = 15
        /// When a round of repetitions is quiet enough; a timing still spread after the last round is flagged.
        public var noise = LatencyMeasurement.NoiseLimit()
        /// Relative step of the grid timings are rounded to (0: not rounded); default 0.02, above the
        /// run-to-run noise of the minimum on a quiet machine. `TaylorIntegerProgramSearch.solve` also
        /// treats configurations predicted within this fraction of the fastest as equally fast.
        public var resolution = 0.02
        /// Threads the timed kernels use.
        public var session = SessionOptions()
        /// Default settings.
        public init() {}
    }

    /// Groups of a block timed together: every configuration of `groups`, the
    /// block's other groups at their first candidate.
    public struct Factor: Sendable {
        /// Group indices.
        public var groups: [Int]
        /// Candidate index of each of `groups`, per configuration.
        public var configurations: [[Int]]
        /// Median milliseconds of the whole block per configuration.
        public var milliseconds: [Double]
    }

    /// One block of the partition and its timings.
    public struct Block: Sendable {
        /// Names of the block's nodes, in graph order.
        public var nodes: [String]
        /// Group indices whose units lie in the block.
        public var groups: [Int]
        /// The block unquantized (float32 kernels everywhere).
        public var floatMilliseconds: Double
        /// The block with every group at its first candidate.
        public var baseMilliseconds: Double
        /// One factor with all groups when the block was timed exhaustively, else one per group.
        public var factors: [Factor]
        /// The block with every group at its fastest candidate (timed only when the block is
        /// additive over its groups); nil for exhaustive blocks.
        public var fastestMilliseconds: Double?
        /// True when the block was timed for every configuration (one factor with all its groups).
        public var isExhaustive: Bool { factors.count <= 1 }

        /// A block and its timings.
        public init(nodes: [String], groups: [Int], floatMilliseconds: Double, baseMilliseconds: Double,
                    factors: [Factor], fastestMilliseconds: Double? = nil) {
            self.nodes = nodes
            self.groups = groups
            self.floatMilliseconds = floatMilliseconds
            self.baseMilliseconds = baseMilliseconds
            self.factors = factors
            self.fastestMilliseconds = fastestMilliseconds
        }

        /// What each factor's change (its time minus the base time) is multiplied by: 1 for an
        /// exhaustive block; for an additive one, the measured saving of the all-fastest configuration
        /// over the sum of the factors' largest savings (never negative), so the all-fastest
        /// configuration predicts its measured time and no configuration predicts less. Separate
        /// savings overlap (a block's fixed costs, a reorder shared by two groups), and on a busy
        /// machine a slow base time inflates them all: unscaled, their sum can exceed the base time.
        public var changeScale: Double {
            guard !isExhaustive, let fastest = fastestMilliseconds else { return 1 }
            let largest = factors.reduce(0.0) { $0 + max(0, $1.milliseconds.map { baseMilliseconds - $0 }.max() ?? 0) }
            guard largest > 0 else { return 1 }
            return max(0, baseMilliseconds - fastest) / largest
        }

        /// The change (ms) factor `factor`'s configuration `configuration` adds to the base time, as
        /// the prediction and the integer program count it.
        public func change(factor: Int, configuration: Int) -> Double {
            (factors[factor].milliseconds[configuration] - baseMilliseconds) * changeScale
        }

        /// Predicted milliseconds of the block under `assignment` (a candidate index per group).
        public func milliseconds(_ assignment: [Int]) -> Double {
            let scale = changeScale
            return baseMilliseconds + factors.reduce(0.0) { sum, factor in
                sum + (factor.milliseconds[BlockLatency.configurationIndex(factor, assignment)] - baseMilliseconds) * scale
            }
        }
    }

    /// The FP32 graph.
    public let graph: Graph
    /// The quantizer groups, which are the partition's units.
    public let groups: [QuantizerGroups.Group]
    /// Allowed candidates per group, most precise first.
    public let candidates: [[Candidate]]
    /// The sequential sub-graphs (single entry and exit) the time model sums over.
    public let partition: SubgraphPartition
    /// The settings used.
    public let options: Options
    /// Groups in no block.
    public let unplacedGroups: [Int]
    /// The timing inputs (the whole graph's feeds).
    public let feeds: [String: Tensor]
    private let calibration: CandidateCalibration
    private let cache: SensitivityCache
    private var blocks: [Block]?
    /// Timings taken so far (blocks and whole models) and how many stayed noisy.
    public private(set) var noise: LatencyNoise

    /// Partitions `graph` with the groups as units and opens the timing cache under `cacheRoot`.
    /// - Parameters: feeds: model inputs the timings run on (e.g. the first calibration samples);
    ///   calibration: quantization parameters for every candidate.
    public init(graph: Graph, groups: [QuantizerGroups.Group], candidates: [[Candidate]],
                calibration: CandidateCalibration, feeds: [String: Tensor], options: Options = Options(),
                cacheRoot: URL) throws {
        guard groups.count == candidates.count else {
            throw MPQError.invalidInput("\(groups.count) groups but \(candidates.count) candidate lists")
        }
        guard options.maxConfigurations >= 1 else {
            throw MPQError.invalidInput("maxConfigurations must be at least 1, got \(options.maxConfigurations)")
        }
        self.graph = graph
        self.groups = groups
        self.candidates = candidates
        self.calibration = calibration
        self.feeds = feeds
        self.options = options
        noise = LatencyNoise(limit: options.noise)
        var readers: [String: [String]] = [:], producer: [String: String] = [:]
        for node in graph.nodes {
            for input in node.inputs where !input.isEmpty { readers[input, default: []].append(node.name) }
            for output in node.outputs where !output.isEmpty { producer[output] = node.name }
        }
        let outputs = Set(graph.outputs.map(\.name))
        let units: [Set<String>] = groups.map { group in
            if !group.computeNodes.isEmpty { return Set(group.computeNodes) }
            var nodes = Set(group.sites.flatMap { readers[$0.value] ?? [] })
            for site in group.sites where outputs.contains(site.value) {
                if let node = producer[site.value] { nodes.insert(node) }
            }
            return nodes
        }
        partition = try SubgraphPartition(graph: graph, units: units, maxUnitsPerBlock: options.maxUnitsPerBlock)
        unplacedGroups = partition.unplacedUnits

        let shapes = feeds.mapValues(\.shape).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        let settings = [
            "block latency 2", "threads \(options.session.threads)", "cpu \(Self.cpuName)",
            "int8 weight bits \(CPUFeatures.current.int8WeightBits)", "units per block \(options.maxUnitsPerBlock)",
            "max configurations \(options.maxConfigurations)", "statistic \(options.statistic.rawValue)", "warmup \(options.warmup)", "repetitions \(options.repetitions)",
            "noise tolerance \(options.noise.tolerance) rounds \(options.noise.maxRounds)",
            "activation range \(calibration.activationRange.rawValue)", "weight range \(calibration.weightRange.rawValue)",
            "granularity \(calibration.weightGranularity)", "inputs \(shapes)",
        ] + zip(groups, candidates).map { "\($0.name): \($1.map(\.name).joined(separator: ","))" }
        let timingData = try CalibrationData(inputs: feeds, graph: graph)
        let key = SensitivityCache.key(graph: graph, data: timingData, labels: nil, settings: settings)
        cache = try SensitivityCache(root: cacheRoot.appendingPathComponent("latency"), key: key,
                                     accepts: { $0.isFinite && $0 >= 0 })
    }

    /// The model name of this CPU (from /proc/cpuinfo), part of the cache key.
    static let cpuName: String = {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line?.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }()

    /// The cache folder of these timings.
    public var cacheFolder: URL { cache.folder }

    /// Number of timings to take (blocks x configurations, plus the float and base runs, and the
    /// all-fastest run of blocks timed one group at a time).
    public var measurementCount: Int {
        partition.blocks.indices.reduce(0) { total, b in
            let factors = plannedFactors(b)
            let fixed = factors.isEmpty ? 1 : factors.count > 1 ? 3 : 2
            return total + fixed + factors.reduce(0) { $0 + $1.configurations.count }
        }
    }

    /// Times every block and configuration (or loads the timings from the cache);
    /// `progress(done, total)` after each block timing.
    ///
    /// Blocks are timed inside whole deployed models (`InferenceSession.run(_:stepTime:)`): each
    /// executed step is attributed to the block of its node (steps the quantization adds, to the
    /// block of the next known node), so a block pays the cache misses, reorders and int8
    /// hand-overs it pays in the deployed model, and no per-run session overhead. One run series
    /// times every block at once: the float model, the base (every group at its first candidate),
    /// then row k with every block at its k-th configuration (cycling), then the additive blocks at
    /// their fastest candidates.
    public func measure(progress: ((Int, Int) -> Void)? = nil) throws -> [Block] {
        if let blocks { return blocks }
        let total = measurementCount
        var done = 0
        let planned = partition.blocks.indices.map(plannedFactors)
        let base = [Int](repeating: 0, count: groups.count)
        var results: [String: Double] = [:]
        func name(_ b: Int, _ label: String) -> String {
            "block \(b) \(partition.blocks[b].nodes.first ?? "")...\(partition.blocks[b].nodes.last ?? ""): \(label)"
        }
        func label(_ b: Int, _ assignment: [Int]) -> String {
            partition.blocks[b].units.map { candidates[$0][assignment[$0]].name }.joined(separator: ",")
        }
        /// Times the whole model at `assignment` (nil: float) for the blocks in `wanted` (block -> label).
        func timeRow(_ assignment: [Int]?, wanted: [Int: String]) throws {
            var missing: [Int: String] = [:]
            for (b, text) in wanted {
                if let cached = cache.score(name(b, text)) {
                    results[name(b, text)] = Self.rounded(cached, resolution: options.resolution)
                } else {
                    missing[b] = text
                }
            }
            if !missing.isEmpty {
                let timings = try blockTimings(assignment)
                var quiet: [String: Double] = [:]
                for (b, text) in missing {
                    noise.record(timings[b])
                    let value = options.statistic == .median ? timings[b].median : timings[b].minimum
                    results[name(b, text)] = Self.rounded(value, resolution: options.resolution)
                    if !timings[b].isNoisy { quiet[name(b, text)] = value }
                }
                if !quiet.isEmpty { try cache.store(quiet) }
            }
            done += wanted.count
            progress?(done, total)
        }
        let everyBlock = partition.blocks.indices
        try timeRow(nil, wanted: Dictionary(uniqueKeysWithValues: everyBlock.map { ($0, "float") }))
        let grouped = everyBlock.filter { !partition.blocks[$0].units.isEmpty }
        try timeRow(base, wanted: Dictionary(uniqueKeysWithValues: grouped.map { ($0, label($0, base)) }))
        // Row k: every block at its k-th configuration (factor by factor), cycling through them once
        // done (candidate counts are mostly powers of 2, so the last row runs every block at its last
        // configuration: all-int8 blocks meet all-int8 neighbours, as in the configurations chosen).
        let configurations: [[(factor: Int, configuration: Int)]] = planned.map { factors in
            factors.indices.flatMap { f in factors[f].configurations.indices.map { (f, $0) } }
        }
        func assign(_ assignment: inout [Int], _ factor: Factor, _ configuration: Int) {
            for (group, candidate) in zip(factor.groups, factor.configurations[configuration]) { assignment[group] = candidate }
        }
        for k in 0..<(configurations.map(\.count).max() ?? 0) {
            var assignment = base
            var wanted: [Int: String] = [:]
            for b in everyBlock where !configurations[b].isEmpty {
                let (f, c) = configurations[b][k % configurations[b].count]
                var own = base
                assign(&own, planned[b][f], c)
                assign(&assignment, planned[b][f], c)
                if k < configurations[b].count { wanted[b] = label(b, own) }
            }
            try timeRow(assignment, wanted: wanted)
        }
        func milliseconds(_ b: Int, _ assignment: [Int]) -> Double { results[name(b, label(b, assignment))] ?? 0 }
        var result: [Block] = []
        var fastest = base
        var fastestWanted: [Int: String] = [:]
        for (b, block) in partition.blocks.enumerated() {
            let floatTime = results[name(b, "float")] ?? 0
            // A block without groups runs the same kernels in every configuration.
            let baseTime = block.units.isEmpty ? floatTime : milliseconds(b, base)
            var factors = planned[b]
            for f in factors.indices {
                factors[f].milliseconds = factors[f].configurations.indices.map { c in
                    var own = base
                    assign(&own, factors[f], c)
                    return milliseconds(b, own)
                }
            }
            if factors.count > 1 {
                for factor in factors {
                    let quickest = factor.milliseconds.indices.min { factor.milliseconds[$0] < factor.milliseconds[$1] } ?? 0
                    if factor.milliseconds[quickest] < baseTime { assign(&fastest, factor, quickest) }
                }
                fastestWanted[b] = "fastest " + label(b, fastest)
            }
            result.append(Block(nodes: block.nodes, groups: block.units, floatMilliseconds: floatTime,
                                baseMilliseconds: baseTime, factors: factors))
        }
        if !fastestWanted.isEmpty {
            try timeRow(fastest, wanted: fastestWanted)
            for (b, text) in fastestWanted { result[b].fastestMilliseconds = results[name(b, text)] }
        }
        blocks = result
        return result
    }

    /// One timing per block of the whole model deployed at `assignment` (nil: the float graph), from
    /// per-step times (`InferenceSession.run(_:stepTime:)`), with the settings' warm-up, repetitions
    /// and noise limit.
    private func blockTimings(_ assignment: [Int]?) throws -> [Timing] {
        let deployed = try assignment.map(deployedModel) ?? graph
        var blockOf: [String: Int] = [:]
        for (b, block) in partition.blocks.enumerated() {
            for node in block.nodes { blockOf[node] = b }
        }
        let session = try InferenceSession(graph: deployed, options: options.session)
        let count = partition.blocks.count
        return try LatencyMeasurement.measureParts(warmup: max(options.warmup, 1), repetitions: options.repetitions,
                                                   noise: options.noise) {
            var times = [Double](repeating: 0, count: count)
            var pending = 0.0, current = 0, steps = 0.0
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try session.run(feeds) { node, milliseconds in
                steps += milliseconds
                guard let b = blockOf[node] else { pending += milliseconds; return }
                times[b] += milliseconds + pending
                pending = 0
                current = b
            }
            times[current] += pending
            // The run's own cost outside the steps (input checks, plan lookup, outputs) is paid once per model:
            // the first block carries it, the same in every configuration.
            if count > 0 { times[0] += max(0, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 - steps) }
            return times
        }
    }

    /// `value` rounded to the nearest point of the grid (1 + `resolution`)^k ms: differences
    /// well below `resolution` (noise) mostly vanish, so repeated runs give equal tables.
    static func rounded(_ value: Double, resolution: Double) -> Double {
        guard resolution > 0, value > 0, value.isFinite else { return value }
        let step = log1p(resolution)
        return exp((log(value) / step).rounded() * step)
    }

    /// The factors block `b` is timed as (milliseconds not yet filled in).
    private func plannedFactors(_ b: Int) -> [Factor] {
        let blockGroups = partition.blocks[b].units
        guard !blockGroups.isEmpty else { return [] }
        let product = blockGroups.reduce(1.0) { $0 * Double(candidates[$1].count) }
        if product <= Double(options.maxConfigurations) {
            var configurations: [[Int]] = [[]]
            for group in blockGroups {
                configurations = configurations.flatMap { prefix in candidates[group].indices.map { prefix + [$0] } }
            }
            return [Factor(groups: blockGroups, configurations: configurations, milliseconds: [])]
        }
        return blockGroups.map { group in
            Factor(groups: [group], configurations: candidates[group].indices.map { [$0] }, milliseconds: [])
        }
    }

    /// Predicted milliseconds of `assignment` (a candidate index per group): the sum over blocks of
    /// base + the factors' scaled changes (`Block.milliseconds`), never below any block's fastest time.
    public func predictedMilliseconds(_ assignment: [Int], blocks: [Block]) -> Double {
        blocks.reduce(0.0) { $0 + $1.milliseconds(assignment) }
    }

    /// Index into `factor.configurations` of the candidates `assignment` gives its groups.
    static func configurationIndex(_ factor: Factor, _ assignment: [Int]) -> Int {
        let wanted = factor.groups.map { assignment[$0] }
        return factor.configurations.firstIndex(of: wanted) ?? 0
    }

    /// `graph` quantized with `formats` (site value -> format; sites `graph` does not have are
    /// ignored) and lowered as deployed on this CPU.
    public static func deployedGraph(_ graph: Graph, formats: [String: QuantizationFormat],
                                     calibration: CandidateCalibration, options: SessionOptions) throws -> Graph {
        let placement = QuantizerPlacement(graph: graph)
        let present = Set(placement.sites.map(\.value))
        let (config, parameters) = try calibration.configuration(formats.filter { present.contains($0.key) })
        let model = try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters,
                                       options: options)
        return try Int8Lowering(model, simulatingTheRest: false).graph
    }

    /// The whole deployed model of `assignment` timed the same way as the blocks (in milliseconds,
    /// `options.statistic` of the runs; counted in `noise`).
    public func measuredMilliseconds(_ assignment: [Int]) throws -> Double {
        let timing = try measuredLatency(assignment)
        noise.record(timing)
        return options.statistic == .median ? timing.median : timing.minimum
    }

    /// The whole deployed model of `assignment` timed with the blocks' warm-up, repetitions and noise limit.
    public func measuredLatency(_ assignment: [Int]) throws -> Timing {
        try LatencyMeasurement.measure(graph: try deployedModel(assignment), feeds: feeds, options: options.session,
                                       warmup: options.warmup, repetitions: options.repetitions, noise: options.noise)
    }

    /// The whole graph as deployed with `assignment` (a candidate index per group).
    func deployedModel(_ assignment: [Int]) throws -> Graph {
        var formats: [String: QuantizationFormat] = [:]
        for (g, group) in groups.enumerated() {
            let chosen = candidates[g][assignment[g]]
            for site in group.sites { formats[site.value] = site.role == .weight ? chosen.weights : chosen.activations }
        }
        return try Self.deployedGraph(graph, formats: formats, calibration: calibration, options: options.session)
    }
}
