import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// One precision a quantizer group can take: an (activation format, weight format) pair.
/// Named `wXaY` (X-bit signed symmetric weights, Y-bit unsigned asymmetric activations, the
/// `QuantizationConfig(preset:)` convention; e.g. w8a8, w4a8, w7a8 for 7-bit "reduced range" weights),
/// or `fp32`, `fp16`, `bf16` (both formats float).
public struct Candidate: Hashable, Sendable, CustomStringConvertible {
    /// Name as written in profiles and reports, e.g. "w8a8", "fp16".
    public var name: String
    /// Format of the group's weight quantizers.
    public var weights: QuantizationFormat
    /// Format of the group's activation quantizers.
    public var activations: QuantizationFormat

    /// A candidate from explicit formats; `name` is used as given.
    public init(name: String, weights: QuantizationFormat, activations: QuantizationFormat) {
        self.name = name
        self.weights = weights
        self.activations = activations
    }

    /// Parses `wXaY`, `fp32`, `fp16` or `bf16` (case-insensitive).
    public init(parsing text: String) throws {
        let name = text.lowercased()
        switch name {
        case "fp32", "fp16", "bf16":
            let format = try QuantizationFormat(parsing: name)
            self.init(name: name, weights: format, activations: format)
        default:
            do {
                let preset = try QuantizationConfig(preset: name)
                self.init(name: name, weights: preset.weights, activations: preset.activations)
            } catch {
                throw MPQError.invalidInput("unknown candidate '\(text)': use wXaY (X, Y in 2...16, e.g. w8a8, w4a8, w7a8, w8a16) or fp32, fp16, bf16")
            }
        }
    }

    /// The candidate's name.
    public var description: String { name }

    /// Bits of weight x bits of activation: the BOPs per MAC, and the order "more precise" follows.
    public var bitProduct: Int { weights.bitWidth * activations.bitWidth }

    /// True when `self` is strictly more precise than `other`: a larger bit product, or an equal
    /// product with more bits in total.
    public func isMorePrecise(than other: Candidate) -> Bool {
        if bitProduct != other.bitProduct { return bitProduct > other.bitProduct }
        return weights.bitWidth + activations.bitWidth > other.weights.bitWidth + other.activations.bitWidth
    }
}

/// What a target can run, as a JSON file:
/// `{"name", "candidates": ["w8a8", ...], "op_types": {"Conv": ["w8a8", "w4a8"], ...},
///   "shared": [[value names]], "cost": "bops" | "memory" | "latency",
///   "latency_ms": {"GROUP NAME or OP TYPE": {"w8a8": 0.12, ...}}, "notes": [...]}`.
/// `op_types` are allow-lists (op types not listed allow every candidate; see `QuantizerGroups.Group.opTypes`
/// for the names, including "Input", "Output", "Add" and "MatMulActivations"); `shared` values are put into one group.
public struct HardwareProfile: Sendable {
    /// What "cost" means on the Pareto front's cost axis (DESIGN.md, Pareto-greedy phase 2).
    public enum CostKind: String, Sendable, CaseIterable {
        /// MACs x weight bits x activation bits.
        case bops
        /// Bytes of the quantized weights.
        case memory
        /// Sum of the profile's `latency_ms` entries.
        case latency
    }

    /// Profile name (`name` in the JSON; the source when absent).
    public var name: String
    /// Candidates every group may take unless `opTypes` restricts it, in the profile's order.
    public var candidates: [Candidate]
    /// Allowed candidate names per group op type (`op_types`); op types not listed allow all.
    public var opTypes: [String: [String]]
    /// Lists of value names whose quantizers must share one group (`shared`).
    public var shared: [[String]]
    /// The cost the search minimises (`cost`); default BOPs.
    public var cost: CostKind
    /// Measured latency in milliseconds by group name or op type, then candidate name (`latency_ms`).
    public var latencyMilliseconds: [String: [String: Double]]
    /// The JSON text the profile was read from (hashed into the sensitivity cache key).
    public var source: String

    /// Built-in profiles by name; the same text as profiles/NAME.json in the repository.
    public static let builtIn: [String: String] = ["default": defaultJSON, "cpu-avx2": cpuAVX2JSON]

    /// A built-in profile name (`default`, `cpu-avx2`) or a JSON file.
    public static func load(_ specification: String) throws -> HardwareProfile {
        if let text = builtIn[specification] { return try HardwareProfile(json: text, source: specification) }
        guard FileManager.default.fileExists(atPath: specification) else {
            throw MPQError.fileNotFound("\(specification) (built-in profiles: \(builtIn.keys.sorted().joined(separator: ", ")))")
        }
        guard let data = FileManager.default.contents(atPath: specification) else { throw MPQError.io("cannot read \(specification)") }
        return try HardwareProfile(json: String(decoding: data, as: UTF8.self), source: specification)
    }

