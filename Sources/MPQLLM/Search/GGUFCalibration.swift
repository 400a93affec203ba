import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// The calibration side of a GGUF type search: the base model's graph run on chunks of
/// calibration tokens, the F16 (base) reference distributions, the residual stream at every
/// layer's input (so a change to one layer's weights recomputes only the layers downstream),
/// and the importance matrix of the text.
///
/// KL divergence is scored as `LanguageModelEvaluation` (llama-perplexity) scores it: chunks of
/// `context` tokens from position 0, the second half of each scored, KL(base || model) of the
/// next-token distributions averaged over every scored position of every chunk. Activations are
/// float32 throughout: llama.cpp's 8-bit rounding of activations (its q8_K / q8_0 dot products)
/// is not simulated.
public final class GGUFCalibration: @unchecked Sendable {
    /// The base model every KL divergence is measured against.
    public let model: GGUFLanguageModel
    /// The base model's float32 decoder graph, built for `context` tokens.
    public let graph: Graph
    /// Tokens per chunk; positions context/2 ..< context - 1 are scored.
    public let context: Int
    /// Token ids per chunk (BOS substituted as llama-perplexity does).
    public let chunks: [[Int]]
    /// The importance matrix of the calibration text (llama-imatrix's statistics: sums of squared
    /// activations per input column of every matrix, rows counted per matrix).
    public private(set) var imatrix = IMatrix(format: .gguf)
    /// Threads of the inference sessions; nil: the runtime's default.
    public let threads: Int?
    private let layers: Int
    /// Reference log-probabilities per chunk, scored positions x vocabulary.
    private(set) var reference: [[Double]] = []
    /// Residual stream at each layer's input: [chunk][layer 0 ... layers].
    private var boundaries: [[Tensor]] = []
    private var subgraphs: [Int: Graph] = [:]
    private let vocabulary: Int

    /// Value name of the residual stream entering `layer` (`layers` = the final norm and head).
    func boundary(_ layer: Int) -> String { layer == 0 ? "embedding.tokens" : "blk.\(layer - 1).ffn_residual" }

    /// Runs the base model over the calibration chunks (two passes per chunk: a plain one for the
    /// reference logits, a hooked one for the residual streams and the importance statistics).
    public init(model: GGUFLanguageModel, tokens: [Int], context: Int, chunks: Int?, datasetName: String = "",
                threads: Int? = nil, progress: ProgressReporter = SilentProgress()) throws {
        guard context >= 4 else { throw MPQError.invalidInput("context must be at least 4 tokens") }
        let available = tokens.count / context
        let count = min(chunks ?? available, available)
        guard count > 0 else {
            throw MPQError.invalidInput("\(tokens.count) calibration tokens make no chunk of \(context) tokens")
        }
        self.model = model
        self.context = context
        self.threads = threads
        layers = model.configuration.layers
        vocabulary = model.configuration.vocabulary
        graph = try model.graph(maxSequenceLength: context)
        let bos = model.chunkBOS
        self.chunks = (0..<count).map { c in
            var ids = Array(tokens[c * context..<(c + 1) * context])
            if let bos { ids[0] = bos }
            return ids
        }
        // Matrices fed by each activation (llama-imatrix keys its statistics by the weight's name).
        var consumers: [String: [String]] = [:]
        for node in graph.nodes where node.opType == "Gemm" && node.inputs.count >= 2 {
            if let weight = graph.initializers[node.inputs[1]], weight.rank == 2 {
                consumers[node.inputs[0], default: []].append(node.inputs[1])
            }
        }
        var sums: [String: [Double]] = [:], rows: [String: Int] = [:]
        let session = try InferenceSession(graph: graph, options: SessionOptions(threads: threads))
        let names = Set((0...layers).map(boundary))
        for (index, ids) in self.chunks.enumerated() {
            let input = Tensor(shape: [1, ids.count], scalars: ids.map { Int64($0) })
            let logits = try session.run([DecoderGraphBuilder.inputName: input])[DecoderGraphBuilder.outputName]!
            reference.append(Self.logProbabilities(logits, first: context / 2, end: context - 1))
            var captured: [String: Tensor] = [:]
            _ = try session.run([DecoderGraphBuilder.inputName: input]) { name, value in
                if names.contains(name) { captured[name] = value.copy() }
                if let weights = consumers[name], value.rank == 2 {
                    let n = value.shape[0], columns = value.shape[1]
                    let x = value.pointer(as: Float.self)
                    var column = [Double](repeating: 0, count: columns)
                    for r in 0..<n { for j in 0..<columns { let v = Double(x[r * columns + j]); column[j] += v * v } }
                    for w in weights {
                        if sums[w] == nil { sums[w] = [Double](repeating: 0, count: columns) }
                        for j in 0..<columns { sums[w]![j] += column[j] }
                        rows[w, default: 0] += n
                    }
                }
                return nil
            }
            boundaries.append(try (0...layers).map { layer in
                guard let value = captured[boundary(layer)] else {
                    throw MPQError.invalidModel("the decoder graph has no value '\(boundary(layer))'")
                }
                return value
            })
            progress.progress("calibrating", done: index + 1, total: count)
        }
        var entries: [String: IMatrix.Entry] = [:]
        for (name, s) in sums { entries[name] = IMatrix.Entry(sums: s.map { Float($0) }, counts: [Int64(rows[name] ?? 0)]) }
        imatrix = IMatrix(format: .gguf, entries: entries, datasets: datasetName.isEmpty ? [] : [datasetName],
                          chunkCount: Int32(count), chunkSize: Int32(context))
    }

