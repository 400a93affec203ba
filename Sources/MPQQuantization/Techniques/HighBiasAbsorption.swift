import Foundation
import MPQGraph
import MPQRuntime

/// High-bias absorption (Nagel et al. 2019, "Data-Free Quantization Through Weight
/// Equalization and Bias Correction", §4.1.3): equalization scales Conv1's output
/// channel i and its bias by 1/s_i, and channels with s_i < 1 then carry large biases
/// that widen the activation between the convolutions. Where channel i's pre-activation x_i
/// is at least c_i > 0, Relu(x_i) = Relu(x_i - c_i) + c_i (and Min(x_i, u_i) =
/// Min(x_i - c_i, u_i - c_i) + c_i for the per-channel bound CLE gives ReLU6), so c_i
/// moves from Conv1's bias into Conv2's: b1_i -= c_i, u_i -= c_i, b2 += Σ_i W2[:, i] c_i.
///
/// The paper takes c_i = max(0, β_i - 3γ_i) from BatchNorm statistics, data-free and
/// approximate; mpq has calibration data and takes c_i = max(0, the smallest x_i seen),
/// which keeps the FP32 function exactly on those samples (on other data an x_i below
/// c_i, never observed, would be clipped). Conv2 must not pad: a padded border reads 0,
/// not c_i, so MobileNetV2's 1x1 projections qualify and its padded 3x3 depthwise
/// convolutions do not.
public enum HighBiasAbsorption {
    /// The graph with biases moved and how many channels moved.
    public struct Result: Sendable {
        /// The graph; the same FP32 function on the calibration samples.
        public var graph: Graph
        /// Pairs that absorbed at least one channel (Conv1 name, Conv2 name, channels).
        public var pairs: [(conv1: String, conv2: String, channels: Int)]
    }

    /// Absorbs high biases across the pairs `Conv1 -> Relu [-> Min(per-channel bound)] -> Conv2`
    /// named in `pairs` (as `CrossLayerEqualization` returns them), measuring the pre-activation
    /// minima on the first `maximumSamples` samples of `data`.
    public static func apply(to graph: Graph, pairs: [(String, String)], data: CalibrationData,
                             maximumSamples: Int = 64, options: SessionOptions = SessionOptions()) throws -> Result {
        var graph = graph
        let index = Dictionary(graph.nodes.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        var readers: [String: [Int]] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { readers[input, default: []].append(i) }
        }
        func onlyReader(_ value: String) -> Node? {
            guard let r = readers[value], r.count == 1 else { return nil }
            return graph.nodes[r[0]]
        }

        struct Chain { var conv1: Node; var bound: String?; var conv2: Node }
        var chains: [Chain] = []
        for (first, second) in pairs {
            guard let i = index[first], let j = index[second] else { continue }
            let conv1 = graph.nodes[i], conv2 = graph.nodes[j]
            guard let bias = conv1.input(2), graph.initializers[bias] != nil,
                  let relu = onlyReader(conv1.outputs[0]), relu.opType == "Relu" else { continue }
            var bound: String? = nil
            var last = relu
            if let min = onlyReader(relu.outputs[0]), min.opType == "Min", min.inputs.count == 2,
               let b = min.inputs.first(where: { graph.initializers[$0] != nil }) {
                bound = b
                last = min
            }
            guard conv2.inputs[0] == last.outputs[0], try Self.padsNothing(conv2) else { continue }
            chains.append(Chain(conv1: conv1, bound: bound, conv2: conv2))
        }
        guard !chains.isEmpty else { return Result(graph: graph, pairs: []) }

        // Smallest pre-activation per channel of each Conv1 over the calibration samples.
        let watched = Set(chains.map { $0.conv1.outputs[0] })
        var minima: [String: [Float]] = [:]
        let session = try InferenceSession(graph: graph, options: options)
        for batch in TechniqueData.batches(TechniqueData.first(data, maximumSamples), size: 16) {
            _ = try session.run(batch) { name, value in
                guard watched.contains(name), value.rank >= 2, value.dtype == .float32 else { return nil }
                let channels = value.shape[1], inner = value.shape.dropFirst(2).reduce(1, *)
                let x = value.floats()
                var m = minima[name] ?? [Float](repeating: .infinity, count: channels)
                for n in 0..<value.shape[0] {
                    for c in 0..<channels {
                        let base = (n * channels + c) * inner
                        for k in 0..<inner { m[c] = min(m[c], x[base + k]) }
                    }
                }
                minima[name] = m
                return nil
            }
        }

        var absorbed: [(conv1: String, conv2: String, channels: Int)] = []
        for chain in chains {
            guard let low = minima[chain.conv1.outputs[0]] else { continue }
            let b1Name = chain.conv1.inputs[2], w2Name = chain.conv2.inputs[1]
            var b1 = graph.initializers[b1Name]!.floats()
            var bound = chain.bound.map { graph.initializers[$0]!.floats() }
            guard low.count == b1.count, bound.map({ $0.count == b1.count }) ?? true else { continue }
            let shift: [Float] = low.indices.map { c in
                let c0 = max(0, low[c].isFinite ? low[c] : 0)
                return bound.map { min(c0, max($0[c], 0)) } ?? c0
            }
            let moved = shift.filter { $0 > 0 }.count
            guard moved > 0 else { continue }
            for c in b1.indices { b1[c] -= shift[c] }
            if var b = bound {
                for c in b.indices { b[c] -= shift[c] }
                bound = b
            }
            // b2[o] += Σ over o's input channels i and kernel taps of W2[o, i, taps] c_(group base + i).
            let w2Tensor = graph.initializers[w2Name]!
            let w2 = w2Tensor.floats(), outputs = w2Tensor.shape[0], inputs = w2Tensor.shape[1]
            let taps = w2Tensor.shape.dropFirst(2).reduce(1, *)
            let groups = try chain.conv2.int("group", default: 1)
            let perGroup = outputs / max(groups, 1)
            var b2 = chain.conv2.input(2).flatMap { graph.initializers[$0]?.floats() } ?? [Float](repeating: 0, count: outputs)
            for o in 0..<outputs {
                let base = (o / max(perGroup, 1)) * inputs
                var sum: Float = 0
                for i in 0..<inputs {
                    for t in 0..<taps { sum += w2[(o * inputs + i) * taps + t] * shift[base + i] }
                }
                b2[o] += sum
            }
            graph.initializers[b1Name] = Tensor(shape: graph.initializers[b1Name]!.shape, scalars: b1)
            if let name = chain.bound, let b = bound { graph.initializers[name] = Tensor(shape: graph.initializers[name]!.shape, scalars: b) }
            let b2Name = chain.conv2.input(2) ?? (chain.conv2.outputs[0] + "/absorbed_bias")
            graph.initializers[b2Name] = Tensor(shape: [outputs], scalars: b2)
            if chain.conv2.input(2) == nil, let j = index[chain.conv2.name] { graph.nodes[j].setBias(b2Name) }
            absorbed.append((chain.conv1.name, chain.conv2.name, moved))
        }
        return Result(graph: graph, pairs: absorbed)
    }

    /// True when `conv` reads no padding (explicit zero pads, or auto_pad VALID / NOTSET without pads).
    static func padsNothing(_ conv: Node) throws -> Bool {
        let autoPad = try conv.string("auto_pad", default: "NOTSET")
        guard autoPad == "NOTSET" || autoPad == "VALID" else { return false }
        return try (conv.ints("pads") ?? []).allSatisfy { $0 == 0 }
    }
}
