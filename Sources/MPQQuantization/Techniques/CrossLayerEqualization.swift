import Foundation
import MPQGraph
import MPQRuntime

/// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through
/// Weight Equalization and Bias Correction"): for chains Conv1 -> act -> Conv2
/// with a positively homogeneous act (identity, Relu, Clip(0, c)), output channel i of
/// Conv1 is divided by s_i = sqrt(r1_i r2_i) / r2_i and input channel i of Conv2
/// multiplied by it (r1_i: range of Conv1's output channel i, r2_i: range of
/// Conv2's input channel i), so both end with range sqrt(r1_i r2_i). Depthwise
/// convolutions take part on either side.
///
/// ReLU6 (Clip(0, 6)) is not homogeneous: Clip(x / s, 0, 6) != Clip(x, 0, 6) / s. Rather
/// than skip those chains (most of MobileNetV2) or replace ReLU6 by ReLU (AIMET and the
/// paper do; that changes the function), the Clip becomes Relu followed by Min with a
/// per-channel bound 6 / s_i, which preserves the FP32 function exactly and exports as
/// plain ONNX (the Min output keeps the Clip output's name, so quantizer sites and
/// config overrides keep their names).
public enum CrossLayerEqualization {
    /// The equalized graph and what changed.
    public struct Result: Sendable {
        /// The graph with equalized weights; computes the same FP32 function.
        public var graph: Graph
        /// Equalized pairs (Conv1 name, Conv2 name).
        public var pairs: [(String, String)]
        /// Clip(0, c) activations turned into Relu + per-channel Min.
        public var rewrittenClips: Int
    }

    /// Equalizes every eligible pair, sweeping the chain `iterations` times (chains of three
    /// convolutions, such as MobileNet's expand -> depthwise -> project, converge over sweeps).
    public static func apply(to graph: Graph, iterations: Int = 20) throws -> Result {
        var graph = graph
        var readers: [String: [Int]] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { readers[input, default: []].append(i) }
        }
        let outputs = Set(graph.outputs.map(\.name))
        var weightUses: [String: Int] = [:]
        for node in graph.nodes { for input in node.inputs { weightUses[input, default: 0] += 1 } }

        struct Pair { var first: Int; var activation: Int?; var second: Int }
        func isEqualizableConv(_ node: Node) -> Bool {
            guard node.opType == "Conv", node.domain.isEmpty, let w = node.input(1),
                  let weight = graph.initializers[w], weight.dtype == .float32, weight.rank >= 3,
                  weightUses[w] == 1 else { return false }
            if let b = node.input(2) {
                guard let bias = graph.initializers[b], bias.dtype == .float32, weightUses[b] == 1 else { return false }
            }
            return true
        }
        func clipBounds(_ node: Node) -> (Float, Float)? {
            guard node.opType == "Clip" else { return nil }
            func scalar(_ index: Int) -> Float? {
                guard let name = node.input(index) else { return nil }
                guard let t = graph.initializers[name], t.count == 1, t.dtype == .float32 else { return .nan }
                return t.floats()[0]
            }
            let low = scalar(1) ?? -.infinity, high = scalar(2) ?? .infinity
            guard !low.isNaN, !high.isNaN else { return nil }
            return (low, high)
        }
        func onlyReader(_ value: String) -> Int? {
            guard !outputs.contains(value), let r = readers[value], r.count == 1 else { return nil }
            return r[0]
        }

        var pairs: [Pair] = []
        for (i, node) in graph.nodes.enumerated() where isEqualizableConv(node) {
            guard let next = onlyReader(node.outputs[0]) else { continue }
            var activation: Int? = nil
            var second = next
            let middle = graph.nodes[next]
            if middle.opType == "Relu" || (clipBounds(middle).map { $0.0 == 0 && $0.1 > 0 } ?? false) {
                activation = next
                guard let after = onlyReader(middle.outputs[0]) else { continue }
                second = after
            }
            let conv2 = graph.nodes[second]
            guard isEqualizableConv(conv2), conv2.inputs[0] == (activation.map { graph.nodes[$0].outputs[0] } ?? node.outputs[0]) else { continue }
            let w1 = graph.initializers[node.inputs[1]]!, w2 = graph.initializers[conv2.inputs[1]]!
            let groups2 = try conv2.int("group", default: 1)
            // Conv2 must read each of Conv1's channels: ordinary (group 1) or depthwise (one channel per group).
            guard w1.shape[0] == w2.shape[1] * groups2, groups2 == 1 || (w2.shape[1] == 1 && w2.shape[0] == groups2) else { continue }
            pairs.append(Pair(first: i, activation: activation, second: second))
        }

