import MPQGraph
import MPQQuantization
import MPQRuntime

/// A sequential sub-graph partition (Markovich-Golan et al. 2025, arXiv 2505.13060):
/// the graph cut into a chain of blocks, each with a single entry and a single
/// exit, each covering whole units (the compute nodes of quantizer groups).
/// Each block's latency is measured per configuration of its units, and the
/// model's latency is predicted as the sum over blocks.
///
/// How blocks are found, on the nodes that run once constants are folded
/// (Shape -> Gather -> Reshape chains and `Constant` nodes become constants
/// and are not part of any block):
/// 1. Side values: values computed from the graph inputs without passing
///    through any unit node and not read by a unit node themselves (an
///    attention mask derived from its input, token ids before the embedding
///    lookup). They may be read anywhere, so they are available to every
///    block and never count as crossing a cut; a block that reads one lists it
///    among its entries. Values a unit reads (the image entering the first
///    convolution, the embeddings entering the first attention) are the main
///    path.
/// 2. Cut points: positions in the topological order where at most one
///    computed, non-side value is produced before and read after (or is a
///    graph output): the single entry / exit. Residual branches have no cut
///    inside (the skip value crosses too); MobileNetV2 has one between almost
///    every layer, a transformer one before each attention and each MLP.
/// 3. Cuts that would split a unit are dropped, leaving atomic segments.
/// 4. Segments are joined greedily in order: a block closes before a segment
///    with units that would take it over `maxUnitsPerBlock` units (the number
///    of configurations to measure grows as candidates^units); a segment
///    with more units stays one block. Segments without units (an activation
///    after a convolution, a trailing pooling) join the block before them,
///    leading ones the first block, so kernels that fuse stay together.
public struct SubgraphPartition: Sendable {
    /// One block of the chain.
    public struct Block: Sendable {
        /// Names of the nodes it runs, in topological order.
        public var nodes: [String]
        /// Values it reads that earlier blocks produce, or graph inputs and side values.
        public var entry: [String]
        /// Values it produces that later blocks read, or graph outputs.
        public var exit: [String]
        /// Indices (into the `units` given at creation) of the units it covers.
        public var units: [Int]
    }

    /// The chain of blocks, in execution order.
    public var blocks: [Block]
    /// Values derived from graph inputs alone (no unit on the way or reading
    /// them), available to every block; a block's entries and exits besides
    /// these are single.
    public var sideValues: Set<String>
    /// Units with no node left to run after constant folding; they belong to no block.
    public var unplacedUnits: [Int]

    /// Partitions `graph` (shapes bound as `ModelSummary.inputShapes` binds them).
    ///
    /// - Parameters:
    ///   - graph: the graph to partition.
    ///   - units: node sets that must lie in one block, e.g. the compute
    ///     nodes of one quantizer group.
    ///   - maxUnitsPerBlock: the most units a block may hold (at least 1).
    public init(graph: Graph, units: [Set<String>], maxUnitsPerBlock: Int = 2) throws {
        guard maxUnitsPerBlock >= 1 else {
            throw MPQError.invalidInput("maxUnitsPerBlock must be at least 1, got \(maxUnitsPerBlock)")
        }
        let graphNodeNames = Set(graph.nodes.map(\.name))
        guard graphNodeNames.count == graph.nodes.count else {
            throw MPQError.invalidModel("node names are not unique; a partition refers to nodes by name")
        }
        for (index, unit) in units.enumerated() {
            if let unknown = unit.sorted().first(where: { !graphNodeNames.contains($0) }) {
                throw MPQError.invalidInput("unit \(index) names node '\(unknown)', which the graph does not have")
            }
        }
        let session = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
        let specialized = try session.specialize(inputShapes: ModelSummary.inputShapes(graph))
        let live = specialized.nodes.map(\.node)
        let isConstant = { (name: String) in name.isEmpty || specialized.specs[name]?.constant != nil }
        let graphOutputs = Set(graph.outputs.map(\.name))

        var position: [String: Int] = [:]
        for (index, node) in live.enumerated() { position[node.name] = index }
        var unitOf: [Int: [Int]] = [:]
        var unplaced: [Int] = []
        var spans: [(first: Int, last: Int)?] = []
        for (index, unit) in units.enumerated() {
            let positions = unit.compactMap { position[$0] }
            for p in positions { unitOf[p, default: []].append(index) }
            if let first = positions.min(), let last = positions.max() {
                spans.append((first, last))
            } else {
                spans.append(nil)
                unplaced.append(index)
            }
        }

        // Side values: no unit node among their ancestors, and no unit node reads them.
        let readByUnits = Set(live.indices.filter { unitOf[$0] != nil }.flatMap { live[$0].inputs })
        var fromUnits: Set<String> = []
        var side = Set(graph.inputs.map(\.name).filter { !readByUnits.contains($0) })
        for (index, node) in live.enumerated() {
            let tainted = unitOf[index] != nil || node.inputs.contains(where: fromUnits.contains)
            for output in node.outputs where !output.isEmpty {
                if tainted {
                    fromUnits.insert(output)
                } else if !graphOutputs.contains(output) && !readByUnits.contains(output) {
                    side.insert(output)
                }
            }
        }

        // Values crossing each gap "after node i" (difference arrays over positions).
        let count = live.count
        var lastRead: [String: Int] = [:]
        for (index, node) in live.enumerated() {
            for input in node.inputs where !isConstant(input) { lastRead[input] = index }
        }
        var crossing = [Int](repeating: 0, count: count + 1)
        var splitting = [Int](repeating: 0, count: count + 1)
        for (index, node) in live.enumerated() {
            for output in node.outputs where !output.isEmpty && !side.contains(output) && !isConstant(output) {
                let end = graphOutputs.contains(output) ? count : (lastRead[output] ?? index)
                if end > index { crossing[index] += 1; crossing[end] -= 1 }
            }
        }
        for span in spans.compactMap({ $0 }) where span.last > span.first {
            splitting[span.first] += 1
            splitting[span.last] -= 1
        }
        var segmentEnds: [Int] = []
        var crossingHere = 0
        var splitHere = 0
        for gap in 0..<max(count - 1, 0) {
            crossingHere += crossing[gap]
            splitHere += splitting[gap]
            if crossingHere <= 1 && splitHere == 0 { segmentEnds.append(gap) }
        }
        if count > 0 { segmentEnds.append(count - 1) }

        // Join segments into blocks.
        var ranges: [ClosedRange<Int>] = []
        var blockUnits: [[Int]] = []
        var start = 0
        var current: Set<Int> = []
        var blockStart = 0
        for end in segmentEnds {
            let segmentUnits = Set((start...end).flatMap { unitOf[$0] ?? [] })
            if !current.isEmpty, !segmentUnits.isEmpty, current.union(segmentUnits).count > maxUnitsPerBlock {
                ranges.append(blockStart...(start - 1))
                blockUnits.append(current.sorted())
                blockStart = start
                current = []
            }
            current.formUnion(segmentUnits)
            start = end + 1
        }
        if count > 0 {
            ranges.append(blockStart...(count - 1))
            blockUnits.append(current.sorted())
        }

        var blockOf: [Int] = []
        for (block, range) in ranges.enumerated() { blockOf += Array(repeating: block, count: range.count) }
        var readBy: [String: Int] = [:]
        for (index, node) in live.enumerated() {
            for input in node.inputs where !isConstant(input) { readBy[input] = max(readBy[input] ?? 0, blockOf[index]) }
        }
        blocks = zip(ranges, blockUnits).enumerated().map { block, pair in
            let nodes = live[pair.0]
            let produced = Set(nodes.flatMap(\.outputs))
            var entry: [String] = []
            for node in nodes {
                for input in node.inputs where !isConstant(input) && !produced.contains(input) && !entry.contains(input) {
                    entry.append(input)
                }
            }
            let exit = nodes.flatMap(\.outputs).filter { output in
                !output.isEmpty && (graphOutputs.contains(output) || (readBy[output] ?? block) > block)
            }
            return Block(nodes: nodes.map(\.name), entry: entry, exit: exit, units: pair.1)
        }
        sideValues = side
        unplacedUnits = unplaced
    }

