import Foundation
import MPQGraph
import MPQRuntime

/// Per-layer weight refinement on the quantized model's own inputs, in one
/// forward pass of the calibration sample as a single batch: when the pass
/// reaches a Conv / Gemm / MatMul layer, its input (as the quantized model so far
/// computes it: earlier layers already refined, activations fake-quantized) is
/// captured, the layer's weights are refined, and the layer's output is replaced by
/// the refined layer's output, so later layers see the errors that remain and
/// errors do not compound. With `asymmetricReconstruction` (the default) every error below
/// (but AdaRound's on Gemm / MatMul, see `Options`) is E‖(W + ΔW) x̂ − W x‖² against the FP32
/// model's output on its own input x (AdaRound §5), not tr(ΔW H ΔWᵀ) on the quantized input x̂
/// alone (`LayerInputStatistics`): the refined weights also make up for the error the layers
/// before them leave.
///
/// - SeqMSE-style range search: per output channel, the clipping ratio of the weight
///   range (0.40, 0.44, ..., 1.00 of min-max) minimising the layer's output MSE
///   tr(ΔW H ΔWᵀ), H = E[x xᵀ] over sampled input positions.
/// - AdaRound (Nagel et al. 2020): rounding up or down learnt per weight, with the
///   rectified sigmoid h(V) = clip(σ(V)(ζ - γ) + γ, 0, 1), ζ = 1.1, γ = -0.1, loss
///   tr(ΔW H ΔWᵀ) + λ Σ (1 - |2h - 1|^β), λ = 0.01, β annealed 20 -> 2 (cosine) after a
///   20% warm start without the regulariser, Adam on V (as AIMET). H makes every
///   iteration exact over all sampled positions at O K² flops.
/// - GPTQ (Frantar et al. 2022, `GPTQRounding`) for MatMul / Gemm weights: columns rounded in
///   turn, each one's error spread over the rest through H⁻¹; one pass instead of AdaRound's
///   iterations, so it takes AdaRound's place on those layers when both are asked for. A result
///   worse than nearest rounding (possible with the damping) is not kept.
/// - Rows of [N, S, K] Gemm / MatMul inputs that the `attention_mask` input [N, S] marks 0
///   (padding) are left out of H, T and c (AdaRound's excepted, see `Options`): no output reads them.
/// - Empirical bias correction (Nagel et al. 2019): E[y_q] - E[y] per output channel,
///   y_q the quantized-so-far model's layer output, y the FP32 model's, subtracted from
///   the bias (Conv/Gemm bias, or the bias Add after a MatMul; a Conv/Gemm without
///   one gets one). Gemm / MatMul layers over token sequences ([N, S, K] outputs) are left
///   alone: their mean error comes from a few outlier tokens rather than a per-channel bias,
///   and correcting it lowered MiniLM's held-out W8A8 embedding cosine from 0.987 to 0.977
///   (0.925 with the means over unpadded tokens only).
public enum LayerReconstruction {
    /// Which refinements run and their settings.
    public struct Options: Sendable {
        /// Run empirical bias correction; default off.
        public var biasCorrection = false
        /// Run AdaRound; default off.
        public var adaRound = false
        /// Run the per-channel clipping-ratio search (SeqMSE-style); default off.
        public var rangeSearch = false
        /// Run GPTQ on MatMul / Gemm weights (in place of AdaRound there); default off.
        public var gptq = false
        /// Refine layers against the FP32 model's layer output on the FP32 input (AdaRound's
        /// asymmetric reconstruction) rather than on the quantized input; default on. AdaRound on
        /// MatMul / Gemm layers keeps the symmetric target over every row, padding included: a
        /// transformer's unpadded tokens are few beside K, and K rounding choices per row fit them
        /// (MiniLM W4A8 seq-mse,adaround held-out cosine 0.756 asymmetric, 0.921 symmetric on the
        /// unpadded tokens, 0.930 on every row). The range search, one ratio per row, gains from the
        /// asymmetric target on unpadded tokens (MiniLM W4A8 seq-mse 0.933 → 0.944).
        public var asymmetricReconstruction = true
        /// Samples (the first ones of the calibration data) run as one batch.
        public var samples = 64
        /// Input positions sampled per layer for H.
        public var positions = 16_384
        /// AdaRound Adam steps per layer (the first 20% without the regulariser); default 1000.
        public var iterations = 1_000
        /// AdaRound regulariser weight λ; default 0.01.
        public var regularization: Float = 0.01
        /// AdaRound Adam step size; nil: 10 / iterations clamped to [0.001, 0.05].
        public var learningRate: Float? = nil
        /// Clipping ratios of the min-max range the range search tries; default 0.40, 0.44, ..., 1.00.
        public var ratios: [Float] = (0...15).map { 0.4 + Float($0) * 0.04 }
        /// All refinements off, default settings.
        public init() {}
    }

