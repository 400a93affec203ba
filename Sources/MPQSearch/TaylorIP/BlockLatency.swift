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
/// Each block is timed as deployed: its subgraph quantized with its groups'
/// formats (`QuantizedModel`) and lowered with `Int8Lowering(simulatingTheRest:
/// false)` (int8 kernels where the CPU has them, float32 elsewhere), with
/// warm-up and the minimum (or median, `Options.statistic`) of repetitions
/// (`LatencyMeasurement`) on the block's entry values, repeated in rounds
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
        /// run-to-run noise of the minimum on a quiet machine, so identical inputs choose identically.
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
    /// `progress(done, total)` after each timing.
    public func measure(progress: ((Int, Int) -> Void)? = nil) throws -> [Block] {
        if let blocks { return blocks }
        let total = measurementCount
        var done = 0
        let subgraphs = try partition.subgraphs(of: graph, inputShapes: feeds.mapValues(\.shape))
        let entries = try partition.entryValues(of: graph, feeds: feeds, options: options.session)
        var result: [Block] = []
        for (b, block) in partition.blocks.enumerated() {
            func timed(_ label: String, _ assignment: [Int: Int]?) throws -> Double {
                defer {
                    done += 1
                    progress?(done, total)
                }
                let name = "block \(b) \(block.nodes.first ?? "")...\(block.nodes.last ?? ""): \(label)"
                if let cached = cache.score(name) { return Self.rounded(cached, resolution: options.resolution) }
                let deployed = try assignment.map { try deployedGraph(subgraphs[b], assignment: $0) } ?? subgraphs[b]
                let value = try milliseconds(graph: deployed, feeds: entries[b])
                if value.quiet { try cache.store(name, value.milliseconds) }
                return Self.rounded(value.milliseconds, resolution: options.resolution)
            }
            let blockGroups = block.units
            let base = Dictionary(uniqueKeysWithValues: blockGroups.map { ($0, 0) })
            func label(_ assignment: [Int: Int]) -> String {
                blockGroups.map { candidates[$0][assignment[$0] ?? 0].name }.joined(separator: ",")
            }
            let floatTime = try timed("float", nil)
            // A block without groups runs the same kernels in every configuration.
            let baseTime = blockGroups.isEmpty ? floatTime : try timed(label(base), base)
            var factors = plannedFactors(b)
            for f in factors.indices {
                factors[f].milliseconds = try factors[f].configurations.map { configuration in
                    var assignment = base
                    for (group, candidate) in zip(factors[f].groups, configuration) { assignment[group] = candidate }
                    return try timed(label(assignment), assignment)
                }
            }
            var fastestTime: Double?
            if factors.count > 1 {
                var fastest = base
                for factor in factors {
                    let quickest = factor.milliseconds.indices.min { factor.milliseconds[$0] < factor.milliseconds[$1] } ?? 0
                    if factor.milliseconds[quickest] < baseTime { fastest[factor.groups[0]] = factor.configurations[quickest][0] }
                }
                fastestTime = try timed("fastest " + label(fastest), fastest)
            }
            result.append(Block(nodes: block.nodes, groups: blockGroups, floatMilliseconds: floatTime,
                                baseMilliseconds: baseTime, factors: factors, fastestMilliseconds: fastestTime))
        }
        blocks = result
        return result
    }

    /// `graph` timed on `feeds` with the settings' statistic, counted in `noise`; `quiet` is false
    /// when the timing stayed noisy (it is then not cached).
    private func milliseconds(graph: Graph, feeds: [String: Tensor]) throws -> (milliseconds: Double, quiet: Bool) {
        let timing = try LatencyMeasurement.measure(graph: graph, feeds: feeds, options: options.session,
                                                    warmup: options.warmup, repetitions: options.repetitions,
                                                    noise: options.noise)
        noise.record(timing)
        return (options.statistic == .median ? timing.median : timing.minimum, !timing.isNoisy)
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

    /// The graph a runtime deploys for `subgraph` with the groups in `assignment` (group -> candidate
    /// index) quantized: int8 kernels where the CPU has them, float32 elsewhere.
    func deployedGraph(_ subgraph: Graph, assignment: [Int: Int]) throws -> Graph {
        var formats: [String: QuantizationFormat] = [:]
        for (group, candidate) in assignment {
            let chosen = candidates[group][candidate]
            for site in groups[group].sites {
                formats[site.value] = site.role == .weight ? chosen.weights : chosen.activations
            }
        }
        return try Self.deployedGraph(subgraph, formats: formats, calibration: calibration, options: options.session)
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
        var formats: [String: QuantizationFormat] = [:]
        for (g, group) in groups.enumerated() {
            let chosen = candidates[g][assignment[g]]
            for site in group.sites { formats[site.value] = site.role == .weight ? chosen.weights : chosen.activations }
        }
        let deployed = try Self.deployedGraph(graph, formats: formats, calibration: calibration, options: options.session)
        return try LatencyMeasurement.measure(graph: deployed, feeds: feeds, options: options.session,
                                              warmup: options.warmup, repetitions: options.repetitions, noise: options.noise)
    }
}
