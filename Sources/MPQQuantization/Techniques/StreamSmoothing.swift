import Foundation
import MPQGraph
import MPQRuntime

/// SmoothQuant (Xiao et al. 2023) for the linear streams of convolutional networks:
/// a MobileNetV2 linear bottleneck's residual stream (the 1x1 projections' outputs and the
/// Adds that sum them) carries a few channels with 5-6x the median channel's range, and its
/// per-tensor 8-bit quantizers are the model's least precise.
///
/// A stream is a set of values joined by Adds, each produced by a Conv (no activation after
/// it) or by an Add of two stream values, and read only by Adds inside the stream and by
/// ungrouped 1x1 Convs. Channel j of every stream value is divided by
/// s_j = max|X_j|^α / max|W_j|^(1-α) (X over all stream values, W the readers' input
/// column j): the producing Convs' output rows and biases are divided by s_j, the readers'
/// input columns multiplied by it. Sums of scaled values are the scaled sums, so the FP32
/// function is preserved exactly, as for CLE. α is chosen per stream from `alphas` by the
/// relative quantized output error of the reading Convs on calibration positions (stream
/// value and weights quantized with the configured formats); "no smoothing" competes too.
/// Per-output-channel weight scales make the producers' row scaling free, so only the
/// readers' weights pay for the narrower activations.
public enum StreamSmoothing {
    /// The outcome for one stream.
    public struct Smoothed: Sendable {
        /// The stream's first value (in graph order).
        public var stream: String
        /// Values in the stream (Conv outputs and Add sums).
        public var values: Int
        /// 1x1 Convs reading the stream.
        public var readers: Int
        /// The α chosen; nil when no α beat "no smoothing" and the stream was left unchanged.
        public var alpha: Float?
        /// Relative output error of the readers before smoothing, on calibration positions.
        public var errorBefore: Double
        /// Relative output error after smoothing with `alpha` (equals `errorBefore` when `alpha` is nil).
        public var errorAfter: Double
    }

    struct Stream {
        var values: [String]
        var producers: [Int]
        /// (reader node, the stream value it reads).
        var readers: [(node: Int, value: String)]
        var channels: Int
    }

