import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite("Sub-graph partition")
struct SubgraphPartitionTests {
    /// One unit per Conv / Gemm / MatMul node.
    static func computeUnits(_ graph: Graph) -> [Set<String>] {
        graph.nodes.filter { ["Conv", "Gemm", "MatMul"].contains($0.opType) }.map { [$0.name] }
    }

    /// Runs the blocks' subgraphs one after another, each fed from the values
    /// earlier blocks (or the feeds) produced.
    static func runChain(_ partition: SubgraphPartition, of graph: Graph,
                         feeds: [String: Tensor]) throws -> [String: Tensor] {
        var values = feeds
        for (index, subgraph) in try partition.subgraphs(of: graph, inputShapes: feeds.mapValues(\.shape)).enumerated() {
            var blockFeeds: [String: Tensor] = [:]
            for input in subgraph.inputs { blockFeeds[input.name] = try #require(values[input.name], "block \(index) input \(input.name)") }
            let outputs = try InferenceSession(graph: subgraph, options: SessionOptions(threads: 2)).run(blockFeeds)
            values.merge(outputs) { $1 }
        }
        return values
    }

    static func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.floats(), b.floats()).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Structural properties every partition must have.
    static func checkStructure(_ partition: SubgraphPartition, graph: Graph, units: [Set<String>],
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let live = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
            .specialize(inputShapes: ModelSummary.inputShapes(graph)).nodes.map(\.node.name)
        // Every node that runs, exactly once, blocks in order.
        #expect(partition.blocks.flatMap(\.nodes) == live, sourceLocation: sourceLocation)
        var blockOfNode: [String: Int] = [:]
        for (index, block) in partition.blocks.enumerated() { for node in block.nodes { blockOfNode[node] = index } }
        // Every unit in exactly one block, whole.
        var seen = [Int](repeating: 0, count: units.count)
        for (index, block) in partition.blocks.enumerated() {
            for unit in block.units {
                seen[unit] += 1
                for node in units[unit] where blockOfNode[node] != nil {
                    #expect(blockOfNode[node] == index, "unit \(unit) is split", sourceLocation: sourceLocation)
                }
            }
        }
        #expect(seen.allSatisfy { $0 == 1 }, sourceLocation: sourceLocation)
        #expect(partition.unplacedUnits.isEmpty, sourceLocation: sourceLocation)
        // Single entry and single exit besides side values.
        for (index, block) in partition.blocks.enumerated() {
            let entries = block.entry.filter { !partition.sideValues.contains($0) }
            let exits = block.exit.filter { !partition.sideValues.contains($0) }
            if index == 0 {
                #expect(entries.count <= 1, "block 0 entries \(entries)", sourceLocation: sourceLocation)
            } else {
                #expect(entries.count == 1, "block \(index) entries \(entries)", sourceLocation: sourceLocation)
            }
            #expect(exits.count == 1, "block \(index) exits \(exits)", sourceLocation: sourceLocation)
            if index > 0, let entry = entries.first {
                #expect(partition.blocks[index - 1].exit.contains(entry), sourceLocation: sourceLocation)
            }
        }
    }

