import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// FP32 values at a cut through the graph, for every calibration batch, so that
/// evaluating a quantizer group runs only the part of the model downstream of
/// it. Batches stay in memory up to `memoryLimit` bytes; the rest are written
/// as `.npy` files under `folder` and read back when needed.
final class ActivationCache {
    let folder: URL
    let memoryLimit: Int
    private var inMemory: [Int: [String: Tensor]] = [:]
    /// Spilled batches: value name -> file.
    private var onDisk: [Int: [String: URL]] = [:]
    private(set) var bytesInMemory = 0
    /// Bytes written to disk so far (for reports).
    private(set) var bytesSpilled = 0

    init(folder: URL, memoryLimit: Int) {
        self.folder = folder
        self.memoryLimit = memoryLimit
    }

    /// Replaces the values of `batch`.
    func store(_ values: [String: Tensor], batch: Int) throws {
        remove(batch)
        let bytes = values.values.reduce(0) { $0 + $1.byteCount }
        if bytesInMemory + bytes <= memoryLimit {
            inMemory[batch] = values
            bytesInMemory += bytes
            return
        }
        let batchFolder = folder.appendingPathComponent("batch-\(batch)")
        try FileManager.default.createDirectory(at: batchFolder, withIntermediateDirectories: true)
        var files: [String: URL] = [:]
        for (index, entry) in values.sorted(by: { $0.key < $1.key }).enumerated() {
            let file = batchFolder.appendingPathComponent("\(index).npy")
            try AtomicFile.write(try NPY.encode(entry.value), to: file.path)
            files[entry.key] = file
            bytesSpilled += entry.value.byteCount
        }
        onDisk[batch] = files
    }

    /// The values of `batch` (empty when none were stored).
    func values(batch: Int) throws -> [String: Tensor] {
        if let values = inMemory[batch] { return values }
        guard let files = onDisk[batch] else { return [:] }
        return try files.mapValues { try NPY.read(contentsOf: $0.path) }
    }

    private func remove(_ batch: Int) {
        if let values = inMemory.removeValue(forKey: batch) {
            bytesInMemory -= values.values.reduce(0) { $0 + $1.byteCount }
        }
        if let files = onDisk.removeValue(forKey: batch) {
            for file in files.values { try? FileManager.default.removeItem(at: file) }
        }
    }

    /// Frees memory and deletes spilled files.
    func removeAll() {
        for batch in Array(inMemory.keys) + Array(onDisk.keys) { remove(batch) }
        try? FileManager.default.removeItem(at: folder)
    }
}

/// A graph cut before node `position`: which values cross it and the graph of the
/// nodes after it.
///
/// Values produced before the cut and read after it are fed from the cache when
/// they are float32 and not constant at the model's shapes; the others (shape
/// computations on integer inputs, folded constants) are recomputed by keeping
/// their producing nodes, so shape inference and constant folding still see them.
struct GraphCut {
    let graph: Graph
    let position: Int
    /// Float values the cache must hold at this cut.
    let cachedValues: [String]
    /// Indices of the nodes the part after the cut runs: recomputed ancestors, then nodes[position...].
    let nodeIndices: [Int]

    /// - Parameters: facts: `ValueFacts(graph)`, computed once per model.
    init(graph: Graph, position: Int, facts: ValueFacts) {
        self.graph = graph
        self.position = position
        let producer = facts.producer, floatValues = facts.floatValues, constants = facts.constants
        var cached = Set<String>(), recompute = Set<Int>()
        var pending: [String] = graph.nodes[position...].flatMap(\.inputs)
            + graph.outputs.map(\.name).filter { (producer[$0] ?? -1) >= position }
        var visited = Set<String>()
        while let value = pending.popLast() {
            guard !value.isEmpty, visited.insert(value).inserted, let index = producer[value], index < position else { continue }
            if floatValues.contains(value) && !constants.contains(value) {
                cached.insert(value)
            } else if recompute.insert(index).inserted {
                pending += graph.nodes[index].inputs
            }
        }
        cachedValues = cached.sorted()
        nodeIndices = recompute.sorted() + Array(position..<graph.nodes.count)
    }

    /// The nodes `nodes` as a graph reading `inputs` (cached values and model inputs), with `outputs`,
    /// and initializers replaced by `weights` where given.
    func subgraph(nodes indices: [Int], outputs: [String], weights: [String: Tensor] = [:]) -> Graph {
        let nodes = indices.map { graph.nodes[$0] }
        let produced = Set(nodes.flatMap(\.outputs))
        let read = Set(nodes.flatMap(\.inputs)).union(outputs)
        let modelInputs = graph.inputs.filter { read.contains($0.name) }
        let cachedInputs = read.subtracting(produced).subtracting(graph.initializers.keys).subtracting(modelInputs.map(\.name))
            .filter { !$0.isEmpty }.sorted()
        var initializers = graph.initializers
        for (name, tensor) in weights { initializers[name] = tensor }
        let declared = Dictionary(graph.outputs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return Graph(name: graph.name, nodes: nodes,
                     inputs: modelInputs + cachedInputs.map { ValueInfo(name: $0, dtype: .float32, shape: nil) },
                     outputs: outputs.map { declared[$0] ?? ValueInfo(name: $0, dtype: .float32, shape: nil) },
                     initializers: initializers, opset: graph.opset)
    }
}

/// What a cut needs to know about every value: its producer, whether it is float32, whether it
/// folds to a constant at the model's shapes.
struct ValueFacts {
    let producer: [String: Int]
    let floatValues: Set<String>
    let constants: Set<String>

    init(_ graph: Graph) throws {
        var producer: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() { for output in node.outputs where !output.isEmpty { producer[output] = index } }
        self.producer = producer
        let specs = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
            .specialize(inputShapes: ModelSummary.inputShapes(graph)).specs
        floatValues = Set(specs.filter { $0.value.dtype == .float32 }.keys)
        constants = Set(specs.filter { $0.value.constant != nil }.keys)
    }
}
