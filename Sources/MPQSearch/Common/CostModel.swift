import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// The cost of a configuration (one candidate per quantizer group), as the
/// hardware profile asks for:
/// - bops: sum over Conv / ConvTranspose / Gemm / MatMul nodes of MACs x bits of
///   input 1 (weight or activation) x bits of input 0 (32 for an unquantized value);
/// - memory: bytes of the quantized weights, sum of elements x weight bits / 8;
/// - latency: sum over groups of the profile's `latency_ms[group name][candidate]`,
///   else the sum over the group's compute nodes of `latency_ms[op type][candidate]`.
/// Search reports costs relative to the configuration with every group at its
/// most precise candidate.
public struct CostModel: Sendable {
    struct ComputeNode: Sendable {
        var macs: Int
        /// Site value read as input 0 and input 1 (nil when unquantized).
        var input: String?
        var operand: String?
    }

    /// The cost measured: BOPs, weight memory or profiled latency.
    public let kind: HardwareProfile.CostKind
    let groups: QuantizerGroups
    let candidates: [[Candidate]]
    let computeNodes: [ComputeNode]
    let weightCounts: [String: Int]
    /// latency[group][candidate index]
    let latency: [[Double]]

    /// - Parameters: candidates: the allowed candidates of each group (same order as `groups.groups`).
    /// Throws `MPQError.invalidInput` when a latency cost misses an entry for a group with compute nodes.
    public init(graph: Graph, groups: QuantizerGroups, candidates: [[Candidate]], profile: HardwareProfile) throws {
        kind = profile.cost
        self.groups = groups
        self.candidates = candidates
        let summary = try ModelSummary(graph: graph)
        let macs = Dictionary(summary.layers.map { ($0.name, $0.macs) }, uniquingKeysWith: +)
        let nodesByName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var computeNodes: [ComputeNode] = []
        for name in Set(groups.groups.flatMap(\.computeNodes)).sorted() {
            guard let node = nodesByName[name], let count = macs[name] else { continue }
            let site = { (index: Int) in node.input(index).flatMap { groups.groupOfValue[$0] == nil ? nil : $0 } }
            computeNodes.append(ComputeNode(macs: count, input: site(0), operand: site(1)))
        }
        self.computeNodes = computeNodes
        var weightCounts: [String: Int] = [:]
        for group in groups.groups {
            for site in group.weights { weightCounts[site.value] = graph.initializers[site.value]?.count ?? 0 }
        }
        self.weightCounts = weightCounts
        var latency: [[Double]] = []
        if profile.cost == .latency {
            let opTypes = Dictionary(graph.nodes.map { ($0.name, QuantizerGroups.profileOpType($0, graph: graph)) },
                                     uniquingKeysWith: { first, _ in first })
            for (group, allowed) in zip(groups.groups, candidates) {
                latency.append(try allowed.map { candidate in
                    if let ms = profile.latencyMilliseconds[group.name]?[candidate.name] { return ms }
                    return try group.computeNodes.reduce(0.0) { sum, node in
                        let opType = opTypes[node] ?? ""
                        guard let ms = profile.latencyMilliseconds[opType]?[candidate.name] else {
                            throw MPQError.invalidInput("hardware profile '\(profile.name)': latency_ms has no entry for group '\(group.name)' or op type '\(opType)' at candidate \(candidate.name)")
                        }
                        return sum + ms
                    }
                })
            }
        }
        self.latency = latency
    }

    /// Cost of `assignment` (a candidate index into each group's allowed list).
    public func cost(_ assignment: [Int]) -> Double {
        func format(_ value: String) -> (weights: QuantizationFormat, activations: QuantizationFormat)? {
            guard let group = groups.groupOfValue[value] else { return nil }
            let candidate = candidates[group][assignment[group]]
            return (candidate.weights, candidate.activations)
        }
        switch kind {
        case .bops:
            var total = 0.0
            for node in computeNodes {
                let inputBits = node.input.flatMap { format($0)?.activations.bitWidth } ?? 32
                var operandBits = 32
                if let operand = node.operand, let formats = format(operand) {
                    operandBits = weightCounts[operand] != nil ? formats.weights.bitWidth : formats.activations.bitWidth
                }
                total += Double(node.macs) * Double(inputBits) * Double(operandBits)
            }
            return total
        case .memory:
            return weightCounts.reduce(0.0) { sum, entry in
                sum + Double(entry.value) * Double(format(entry.key)?.weights.bitWidth ?? 32) / 8
            }
        case .latency:
            return zip(latency, assignment).reduce(0.0) { $0 + $1.0[$1.1] }
        }
    }
}