    /// What the pass did to one layer.
    public struct LayerRecord: Sendable {
        /// Node name of the Conv / Gemm / MatMul.
        public var layer: String
        /// Output MSE (asymmetric or tr(ΔW H ΔWᵀ), as the pass ran) with nearest rounding at the
        /// calibrated range.
        public var nearestError: Double
        /// Output MSE after the range search (nil when not run).
        public var rangeSearchError: Double?
        /// Output MSE after AdaRound (nil when not run).
        public var adaRoundError: Double?
        /// Output MSE after GPTQ (nil when not run).
        public var gptqError: Double?
        /// Largest |bias correction|.
        public var biasCorrection: Float?
        /// Bias correction was asked for but left out: a Gemm / MatMul over token sequences
        /// ([N, S, K]), whose mean output error is no per-channel bias (see `LayerReconstruction`).
        public var skippedBiasCorrection = false
        /// Time spent on the layer, seconds.
        public var seconds: Double
    }

    /// The refined graph and per-layer records.
    public struct Result: Sendable {
        /// The graph with refined float weights (and corrected or added biases).
        public var graph: Graph
        /// Weight quantizer parameters the refined weights lie on (override the calibrated ones).
        public var weightParameters: [String: QuantizationParameters]
        /// One record per refined layer, in graph order.
        public var layers: [LayerRecord]
        /// Weights whose float values AdaRound replaced.
        public var roundedWeights: Set<String> = []
        /// The bias initializer each layer's bias correction wrote, by the layer's weight.
        public var correctedBiases: [String: String] = [:]
    }

    struct Layer {
        var node: Node
        var weight: String
        var layout: LayerWeightLayout
        /// Where the bias lives: the node's input 2, or an Add after a MatMul (value name), or nothing yet.
        var bias: String?
        var biasAdd: Int?
        var channelAxis: Int
    }

    /// Refines every Conv / Gemm / MatMul whose weight is a placed site with `parameters` and
    /// read only by it, in one forward pass over the first `options.samples` samples of `data`;
    /// `progress` gets each layer's name as it is done.
    public static func apply(to graph: Graph, placement: QuantizerPlacement, parameters: [String: QuantizationParameters],
                             data: CalibrationData, options: Options, sessionOptions: SessionOptions = SessionOptions(),
                             progress: ((String) -> Void)? = nil) throws -> Result {
        var graph = graph
        var readers: [String: [Int]] = [:], uses: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { readers[input, default: []].append(i); uses[input, default: 0] += 1 }
        }
        let weightSites = Set(placement.weights.map(\.value))
        var layers: [String: Layer] = [:]   // by output value
        for (i, node) in graph.nodes.enumerated() where ["Conv", "Gemm", "MatMul"].contains(node.opType) && node.domain.isEmpty {
            guard let w = node.input(1), weightSites.contains(w), parameters[w] != nil, uses[w] == 1,
                  let weight = graph.initializers[w], let layout = LayerWeightLayout(node: node, weight: weight) else { continue }
            var bias: String? = nil, biasAdd: Int? = nil
            if node.opType == "MatMul" {
                if let r = readers[node.outputs[0]], r.count == 1, graph.nodes[r[0]].opType == "Add" {
                    let add = graph.nodes[r[0]]
                    let other = add.inputs[0] == node.outputs[0] ? add.inputs[1] : add.inputs[0]
                    if let b = graph.initializers[other], b.count == layout.outputs, b.dtype == .float32, uses[other] == 1,
                       b.shape.last == layout.outputs {
                        bias = other
                        biasAdd = r[0]
                    }
                }
            } else if let b = node.input(2) {
                guard let t = graph.initializers[b], t.count == layout.outputs, uses[b] == 1 else { continue }
                bias = b
            }
            _ = i
            layers[node.outputs[0]] = Layer(node: node, weight: w, layout: layout, bias: bias, biasAdd: biasAdd,
                                            channelAxis: node.opType == "Conv" ? 1 : -1)
        }
        let sample = TechniqueData.first(data, options.samples)