    /// Smooths every stream of `graph`, picking α from `alphas` on at most `maximumRows` positions
    /// per read value from the first `maximumSamples` samples of `data`.
    public static func apply(to graph: Graph, config: QuantizationConfig, data: CalibrationData,
                             alphas: [Float] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8], maximumRows: Int = 2048,
                             maximumSamples: Int = 64, options: SessionOptions = SessionOptions())
        throws -> (graph: Graph, smoothed: [Smoothed]) {
        var graph = graph
        let streams = try findStreams(graph)
        guard !streams.isEmpty else { return (graph, []) }

        // Per stream value: per-channel max |x| and sampled positions [rows, C] (for values Convs read).
        let watched = Set(streams.flatMap(\.values))
        let read = Set(streams.flatMap { $0.readers.map(\.value) })
        var absMax: [String: [Float]] = [:], rows: [String: [Float]] = [:]
        let session = try InferenceSession(graph: graph, options: options)
        let batches = TechniqueData.batches(TechniqueData.first(data, maximumSamples), size: 16)
        var rng = SplitMix64(seed: 11)
        for batch in batches {
            _ = try session.run(batch) { name, value in
                guard watched.contains(name), value.dtype == .float32, value.rank == 4 else { return nil }
                let x = value.floats(), c = value.shape[1], inner = value.shape[2] * value.shape[3]
                var m = absMax[name] ?? [Float](repeating: 0, count: c)
                for (i, v) in x.enumerated() { let j = (i / inner) % c; m[j] = max(m[j], abs(v)) }
                absMax[name] = m
                guard read.contains(name) else { return nil }
                let positions = value.shape[0] * inner
                var kept = rows[name] ?? []
                let take = min(positions, maximumRows / batches.count + 1)
                for _ in 0..<take where kept.count / c < maximumRows {
                    let p = Int(rng.next() % UInt64(positions)), n = p / inner, offset = p % inner
                    for j in 0..<c { kept.append(x[(n * c + j) * inner + offset]) }
                }
                rows[name] = kept
                return nil
            }
        }

        var results: [Smoothed] = []
        for stream in streams {
            let k = stream.channels
            guard let first = stream.values.first, stream.values.allSatisfy({ absMax[$0]?.count == k }),
                  stream.readers.allSatisfy({ rows[$0.value] != nil }) else { continue }
            let m = (0..<k).map { j in stream.values.map { absMax[$0]![j] }.max()! }
            // Readers' weights as [O, C] matrices.
            let weights = stream.readers.map { graph.initializers[graph.nodes[$0.node].inputs[1]]! }
            let readers = zip(stream.readers, weights).map { reader, w in
                SmoothQuant.Reader(rows: rows[reader.value]!, weight: w,
                                   site: QuantizerPlacement.Site(value: graph.nodes[reader.node].inputs[1], role: .weight,
                                                                 channelAxis: 0, reductionAxis: 1, consumers: []))
            }
            let best = try SmoothQuant.bestScales(activationMaxima: m, readers: readers, alphas: alphas, config: config)
            results.append(Smoothed(stream: first, values: stream.values.count, readers: stream.readers.count,
                                    alpha: best.alpha, errorBefore: best.before, errorAfter: best.after))
            guard best.alpha != nil else { continue }
            let s = best.scales
            for producer in stream.producers {
                let node = graph.nodes[producer]
                let w = graph.initializers[node.inputs[1]]!
                var v = w.floats()
                let per = v.count / k
                for o in 0..<k { for i in 0..<per { v[o * per + i] /= s[o] } }
                graph.initializers[node.inputs[1]] = Tensor(shape: w.shape, scalars: v)
                if let b = node.input(2), let bias = graph.initializers[b] {
                    graph.initializers[b] = Tensor(shape: bias.shape, scalars: zip(bias.floats(), s).map { $0 / $1 })
                }
            }
            for reader in stream.readers {
                let name = graph.nodes[reader.node].inputs[1]
                let w = graph.initializers[name]!
                var v = w.floats()
                for o in 0..<w.shape[0] { for j in 0..<k { v[o * k + j] *= s[j] } }
                graph.initializers[name] = Tensor(shape: w.shape, scalars: v)
            }
        }
        return (graph, results)
    }

    /// The streams of `graph` whose producers' and readers' weights (and biases) belong to them alone.
    static func findStreams(_ graph: Graph) throws -> [Stream] {
        var producer: [String: Int] = [:], readers: [String: [Int]] = [:], uses: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for output in node.outputs { producer[output] = i }
            for input in node.inputs where !input.isEmpty { readers[input, default: []].append(i); uses[input, default: 0] += 1 }
        }
        let outputs = Set(graph.outputs.map(\.name))
        func ownedWeight(_ node: Node) -> Tensor? {
            guard let w = node.input(1), uses[w] == 1, let t = graph.initializers[w], t.dtype == .float32, t.rank == 4 else { return nil }
            if let b = node.input(2) {
                guard uses[b] == 1, let bias = graph.initializers[b], bias.count == t.shape[0] else { return nil }
            }
            return t
        }
        /// A 1x1, ungrouped, unpadded Conv reading `value` as its input with a weight of its own.
        func isReader(_ node: Node, of value: String) throws -> Bool {
            guard node.opType == "Conv", node.domain.isEmpty, node.inputs[0] == value, !node.inputs.dropFirst().contains(value),
                  let w = ownedWeight(node), w.shape[2] == 1, w.shape[3] == 1 else { return false }
            let pads = try node.ints("pads") ?? [0, 0, 0, 0]
            let autoPad = try node.string("auto_pad", default: "NOTSET")
            return try node.int("group", default: 1) == 1 && pads.allSatisfy { $0 == 0 } && (autoPad == "NOTSET" || autoPad == "VALID")
        }
        // Candidate values: Conv outputs (own weight) and Adds, not graph outputs, read only by Adds and 1x1 readers.
        var candidate: [String: Bool] = [:]
        for node in graph.nodes where node.domain.isEmpty && node.outputs.count == 1 {
            let value = node.outputs[0]
            guard !outputs.contains(value), node.opType == "Add" || (node.opType == "Conv" && ownedWeight(node) != nil),
                  let reads = readers[value], !reads.isEmpty else { continue }
            candidate[value] = try reads.allSatisfy { r in
                let reader = graph.nodes[r]
                if reader.opType == "Add" && reader.domain.isEmpty && reader.inputs[0] != reader.inputs[1] { return true }
                return try isReader(reader, of: value)
            }
        }
        // Union the values an Add joins; a stream with an Add whose operand or sum is not a candidate is dropped.
        var parent: [String: String] = [:]
        func root(_ v: String) -> String { var v = v; while let p = parent[v], p != v { v = p }; return v }
        for (value, ok) in candidate where ok { parent[value] = value }
        var rejected: Set<String> = []
        for node in graph.nodes where node.opType == "Add" && node.domain.isEmpty {
            let members = (node.inputs + node.outputs).filter { parent[$0] != nil }
            guard let first = members.first else { continue }
            for m in members.dropFirst() { parent[root(m)] = root(first) }
            if members.count != 3 { rejected.insert(first) }
        }
        let rejectedRoots = Set(rejected.map(root))
        var byRoot: [String: [String]] = [:]
        for node in graph.nodes {
            for value in node.outputs where parent[value] != nil { byRoot[root(value), default: []].append(value) }
        }
        var streams: [Stream] = []
        for (r, values) in byRoot where !rejectedRoots.contains(r) {
            let producers = values.compactMap { v in producer[v].flatMap { graph.nodes[$0].opType == "Conv" ? $0 : nil } }
            var streamReaders: [(node: Int, value: String)] = []
            for v in values { for reader in readers[v] ?? [] where graph.nodes[reader].opType == "Conv" { streamReaders.append((reader, v)) } }
            let channels = Set(producers.map { graph.initializers[graph.nodes[$0].inputs[1]]!.shape[0] }
                               + streamReaders.map { graph.initializers[graph.nodes[$0.node].inputs[1]]!.shape[1] })
            guard !producers.isEmpty, !streamReaders.isEmpty, channels.count == 1 else { continue }
            streams.append(Stream(values: values, producers: producers, readers: streamReaders, channels: channels.first!))
        }
        return streams.sorted { producer[$0.values[0]]! < producer[$1.values[0]]! }
    }
}