    /// x -> MatMul -> Relu -> MatMul -> Add(skip from Relu) -> MatMul -> y.
    static func residualChain() -> Graph {
        var rng = SeededGenerator(seed: 7)
        let weights = (1...3).reduce(into: [String: Tensor]()) { $0["w\($1)"] = Tensor.random([8, 8], using: &rng) }
        let nodes = [
            Node(name: "mm1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["a"]),
            Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["r"]),
            Node(name: "mm2", opType: "MatMul", inputs: ["r", "w2"], outputs: ["b"]),
            Node(name: "add", opType: "Add", inputs: ["b", "r"], outputs: ["c"]),
            Node(name: "mm3", opType: "MatMul", inputs: ["c", "w3"], outputs: ["y"]),
        ]
        return Graph(name: "residual", nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(4), .fixed(8)])],
                     outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)], initializers: weights, opset: 17)
    }

    @Test("Cuts fall where one value crosses; residual branches stay whole")
    func residualChainBlocks() throws {
        let graph = Self.residualChain()
        let units: [Set<String>] = [["mm1"], ["mm2"], ["mm3"]]
        let single = try SubgraphPartition(graph: graph, units: units, maxUnitsPerBlock: 1)
        #expect(single.blocks.map(\.nodes) == [["mm1", "relu"], ["mm2", "add"], ["mm3"]])
        #expect(single.blocks.map(\.entry) == [["x"], ["r"], ["c"]])
        #expect(single.blocks.map(\.exit) == [["r"], ["c"], ["y"]])
        #expect(single.blocks.map(\.units) == [[0], [1], [2]])
        try Self.checkStructure(single, graph: graph, units: units)

        let pairs = try SubgraphPartition(graph: graph, units: units, maxUnitsPerBlock: 2)
        #expect(pairs.blocks.map(\.nodes) == [["mm1", "relu", "mm2", "add"], ["mm3"]])

        // A unit spanning a cut merges the blocks on both sides.
        let spanning = try SubgraphPartition(graph: graph, units: [["mm1", "mm2"], ["mm3"]], maxUnitsPerBlock: 1)
        #expect(spanning.blocks.map(\.nodes) == [["mm1", "relu", "mm2", "add"], ["mm3"]])
        #expect(spanning.blocks.map(\.units) == [[0], [1]])

        var rng = SeededGenerator(seed: 1)
        let feeds = ["x": Tensor.random([4, 8], using: &rng)]
        let whole = try InferenceSession(graph: graph).run(feeds)
        for partition in [single, pairs, spanning] {
            let chained = try Self.runChain(partition, of: graph, feeds: feeds)
            #expect(Self.maxAbsDifference(try #require(chained["y"]), try #require(whole["y"])) == 0)
        }
    }

    @Test("Units with nothing left to run belong to no block")
    func unplacedUnits() throws {
        var graph = Self.residualChain()
        graph.nodes.append(Node(name: "unused", opType: "MatMul", inputs: ["x", "w1"], outputs: ["dead"]))
        let partition = try SubgraphPartition(graph: graph, units: [["mm1"], ["unused"], ["mm2"], ["mm3"]],
                                              maxUnitsPerBlock: 1)
        #expect(partition.unplacedUnits == [1])
        #expect(partition.blocks.map(\.units) == [[0], [2], [3]])
        #expect(!partition.blocks.flatMap(\.nodes).contains("unused"))
    }

    @Test("Bad units and limits are rejected")
    func rejectsBadInput() {
        let graph = Self.residualChain()
        #expect(throws: MPQError.self) { try SubgraphPartition(graph: graph, units: [["nope"]]) }
        #expect(throws: MPQError.self) { try SubgraphPartition(graph: graph, units: [], maxUnitsPerBlock: 0) }
        #expect(throws: MPQError.self) {
            try SubgraphPartition(graph: graph, units: []).subgraph(5, of: graph, inputShapes: ["x": [4, 8]])
        }
    }

    @Test("MobileNetV2: a chain of single-entry, single-exit blocks whose run equals the whole graph")
    func mobileNetV2() throws {
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path).graph
        let units = Self.computeUnits(graph)
        let partition = try SubgraphPartition(graph: graph, units: units, maxUnitsPerBlock: 2)
        try Self.checkStructure(partition, graph: graph, units: units)
        #expect(units.count == 53)
        // Inverted residual blocks (3 convolutions around a skip) cannot be cut;
        // elsewhere blocks hold at most two convolutions.
        #expect(partition.blocks.count == 24)
        for block in partition.blocks {
            let residual = block.nodes.contains { $0.hasSuffix("/Add") }
            #expect(residual ? block.units.count == 3 : block.units.count <= 2, "\(block.nodes)")
        }

        var rng = SeededGenerator(seed: 3)
        let feeds = ["input": Tensor.random([1, 3, 224, 224], using: &rng)]
        let whole = try InferenceSession(graph: graph, options: SessionOptions(threads: 2)).run(feeds)
        let chained = try Self.runChain(partition, of: graph, feeds: feeds)
        let name = try #require(graph.outputs.first?.name)
        #expect(Self.maxAbsDifference(try #require(chained[name]), try #require(whole[name])) == 0)

        // The entry values one whole (unfused) run yields match the chain's up
        // to rounding (fused kernels sum in another order).
        let entries = try partition.entryValues(of: graph, feeds: feeds, options: SessionOptions(threads: 2))
        #expect(entries.count == partition.blocks.count)
        for (index, values) in entries.enumerated() {
            #expect(Set(values.keys) == Set(partition.blocks[index].entry))
            for (value, tensor) in values {
                let scale = tensor.floats().map(abs).max() ?? 0
                #expect(Self.maxAbsDifference(tensor, try #require(chained[value])) <= 1e-5 * scale, "\(value)")
            }
        }
    }

    @Test("MiniLM: the attention mask is a side input; blocks fall between attention and MLP")
    func miniLM() throws {
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path).graph
        let units = Self.computeUnits(graph)
        let partition = try SubgraphPartition(graph: graph, units: units, maxUnitsPerBlock: 2)
        try Self.checkStructure(partition, graph: graph, units: units)
        // Six layers, each an attention block and an MLP block.
        #expect(partition.blocks.count == 12)
        #expect(partition.sideValues.contains("attention_mask"))
        // Every attention block reads a side value derived from the mask.
        let maskDerived = partition.sideValues.filter { $0 != "attention_mask" && $0 != "input_ids" && $0 != "token_type_ids" }
        for index in stride(from: 2, to: 12, by: 2) {
            #expect(partition.blocks[index].entry.contains(where: maskDerived.contains), "block \(index)")
        }

        var rng = SeededGenerator(seed: 5)
        let (batch, length) = (2, 12)
        let ids = (0..<(batch * length)).map { _ in Int64.random(in: 100..<30000, using: &rng) }
        let mask: [Int64] = (0..<(batch * length)).map { $0 % length < (($0 / length) == 0 ? length : 7) ? 1 : 0 }
        let feeds = ["input_ids": Tensor(shape: [batch, length], scalars: ids),
                     "attention_mask": Tensor(shape: [batch, length], scalars: mask),
                     "token_type_ids": Tensor(shape: [batch, length], scalars: [Int64](repeating: 0, count: batch * length))]
        let whole = try InferenceSession(graph: graph, options: SessionOptions(threads: 2)).run(feeds)
        let chained = try Self.runChain(partition, of: graph, feeds: feeds)
        let name = try #require(graph.outputs.first?.name)
        #expect(Self.maxAbsDifference(try #require(chained[name]), try #require(whole[name])) == 0)
    }
}