    /// Log-softmax (double) of logits [1, seq, vocab] at positions first..<end, row after row.
    static func logProbabilities(_ logits: Tensor, first: Int, end: Int) -> [Double] {
        let vocabulary = logits.shape[2]
        var out = [Double](repeating: 0, count: (end - first) * vocabulary)
        var row = [Double](repeating: 0, count: vocabulary)
        let values = logits.pointer(as: Float.self)
        for (k, position) in (first..<end).enumerated() {
            LanguageModelEvaluation.logSoftmax(values + position * vocabulary, vocabulary, into: &row)
            for i in 0..<vocabulary { out[k * vocabulary + i] = row[i] }
        }
        return out
    }

    /// The graph from the residual stream entering `layer` to the logits.
    private func subgraph(from layer: Int) -> Graph {
        if let cached = subgraphs[layer] { return cached }
        let start = boundary(layer)
        let dropped = Set(["embedding", "embedding.tokens"])
        let nodes = graph.nodes.filter { node in
            if dropped.contains(node.name) { return false }
            if node.name.hasPrefix("blk.") {
                let index = Int(node.name.dropFirst(4).prefix { $0.isNumber }) ?? 0
                return index >= layer
            }
            return true
        }
        var used = Set<String>()
        for node in nodes { used.formUnion(node.inputs) }
        let initializers = graph.initializers.filter { used.contains($0.key) }
        let sub = Graph(name: graph.name + ".from\(layer)", nodes: nodes,
                        inputs: graph.inputs + [ValueInfo(name: start, dtype: .float32, shape: nil)],
                        outputs: graph.outputs, initializers: initializers, opset: graph.opset)
        subgraphs[layer] = sub
        return sub
    }

    /// The mean KL divergence from the base model when the weights in `replacing` (float32, GGUF
    /// layout) take the place of the base weights. `fromLayer`: the first layer any of them is
    /// used in (recomputes from there; nil runs the whole graph).
    public func kld(replacing: [String: Tensor], fromLayer: Int?) throws -> Double {
        var g = fromLayer.map { subgraph(from: $0) } ?? graph
        for (name, tensor) in replacing {
            guard g.initializers[name] != nil || fromLayer == nil else { continue }
            g.initializers[name] = tensor
        }
        let session = try InferenceSession(graph: g, options: SessionOptions(threads: threads))
        var total = 0.0, count = 0
        let first = context / 2
        var row = [Double](repeating: 0, count: vocabulary)
        for (index, ids) in chunks.enumerated() {
            var feeds = [DecoderGraphBuilder.inputName: Tensor(shape: [1, ids.count], scalars: ids.map { Int64($0) })]
            if let fromLayer { feeds[boundary(fromLayer)] = boundaries[index][fromLayer] }
            let logits = try session.run(feeds)[DecoderGraphBuilder.outputName]!
            let values = logits.pointer(as: Float.self)
            let ref = reference[index]
            for (k, position) in (first..<(context - 1)).enumerated() {
                LanguageModelEvaluation.logSoftmax(values + position * vocabulary, vocabulary, into: &row)
                var kld = 0.0
                for i in 0..<vocabulary {
                    let p = ref[k * vocabulary + i]
                    kld += Foundation.exp(p) * (p - row[i])
                }
                total += kld
                count += 1
            }
        }
        return total / Double(max(count, 1))
    }
}