        let layerInputs = Set(layers.values.map { $0.node.inputs[0] })
        let inputNames = Set(graph.inputs.map(\.name))
        // A transformer's token mask [N, S]: rows of [N, S, K] layer inputs it marks 0 are padding.
        let tokenMask = sample["attention_mask"].flatMap { $0.rank == 2 ? $0 : nil }

        // The FP32 model's per-channel means of every layer output (bias correction) and every
        // layer's input (the asymmetric target of the weight refinements).
        var referenceMeans: [String: [Double]] = [:], referenceCounts: [String: Int] = [:]
        let asymmetric = options.asymmetricReconstruction && (options.adaRound || options.rangeSearch)
        var referenceInputs: [String: Tensor] = [:]
        let referencedInputs = asymmetric ? layerInputs : []
        if options.biasCorrection || asymmetric {
            var referenceParts: [String: [Tensor]] = [:]
            let session = try InferenceSession(graph: graph, options: sessionOptions)
            for batch in TechniqueData.batches(sample, size: 16) {
                for (name, x) in batch where referencedInputs.contains(name) { referenceParts[name, default: []].append(x) }
                _ = try session.run(batch) { name, value in
                    if referencedInputs.contains(name) { referenceParts[name, default: []].append(value) }
                    guard options.biasCorrection, let layer = layers[name], !isTokenSequence(layer, output: value) else { return nil }
                    let m = channelSums(value, axis: layer.channelAxis)
                    referenceMeans[name] = zip(referenceMeans[name] ?? Array(repeating: 0, count: m.count), m).map { $0 + $1 }
                    referenceCounts[name, default: 0] += value.count / max(1, m.count)
                    return nil
                }
            }
            referenceInputs = try referenceParts.mapValues { try Tensor.concatenate($0, axis: 0) }
            for (name, value) in referenceMeans {
                let perChannel = Double(max(referenceCounts[name] ?? 1, 1))
                referenceMeans[name] = value.map { $0 / perChannel }
            }
        }

        // The quantized model so far: fake-quantized weights; activations quantized in the hook.
        var quantizedGraph = graph
        for site in placement.weights {
            guard let p = parameters[site.value], let w = graph.initializers[site.value] else { continue }
            quantizedGraph.initializers[site.value] = try w.fakeQuantized(p)
        }
        var activationParameters: [String: QuantizationParameters] = [:]
        for site in placement.activations { if let p = parameters[site.value] { activationParameters[site.value] = p } }
        var captured: [String: Tensor] = [:]
        var feeds = sample
        for (name, x) in sample where inputNames.contains(name) {
            if let p = activationParameters[name] { feeds[name] = try x.fakeQuantized(p) }
            if layerInputs.contains(name) { captured[name] = feeds[name] }
        }

