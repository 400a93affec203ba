import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Quantizers that must take one candidate together because the hardware runs
/// them as one kernel (Pandey et al. 2023, section 3.1; docs/DESIGN.md method 1).
///
/// Built by union-find over the sites of a `QuantizerPlacement`:
/// - every Conv / ConvTranspose / Gemm / MatMul node joins its weight site with
///   the activation sites it reads, so an activation read by several compute
///   nodes joins all of them;
/// - shape-only ops (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Slice,
///   Gather, MaxPool, Pad, Concat, Identity, ...) are looked through: activation
///   sites whose values come from one another through such ops share a group
///   (Concat joins all its data inputs);
/// - the two operands of a residual Add form one group: an integer add reads
///   both in one kernel, so both come in one format. The Add's output is a
///   different value with its own site, grouped with its own consumers; joining
///   it too would chain every block of a stage into one group;
/// - model inputs and graph outputs are groups of their own;
/// - the hardware profile may force further values to share (`shared`).
/// A group may hold only activations (inputs, outputs, residual operands) or only
/// a weight (a first layer fed by a model input).
public struct QuantizerGroups: Sendable {
    /// One group of quantizer sites.
    public struct Group: Sendable {
        /// Readable and unique: the first compute node's name, else "input X", "output X" or "add NODE".
        public var name: String
        /// The group's quantizer sites, which all take the group's one candidate.
        public var sites: [QuantizerPlacement.Site]
        /// Names of the Conv / ConvTranspose / Gemm / MatMul nodes whose quantizers are in the group.
        public var computeNodes: [String]
        /// Op types the hardware profile's allow-lists apply to: the compute nodes' op types
        /// ("MatMulActivations" for a MatMul of two computed values), or "Input", "Output", "Add"
        /// for groups without compute nodes.
        public var opTypes: [String]
        /// Index of the first node the group's quantizers change (the group's cut position).
        public var firstAffectedNode: Int

        /// The group's activation sites.
        public var activations: [QuantizerPlacement.Site] { sites.filter { $0.role == .activation } }
        /// The group's weight sites.
        public var weights: [QuantizerPlacement.Site] { sites.filter { $0.role == .weight } }
    }

    /// Ops that move or select values without computing new ones.
    public static let shapeOnlyOps: Set<String> = [
        "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "MaxPool", "Pad",
        "Concat", "Identity", "Split", "Expand", "Tile", "DepthToSpace", "SpaceToDepth",
    ]

    /// All groups, ordered by `firstAffectedNode` (then name).
    public let groups: [Group]
    /// Group index of every site value.
    public let groupOfValue: [String: Int]