        // Per-channel Clip bounds, multiplied by each pair's 1 / s as the sweeps go.
        var clipHigh: [Int: [Float]] = [:]
        for pair in pairs {
            guard let a = pair.activation, let (_, high) = clipBounds(graph.nodes[a]) else { continue }
            clipHigh[a] = Array(repeating: high, count: graph.initializers[graph.nodes[pair.first].inputs[1]]!.shape[0])
        }

        var weights: [String: [Float]] = [:]
        func load(_ name: String) -> [Float] { weights[name] ?? graph.initializers[name]!.floats() }
        for _ in 0..<max(iterations, 1) {
            for pair in pairs {
                let conv1 = graph.nodes[pair.first], conv2 = graph.nodes[pair.second]
                let w1Name = conv1.inputs[1], w2Name = conv2.inputs[1]
                let w1Shape = graph.initializers[w1Name]!.shape, w2Shape = graph.initializers[w2Name]!.shape
                var w1 = load(w1Name), w2 = load(w2Name)
                let channels = w1Shape[0], per1 = w1.count / channels
                let depthwise = (try conv2.int("group", default: 1)) > 1
                let o2 = w2Shape[0], inner2 = w2Shape.dropFirst(2).reduce(1, *), in2 = w2Shape[1]
                var r1 = [Float](repeating: 0, count: channels), r2 = r1
                for c in 0..<channels { for j in 0..<per1 { r1[c] = max(r1[c], abs(w1[c * per1 + j])) } }
                if depthwise {
                    for c in 0..<channels { for j in 0..<inner2 { r2[c] = max(r2[c], abs(w2[c * inner2 + j])) } }
                } else {
                    for o in 0..<o2 { for c in 0..<in2 { for j in 0..<inner2 { r2[c] = max(r2[c], abs(w2[(o * in2 + c) * inner2 + j])) } } }
                }
                let s: [Float] = (0..<channels).map { c in
                    guard r1[c] > 0, r2[c] > 0 else { return 1 }
                    let v = (r1[c] * r2[c]).squareRoot() / r2[c]
                    return v.isFinite && v > 0 ? min(max(v, 1e-4), 1e4) : 1
                }
                for c in 0..<channels { for j in 0..<per1 { w1[c * per1 + j] /= s[c] } }
                if depthwise {
                    for c in 0..<channels { for j in 0..<inner2 { w2[c * inner2 + j] *= s[c] } }
                } else {
                    for o in 0..<o2 { for c in 0..<in2 { for j in 0..<inner2 { w2[(o * in2 + c) * inner2 + j] *= s[c] } } }
                }
                weights[w1Name] = w1
                weights[w2Name] = w2
                if let b = conv1.input(2) {
                    var bias = load(b)
                    for c in 0..<channels { bias[c] /= s[c] }
                    weights[b] = bias
                }
                if let a = pair.activation, var high = clipHigh[a] {
                    for c in 0..<channels { high[c] /= s[c] }
                    clipHigh[a] = high
                }
            }
        }
        for (name, values) in weights {
            graph.initializers[name] = Tensor(shape: graph.initializers[name]!.shape, scalars: values)
        }
        let names = pairs.map { (graph.nodes[$0.first].name, graph.nodes[$0.second].name) }
        // Clip(0, c) -> Relu -> Min(bound[C, 1, 1]); the Min writes the Clip's output name.
        var replacements: [Int: [Node]] = [:]
        for (index, high) in clipHigh {
            let clip = graph.nodes[index]
            let relu = clip.outputs[0] + "/cle_relu", bound = clip.outputs[0] + "/cle_bound"
            let rank = graph.initializers[graph.nodes[pairs.first { $0.activation == index }!.first].inputs[1]]!.rank
            graph.initializers[bound] = Tensor(shape: [high.count] + Array(repeating: 1, count: rank - 2), scalars: high)
            replacements[index] = [
                Node(name: clip.name + "/cle_relu", opType: "Relu", inputs: [clip.inputs[0]], outputs: [relu]),
                Node(name: clip.name + "/cle_min", opType: "Min", inputs: [relu, bound], outputs: clip.outputs),
            ]
        }
        if !replacements.isEmpty {
            graph.nodes = graph.nodes.enumerated().flatMap { replacements[$0.offset] ?? [$0.element] }
        }
        return Result(graph: graph, pairs: names, rewrittenClips: replacements.count)
    }
}