    /// A runnable graph for one block: its entries as inputs (types and shapes
    /// from specializing `graph` at `inputShapes`), its exits as outputs, and
    /// the constants its nodes read (initializers and folded values).
    public func subgraph(_ block: Int, of graph: Graph, inputShapes: [String: [Int]]) throws -> Graph {
        guard blocks.indices.contains(block) else {
            throw MPQError.invalidInput("block \(block) does not exist (the partition has \(blocks.count) blocks)")
        }
        return try subgraph(block, of: graph, specs: Self.specs(of: graph, inputShapes: inputShapes))
    }

    /// Every block's subgraph (specializing `graph` once).
    public func subgraphs(of graph: Graph, inputShapes: [String: [Int]]) throws -> [Graph] {
        let specs = try Self.specs(of: graph, inputShapes: inputShapes)
        return try blocks.indices.map { try subgraph($0, of: graph, specs: specs) }
    }

    private static func specs(of graph: Graph, inputShapes: [String: [Int]]) throws -> [String: ValueSpec] {
        try InferenceSession(graph: graph, options: SessionOptions(threads: 1)).specialize(inputShapes: inputShapes).specs
    }

    private func subgraph(_ block: Int, of graph: Graph, specs: [String: ValueSpec]) throws -> Graph {
        let members = Set(blocks[block].nodes)
        let nodes = graph.nodes.filter { members.contains($0.name) }
        var initializers: [String: Tensor] = [:]
        for node in nodes {
            for input in node.inputs where !input.isEmpty {
                if let constant = specs[input]?.constant { initializers[input] = constant }
            }
        }
        func info(_ name: String) throws -> ValueInfo {
            guard let spec = specs[name] else {
                throw MPQError.invalidModel("no type is known for value '\(name)' of block \(block)")
            }
            return ValueInfo(name: name, dtype: spec.dtype, shape: spec.shape?.map { .fixed($0) })
        }
        return Graph(name: "\(graph.name) block \(block)", nodes: nodes,
                     inputs: try blocks[block].entry.filter { initializers[$0] == nil }.map(info),
                     outputs: try blocks[block].exit.map(info), initializers: initializers, opset: graph.opset)
    }

    /// Each block's entry values when `graph` runs on `feeds` (one run of the
    /// whole graph), ready to feed the block subgraphs for timing. The run
    /// reads values through a hook, which turns kernel fusion off, so values
    /// may differ from a fused run in the last bits.
    public func entryValues(of graph: Graph, feeds: [String: Tensor],
                            options: SessionOptions = SessionOptions()) throws -> [[String: Tensor]] {
        let wanted = Set(blocks.flatMap(\.entry))
        var values = feeds.filter { wanted.contains($0.key) }
        _ = try InferenceSession(graph: graph, options: options).run(feeds) { name, value in
            if wanted.contains(name) { values[name] = value }
            return nil
        }
        return try blocks.enumerated().map { index, block in
            try block.entry.reduce(into: [String: Tensor]()) { result, name in
                guard let value = values[name] else {
                    throw MPQError.invalidInput("the run did not compute '\(name)', an entry of block \(index)")
                }
                result[name] = value
            }
        }
    }
}