    /// Groups of `placement`'s sites; `shared` lists value names that must share one group.
    /// Throws `MPQError.invalidInput` for a shared value that has no quantizer.
    public init(graph: Graph, placement: QuantizerPlacement, shared: [[String]] = [], computeOpTypes: Set<String>
                = QuantizerPlacement.Options().opTypes) throws {
        let sites = placement.sites
        var siteIndex: [String: Int] = [:]
        for (index, site) in sites.enumerated() { siteIndex[site.value] = index }
        let graphInputs = Set(graph.inputs.map(\.name)), graphOutputs = Set(graph.outputs.map(\.name))
        let isolated = Set(sites.indices.filter { graphInputs.contains(sites[$0].value) || graphOutputs.contains(sites[$0].value) })
        var producer: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() { for output in node.outputs { producer[output] = index } }

        // Values that are the same data moved by shape-only ops.
        var valueSets = UnionFind<String>()
        for node in graph.nodes where node.domain.isEmpty && Self.shapeOnlyOps.contains(node.opType) {
            let data = node.opType == "Concat" ? node.inputs.filter { !$0.isEmpty } : Array(node.inputs.prefix(1))
            for output in node.outputs where !output.isEmpty {
                for input in data { valueSets.union(output, input) }
            }
        }

        var siteSets = UnionFind<Int>()
        func join(_ a: Int, _ b: Int) {
            guard !isolated.contains(a), !isolated.contains(b) else { return }
            siteSets.union(a, b)
        }
        var rootSites: [String: Int] = [:]
        for (index, site) in sites.enumerated() where site.role == .activation {
            let root = valueSets.find(site.value)
            if let other = rootSites[root] { join(other, index) } else { rootSites[root] = index }
        }
        var computeNodesOfSite: [Int: [Int]] = [:]
        for (nodeIndex, node) in graph.nodes.enumerated() where node.domain.isEmpty {
            let read = node.inputs.compactMap { siteIndex[$0] }
            if computeOpTypes.contains(node.opType) {
                for index in read { computeNodesOfSite[index, default: []].append(nodeIndex) }
                for index in read.dropFirst() { join(read[0], index) }
            } else if node.opType == "Add", read.count == 2 {
                join(read[0], read[1])
            }
        }
        for names in shared {
            let members = try names.map { name -> Int in
                guard let index = siteIndex[name] else {
                    throw MPQError.invalidInput("the hardware profile's shared group names '\(name)', which has no quantizer in this model (see `mpq inspect --groups`)")
                }
                return index
            }
            for index in members.dropFirst() { siteSets.union(members[0], index) }
        }

        // Collect groups in the order of the first node each one changes.
        var members: [Int: [Int]] = [:]
        for index in sites.indices { members[siteSets.find(index), default: []].append(index) }
        func firstAffected(_ site: QuantizerPlacement.Site) -> Int {
            if site.role == .weight {
                return graph.nodes.firstIndex { $0.inputs.contains(site.value) } ?? graph.nodes.count
            }
            return producer[site.value].map { $0 + 1 } ?? 0
        }
        var built: [Group] = members.values.map { indices in
            let groupSites = indices.sorted().map { sites[$0] }
            let first = groupSites[0]
            // Model inputs and outputs are quantized by their own (de)quantize step, not by a compute kernel.
            let isModelEdge = indices.count == 1 && isolated.contains(indices[0])
            let nodeIndices = isModelEdge ? [] : Array(Set(indices.flatMap { computeNodesOfSite[$0] ?? [] })).sorted()
            let computeNodes = nodeIndices.map { graph.nodes[$0].name }
            var opTypes = Array(Set(nodeIndices.map { Self.profileOpType(graph.nodes[$0], graph: graph) })).sorted()
            var name = computeNodes.first ?? ""
            if computeNodes.isEmpty {
                if graphInputs.contains(first.value) {
                    opTypes = ["Input"]; name = "input \(first.value)"
                } else if graphOutputs.contains(first.value) {
                    opTypes = ["Output"]; name = "output \(first.value)"
                } else {
                    opTypes = ["Add"]; name = "add \(first.consumers.first ?? first.value)"
                }
            }
            return Group(name: name, sites: groupSites, computeNodes: computeNodes, opTypes: opTypes,
                         firstAffectedNode: groupSites.map(firstAffected).min() ?? 0)
        }
        built.sort { ($0.firstAffectedNode, $0.name) < ($1.firstAffectedNode, $1.name) }
        var seen: [String: Int] = [:]
        for index in built.indices {
            let count = seen[built[index].name, default: 0]
            seen[built[index].name] = count + 1
            if count > 0 { built[index].name += " #\(count + 1)" }
        }
        var groupOfValue: [String: Int] = [:]
        for (index, group) in built.enumerated() { for site in group.sites { groupOfValue[site.value] = index } }
        groups = built
        self.groupOfValue = groupOfValue
    }

    /// The op type a profile's allow-list names for a compute node.
    static func profileOpType(_ node: Node, graph: Graph) -> String {
        guard node.opType == "MatMul", let b = node.input(1), graph.initializers[b] == nil else { return node.opType }
        return "MatMulActivations"
    }

    /// The groups as JSON objects (for `mpq inspect --groups --json` and reports).
    public func jsonObject() -> [[String: Any]] {
        groups.map { group in
            [
                "name": group.name,
                "op_types": group.opTypes,
                "compute_nodes": group.computeNodes,
                "activations": group.activations.map(\.value),
                "weights": group.weights.map(\.value),
            ]
        }
    }
}

/// Disjoint sets with path halving.
struct UnionFind<Element: Hashable> {
    private var parent: [Element: Element] = [:]

    mutating func find(_ x: Element) -> Element {
        var x = x
        while let p = parent[x], p != x {
            let grand = parent[p] ?? p
            parent[x] = grand
            x = grand
        }
        return x
    }

    mutating func union(_ a: Element, _ b: Element) {
        let ra = find(a), rb = find(b)
        if ra != rb { parent[rb] = ra }
    }
}