    /// Parses a profile; `source` names it in error messages.
    public init(json text: String, source: String = "profile") throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw MPQError.invalidInput("\(source) is not a JSON object")
        }
        func invalid(_ message: String) -> MPQError { .invalidInput("\(source): \(message)") }
        let keys: Set<String> = ["name", "notes", "candidates", "op_types", "shared", "cost", "latency_ms"]
        if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
            throw invalid("unknown key '\(unknown)' (a profile has \(keys.sorted().joined(separator: ", ")))")
        }
        name = object["name"] as? String ?? source
        guard let names = object["candidates"] as? [String], !names.isEmpty else {
            throw invalid("'candidates' must be a non-empty list of candidate names (e.g. [\"w8a8\", \"w4a8\"])")
        }
        candidates = try names.map { try Candidate(parsing: $0) }
        guard let opTypes = (object["op_types"] ?? [String: [String]]()) as? [String: [String]] else {
            throw invalid("'op_types' must map op types to lists of candidate names")
        }
        let known = Set(candidates.map(\.name))
        for (opType, allowed) in opTypes {
            for candidate in allowed where !known.contains(candidate.lowercased()) {
                throw invalid("op_types.\(opType) allows '\(candidate)', which is not in 'candidates'")
            }
        }
        self.opTypes = opTypes.mapValues { $0.map { $0.lowercased() } }
        guard let shared = (object["shared"] ?? [[String]]()) as? [[String]] else {
            throw invalid("'shared' must be a list of lists of value names")
        }
        self.shared = shared
        let costName = object["cost"] as? String ?? "bops"
        guard let cost = CostKind(rawValue: costName) else {
            throw invalid("unknown cost '\(costName)' (use \(CostKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.cost = cost
        guard let latency = (object["latency_ms"] ?? [String: [String: Double]]()) as? [String: [String: Double]] else {
            throw invalid("'latency_ms' must map group names or op types to {candidate: milliseconds}")
        }
        latencyMilliseconds = latency.mapValues { Dictionary(uniqueKeysWithValues: $0.map { ($0.key.lowercased(), $0.value) }) }
        if cost == .latency && latency.isEmpty { throw invalid("cost 'latency' needs a 'latency_ms' table") }
        self.source = text
    }

    /// Keeps only `names` (in that order) as candidates; names the profile lacks are errors.
    public func restricted(to names: [String]) throws -> HardwareProfile {
        var profile = self
        profile.candidates = try names.map { name in
            let wanted = try Candidate(parsing: name)
            guard let candidate = candidates.first(where: { $0.name == wanted.name }) else {
                throw MPQError.invalidInput("candidate '\(name)' is not in hardware profile '\(self.name)' (it has \(candidates.map(\.name).joined(separator: ", ")))")
            }
            return candidate
        }
        return profile
    }

    /// What a search chooses over in `graph` under this profile: its quantizers, their groups
    /// (with the profile's shared values) and each group's allowed candidates, most precise first.
    public func searchSpace(for graph: Graph) throws
        -> (placement: QuantizerPlacement, groups: QuantizerGroups, candidates: [[Candidate]]) {
        let placement = QuantizerPlacement(graph: graph)
        let groups = try QuantizerGroups(graph: graph, placement: placement, shared: shared)
        let candidates = try groups.groups.map { group in
            try allowedCandidates(for: group).sorted { $0.isMorePrecise(than: $1) }
        }
        return (placement, groups, candidates)
    }

    /// Candidates `group` may take: the profile's, filtered by the allow-list of each of its op types.
    /// Throws `MPQError.invalidInput` naming the group when none is left.
    public func allowedCandidates(for group: QuantizerGroups.Group) throws -> [Candidate] {
        var allowed = candidates
        for opType in group.opTypes {
            guard let list = opTypes[opType] else { continue }
            allowed = allowed.filter { list.contains($0.name) }
        }
        guard !allowed.isEmpty else {
            let lists = group.opTypes.map { "\($0): \(opTypes[$0].map { $0.joined(separator: ", ") } ?? "any")" }
            throw MPQError.invalidInput("hardware profile '\(name)' allows no candidate for quantizer group '\(group.name)' "
                + "(op types \(lists.joined(separator: "; ")); candidates \(candidates.map(\.name).joined(separator: ", ")))")
        }
        return allowed
    }

    /// profiles/default.json.
    static let defaultJSON = #"""
{
  "name": "default",
  "notes": [
    "Any candidate on any layer: weights intN signed symmetric per-channel, activations uintN asymmetric per-tensor (wXaY).",
    "Cost: bit operations, MACs x weight bits x activation bits (Baskin et al.; the cost Pandey et al. 2023 use)."
  ],
  "candidates": [
    "w8a8",
    "w4a8",
    "w8a16",
    "w16a16"
  ],
  "op_types": {},
  "shared": [],
  "cost": "bops"
}
"""#

    /// profiles/cpu-avx2.json.
    static let cpuAVX2JSON = #"""
{
  "name": "cpu-avx2",
  "notes": [
    "What oneDNN 2.6 runs on an AVX2 CPU without VNNI (no AVX512, no AVX-VNNI).",
    "int8 convolution / inner product / matmul take uint8 activations and int8 weights; their AVX2 kernels multiply with vpmaddubsw,",
    "which adds pairs of u8 x s8 products into a saturating int16: full-range int8 weights overflow it, 7-bit weights ([-64, 63]) are exact,",
    "so the integer candidate is w7a8 (int7 weights stored in int8, ONNX Runtime's reduce_range). Per-channel weight scales are supported.",
    "There are no int16 or bf16 kernels on AVX2 in oneDNN 2.6 (bf16 needs avx512_core), so everything else runs in fp32.",
    "Activation-by-activation MatMul (op type MatMulActivations, e.g. attention) has no u8 x u8 kernel: its second operand would have to be s8, so it stays fp32.",
    "Residual Adds, model inputs and outputs run in fp32 or with uint8 activations (reorders quantize/dequantize them)."
  ],
  "candidates": [
    "w7a8",
    "fp32"
  ],
  "op_types": {
    "Conv": [
      "w7a8",
      "fp32"
    ],
    "ConvTranspose": [
      "w7a8",
      "fp32"
    ],
    "Gemm": [
      "w7a8",
      "fp32"
    ],
    "MatMul": [
      "w7a8",
      "fp32"
    ],
    "Add": [
      "w7a8",
      "fp32"
    ],
    "Input": [
      "w7a8",
      "fp32"
    ],
    "Output": [
      "fp32"
    ],
    "MatMulActivations": [
      "fp32"
    ]
  },
  "shared": [],
  "cost": "bops"
}
"""#
}