        var records: [LayerRecord] = []
        var weightParameters: [String: QuantizationParameters] = [:]
        var newWeights: [String: Tensor] = [:], newBiases: [String: Tensor] = [:]
        var addedBias: [String: String] = [:]    // layer output -> new bias initializer
        var correctedBiases: [String: String] = [:]
        let session = try InferenceSession(graph: quantizedGraph, options: sessionOptions)
        var seed: UInt64 = 1
        _ = try session.run(feeds) { name, value in
            var result: Tensor? = nil
            if let layer = layers[name], let x = captured[layer.node.inputs[0]] {
                let start = Date()
                seed += 1
                var record = LayerRecord(layer: layer.node.name, nearestError: 0, seconds: 0)
                var p = parameters[layer.weight]!
                let original = graph.initializers[layer.weight]!
                var weight = original
                let gptq = options.gptq && layer.node.opType != "Conv"
                let w = layer.layout.matrix(original.floats())
                let reference = referenceInputs[layer.node.inputs[0]]
                let tokenRows = rowMask(tokenMask, of: x)
                if options.adaRound || options.rangeSearch || gptq,
                   let stats = try LayerInputStatistics(node: layer.node, layout: layer.layout, input: x,
                                                        maximumSamples: options.positions, seed: seed,
                                                        reference: reference, weights: reference == nil ? nil : w,
                                                        tokenMask: tokenRows),
                   try TechniqueMath.elementGrid(p, shape: original.shape) != nil {
                    func error(_ q: QuantizationParameters) throws -> [Double] {
                        let wq = layer.layout.matrix(try original.fakeQuantized(q).floats())
                        return stats.rowErrors(zip(wq, w).map { $0 - $1 }, layout: layer.layout)
                    }
                    let nearest = try error(p)
                    record.nearestError = nearest.reduce(0, +)
                    if options.rangeSearch {
                        p = try searchRanges(p, original: original, layout: layer.layout, nearest: nearest, ratios: options.ratios, error: error)
                        record.rangeSearchError = try error(p).reduce(0, +)
                    }
                    if gptq || options.adaRound {
                        // The grid of the (range-searched) parameters, in matrix order, for either rounding.
                        let grid = try TechniqueMath.elementGrid(p, shape: original.shape)!
                        let scale = layer.layout.matrix(grid.scale), low = layer.layout.matrix(grid.low)
                        let high = layer.layout.matrix(grid.high)
                        if gptq {
                            if let rounded = GPTQRounding.round(w, scale: scale, low: low, high: high, stats: stats, layout: layer.layout) {
                                let gptqError = stats.rowErrors(zip(rounded, w).map { $0 - $1 }, layout: layer.layout).reduce(0, +)
                                record.gptqError = gptqError
                                if gptqError < (record.rangeSearchError ?? record.nearestError) {
                                    weight = Tensor(shape: original.shape, scalars: layer.layout.stored(rounded))
                                    newWeights[layer.weight] = weight
                                }
                            }
                        } else {
                            // AdaRound's K free choices per row fit the rows it sees: on Gemm / MatMul it takes
                            // every row (a transformer's padding too) and the symmetric target (see Options).
                            let learned = layer.node.opType == "Conv" || (stats.target == nil && tokenRows == nil) ? stats
                                : try LayerInputStatistics(node: layer.node, layout: layer.layout, input: x,
                                                           maximumSamples: options.positions, seed: seed) ?? stats
                            let rounded = adaRound(w, scale: scale, low: low, high: high, stats: learned, layout: layer.layout, options: options)
                            weight = Tensor(shape: original.shape, scalars: layer.layout.stored(rounded))
                            newWeights[layer.weight] = weight
                            record.adaRoundError = stats.rowErrors(zip(rounded, w).map { $0 - $1 }, layout: layer.layout).reduce(0, +)
                        }
                    }
                    weightParameters[layer.weight] = p
                }
                var output = value
                if weightParameters[layer.weight] != nil {
                    output = try layerOutput(layer, input: x, weight: try weight.fakeQuantized(p), graph: graph,
                                             bias: layer.node.input(2).flatMap { graph.initializers[$0] }, options: sessionOptions)
                }
                let tokenSequence = isTokenSequence(layer, output: output)
                record.skippedBiasCorrection = options.biasCorrection && tokenSequence
                if options.biasCorrection, !tokenSequence, let reference = referenceMeans[name],
                   layer.bias != nil || layer.node.opType != "MatMul" {
                    let perChannel = Double(max(1, output.count / max(1, reference.count)))
                    let means = channelSums(output, axis: layer.channelAxis).map { $0 / perChannel }
                    let delta = zip(means, reference).map { Float($0 - $1) }
                    output = subtractChannels(output, delta, axis: layer.channelAxis)
                    let biasName = layer.bias ?? (layer.node.outputs[0] + "/bias_correction")
                    let current = (layer.bias.flatMap { graph.initializers[$0] })?.floats() ?? Array(repeating: 0, count: delta.count)
                    let shape = layer.bias.flatMap { graph.initializers[$0]?.shape } ?? [delta.count]
                    newBiases[biasName] = Tensor(shape: shape, scalars: zip(current, delta).map { $0 - $1 })
                    if layer.bias == nil && layer.node.opType != "MatMul" { addedBias[name] = biasName }
                    correctedBiases[layer.weight] = biasName
                    record.biasCorrection = delta.map(abs).max()
                }
                record.seconds = Date().timeIntervalSince(start)
                records.append(record)
                progress?(layer.node.name)
                result = output
            }
            if let p = activationParameters[name], !inputNames.contains(name) {
                result = try (result ?? value).fakeQuantized(p)
            }
            if layerInputs.contains(name) { captured[name] = result ?? value }
            return result
        }

        for (name, w) in newWeights { graph.initializers[name] = w }
        for (name, b) in newBiases { graph.initializers[name] = b }
        for index in graph.nodes.indices {
            guard let bias = addedBias[graph.nodes[index].outputs[0]] else { continue }
            graph.nodes[index].setBias(bias)
        }
        return Result(graph: graph, weightParameters: weightParameters, layers: records, roundedWeights: Set(newWeights.keys),
                      correctedBiases: correctedBiases)
    }

    /// `graph` with a zero bias (named `OUTPUT/bias_correction`, as the pass names the biases it adds) on every
    /// Conv / Gemm whose weight is a placed site and that has none: the same function, and the same structure
    /// for every weight format a search refines, so that each format's corrected biases are values of one graph.
    public static func addingBiases(to graph: Graph, placement: QuantizerPlacement) -> Graph {
        var graph = graph
        let weightSites = Set(placement.weights.map(\.value))
        for index in graph.nodes.indices {
            let node = graph.nodes[index]
            guard ["Conv", "Gemm"].contains(node.opType), node.domain.isEmpty, node.input(2) == nil,
                  let w = node.input(1), weightSites.contains(w), let weight = graph.initializers[w],
                  let layout = LayerWeightLayout(node: node, weight: weight) else { continue }
            let name = node.outputs[0] + "/bias_correction"
            graph.initializers[name] = Tensor(shape: [layout.outputs], scalars: [Float](repeating: 0, count: layout.outputs))
            graph.nodes[index].setBias(name)
        }
        return graph
    }

    /// Per output row, the ratio of the calibrated range with the lowest output error (per-tensor: one ratio).
    static func searchRanges(_ p: QuantizationParameters, original: Tensor, layout: LayerWeightLayout, nearest: [Double],
                             ratios: [Float], error: (QuantizationParameters) throws -> [Double]) throws -> QuantizationParameters {
        let entries = try TechniqueMath.elementEntries(p, shape: original.shape)
        // The output row of each parameter entry.
        var entryRow = [Int](repeating: 0, count: p.scales.count)
        let rowOfElement = layout.stored((0..<layout.outputs).flatMap { Array(repeating: Float($0), count: layout.reduction) })
        for (element, entry) in entries.enumerated() { entryRow[entry] = Int(rowOfElement[element]) }
        let perTensor: Bool = { if case .perTensor = p.granularity { return true } else { return false } }()
        var bestRatio = [Float](repeating: 1, count: layout.outputs)
        var bestError = nearest
        var bestTotal = nearest.reduce(0, +)
        for ratio in ratios where ratio != 1 {
            let candidate = QuantizationParameters(format: p.format, granularity: p.granularity,
                                                   minimums: p.minimums.map { $0 * ratio }, maximums: p.maximums.map { $0 * ratio })
            let e = try error(candidate)
            if perTensor {
                let total = e.reduce(0, +)
                if total < bestTotal { bestTotal = total; bestRatio = Array(repeating: ratio, count: layout.outputs) }
            } else {
                for o in 0..<layout.outputs where e[o] < bestError[o] { bestError[o] = e[o]; bestRatio[o] = ratio }
            }
        }
        let ratioOfEntry = entryRow.map { bestRatio[$0] }
        return QuantizationParameters(format: p.format, granularity: p.granularity,
                                      minimums: zip(p.minimums, ratioOfEntry).map { $0 * $1 },
                                      maximums: zip(p.maximums, ratioOfEntry).map { $0 * $1 })
    }

    /// A Gemm / MatMul over token sequences: bias correction leaves it alone.
    static func isTokenSequence(_ layer: Layer, output: Tensor) -> Bool {
        layer.node.opType != "Conv" && output.rank >= 3
    }

    /// The rows of a [N, S, K] layer input that `mask` ([N, S]) keeps; nil for any other shape.
    static func rowMask(_ mask: Tensor?, of x: Tensor) -> [Bool]? {
        guard let mask, x.rank == 3, Array(x.shape.prefix(2)) == mask.shape else { return nil }
        return mask.integers().map { $0 != 0 }
    }

    /// AdaRound of a [O, K] weight matrix on its grid; returns the rounded weights (on the grid).
    static func adaRound(_ w: [Float], scale: [Float], low: [Float], high: [Float], stats: LayerInputStatistics,
                         layout: LayerWeightLayout, options: Options) -> [Float] {
        let count = w.count
        let zeta: Float = 1.1, gamma: Float = -0.1
        var floorQ = [Float](repeating: 0, count: count), v = floorQ
        for i in 0..<count {
            let x = w[i] / scale[i]
            floorQ[i] = x.rounded(.down)
            let rest = min(max(x - floorQ[i], 0.01), 0.99)
            v[i] = -log((zeta - gamma) / (rest - gamma) - 1)
        }
        let iterations = max(options.iterations, 1)
        let lr = options.learningRate ?? max(1e-3, min(0.05, 10 / Float(iterations)))
        var m1 = [Float](repeating: 0, count: count), m2 = m1, delta = m1, product = m1, h = m1, sig = m1
        let beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8
        let warm = Int(Float(iterations) * 0.2)
        for t in 0..<iterations {
            for i in 0..<count {
                let s = 1 / (1 + exp(-v[i]))
                sig[i] = s
                h[i] = min(max(s * (zeta - gamma) + gamma, 0), 1)
                let q = min(max(floorQ[i] + h[i], low[i]), high[i])
                delta[i] = q * scale[i] - w[i]
            }
            delta.withUnsafeBufferPointer { d in
                product.withUnsafeMutableBufferPointer { p in
                    stats.multiply(d.baseAddress!, alpha: 2, into: p.baseAddress!, layout: layout)
                }
            }
            if let target = stats.target { for i in 0..<count { product[i] -= 2 * target[i] } }
            let regularized = t >= warm
            var beta: Float = 20
            if regularized {
                let relative = Float(t - warm) / Float(max(1, iterations - warm))
                beta = 2 + 0.5 * 18 * (1 + cos(relative * .pi))
            }
            let step = lr * (1 - pow(beta2, Float(t + 1))).squareRoot() / (1 - pow(beta1, Float(t + 1)))
            for i in 0..<count {
                let raw = sig[i] * (zeta - gamma) + gamma
                guard raw > 0 && raw < 1 else { continue }
                let unclamped = floorQ[i] + h[i]
                var grad: Float = 0
                if unclamped >= low[i] && unclamped <= high[i] { grad = product[i] * scale[i] }
                if regularized {
                    let u = 2 * h[i] - 1
                    let sign: Float = u >= 0 ? 1 : -1
                    grad += options.regularization * (-beta * pow(abs(u), beta - 1) * sign * 2)
                }
                grad *= (zeta - gamma) * sig[i] * (1 - sig[i])
                m1[i] = beta1 * m1[i] + (1 - beta1) * grad
                m2[i] = beta2 * m2[i] + (1 - beta2) * grad * grad
                v[i] -= step * m1[i] / (m2[i].squareRoot() + eps)
            }
        }
        return (0..<count).map { i in
            let s = 1 / (1 + exp(-v[i]))
            let up: Float = s * (zeta - gamma) + gamma >= 0.5 ? 1 : 0
            return min(max(floorQ[i] + up, low[i]), high[i]) * scale[i]
        }
    }

    /// The layer's output for `input` with `weight` (a one-node graph).
    static func layerOutput(_ layer: Layer, input: Tensor, weight: Tensor, graph: Graph, bias: Tensor?,
                            options: SessionOptions) throws -> Tensor {
        var node = layer.node
        node.inputs[0] = "x"
        node.inputs[1] = "w"
        var initializers = ["w": weight]
        if let bias, node.input(2) != nil { node.inputs[2] = "b"; initializers["b"] = bias }
        node.outputs = ["y"]
        let mini = Graph(name: "layer", nodes: [node], inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)],
                         outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)], initializers: initializers, opset: graph.opset)
        return try InferenceSession(graph: mini, options: options).run(["x": input])["y"]!
    }

    /// Sums per channel (`axis` 1 for NCHW, -1 for the last axis).
    static func channelSums(_ t: Tensor, axis: Int) -> [Double] {
        guard t.dtype == .float32, t.rank >= 1 else { return [] }
        let a = axis < 0 ? t.rank + axis : axis
        let channels = t.shape[a], inner = t.shape[(a + 1)...].reduce(1, *)
        var sums = [Double](repeating: 0, count: channels)
        t.withUnsafeBufferPointer(as: Float.self) { x in
            let outer = x.count / max(1, channels * inner)
            for o in 0..<outer {
                for c in 0..<channels {
                    var s: Float = 0
                    let base = (o * channels + c) * inner
                    for j in 0..<inner { s += x[base + j] }
                    sums[c] += Double(s)
                }
            }
        }
        return sums
    }

    static func subtractChannels(_ t: Tensor, _ delta: [Float], axis: Int) -> Tensor {
        let result = t.copy()
        let a = axis < 0 ? t.rank + axis : axis
        let channels = t.shape[a], inner = t.shape[(a + 1)...].reduce(1, *)
        result.withUnsafeMutableBufferPointer(as: Float.self) { x in
            let outer = x.count / max(1, channels * inner)
            for o in 0..<outer { for c in 0..<channels {
                let base = (o * channels + c) * inner
                for j in 0..<inner { x[base + j] -= delta[c] }
            } }
        }
        return result
    }
}
