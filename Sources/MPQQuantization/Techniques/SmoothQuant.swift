import Foundation
import MPQGraph
import MPQRuntime

/// SmoothQuant (Xiao et al. 2023): activation outliers of a LayerNormalization's
/// output move into the weights of the MatMuls reading it. Channel j of the
/// LayerNorm output is divided by s_j = max|X_j|^α / max|W_j|^(1-α) (folded into
/// the LayerNorm's scale and bias) and row j of every reading MatMul's weight
/// [K, N] multiplied by it. Readers other than those MatMuls (a transformer's
/// residual Add, a graph output) read the original value again through a
/// per-channel Mul by s, so the FP32 function is preserved. α is chosen per
/// LayerNorm from `alphas` by the quantized output error of its MatMuls on
/// calibration rows (W and X quantized with the configured formats; "no smoothing"
/// competes too, so the proxy never gets worse).
public enum SmoothQuant {
    /// The outcome at one smoothing candidate (a LayerNorm and the MatMuls reading it).
    public struct Smoothed: Sendable {
        /// The LayerNormalization (or Mul by a constant) whose output is smoothed.
        public var layerNorm: String
        /// The α chosen; nil when no α beat "no smoothing" and the group was left unchanged.
        public var alpha: Float?
        /// Number of MatMuls reading the smoothed output.
        public var matMuls: Int
        /// Relative output error of the MatMuls before and after, on calibration rows.
        public var errorBefore: Double
        /// Relative output error after smoothing with `alpha` (equals `errorBefore` when `alpha` is nil).
        public var errorAfter: Double
    }

    /// Smooths every LayerNorm -> MatMul group of `graph`, picking α from `alphas` on at most
    /// `maximumRows` activation rows of the first `maximumSamples` samples of `data`.
    /// Returns the FP32-equivalent graph and one `Smoothed` per candidate group.
    public static func apply(to graph: Graph, config: QuantizationConfig, data: CalibrationData,
                             alphas: [Float] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8], maximumRows: Int = 2048,
                             maximumSamples: Int = 64, options: SessionOptions = SessionOptions())
        throws -> (graph: Graph, smoothed: [Smoothed]) {
        var graph = graph
        var readers: [String: [Int]] = [:], uses: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { readers[input, default: []].append(i); uses[input, default: 0] += 1 }
        }
        struct Candidate { var norm: Int; var matMuls: [Int]; var others: [Int] }
        var candidates: [Candidate] = []
        for (i, node) in graph.nodes.enumerated() where node.domain.isEmpty {
            if node.opType == "LayerNormalization" {
                guard let scaleName = node.input(1), let scale = graph.initializers[scaleName], scale.rank == 1,
                      scale.dtype == .float32, uses[scaleName] == 1, node.outputs.count >= 1 else { continue }
                if let b = node.input(2) {
                    guard let bias = graph.initializers[b], bias.shape == scale.shape, uses[b] == 1 else { continue }
                }
                let axis = try node.int("axis", default: -1)
                guard axis == -1 else { continue }
            } else if node.opType == "Mul", node.inputs.count == 2 {
                // x * c with a constant c (scalar or per-channel), e.g. GELU's final * 0.5: 1 / s folds into c.
                guard let c = constantOperand(node, graph: graph), uses[node.inputs[c]] == 1,
                      let t = graph.initializers[node.inputs[c]], t.dtype == .float32, t.shape.dropLast().allSatisfy({ $0 == 1 }),
                      graph.initializers[node.inputs[1 - c]] == nil else { continue }
            } else {
                continue
            }
            var matMuls: [Int] = [], others: [Int] = []
            for r in readers[node.outputs[0]] ?? [] {
                let reader = graph.nodes[r]
                if reader.opType == "MatMul", reader.inputs[0] == node.outputs[0], reader.inputs[1] != node.outputs[0],
                   let w = graph.initializers[reader.inputs[1]], w.rank == 2, w.dtype == .float32,
                   uses[reader.inputs[1]] == 1 {
                    matMuls.append(r)
                } else {
                    others.append(r)
                }
            }
            let widths = Set(matMuls.map { graph.initializers[graph.nodes[$0].inputs[1]]!.shape[0] })
            if node.opType == "Mul", let c = constantOperand(node, graph: graph),
               let t = graph.initializers[node.inputs[c]], t.count != 1, !widths.contains(t.count) { continue }
            if node.opType == "LayerNormalization", !widths.contains(graph.initializers[node.inputs[1]]!.count) { continue }
            if !matMuls.isEmpty, widths.count == 1 { candidates.append(Candidate(norm: i, matMuls: matMuls, others: others)) }
        }
        guard !candidates.isEmpty else { return (graph, []) }

        // Rows of each LayerNorm output from the FP32 model.
        let watched = Dictionary(uniqueKeysWithValues: candidates.map { (graph.nodes[$0.norm].outputs[0], $0.norm) })
        var rows: [String: [Float]] = [:], absMax: [String: [Float]] = [:]
        let session = try InferenceSession(graph: graph, options: options)
        let sample = TechniqueData.first(data, maximumSamples)
        var rng = SplitMix64(seed: 7)
        let batches = TechniqueData.batches(sample, size: 16)
        for batch in batches {
            _ = try session.run(batch) { name, value in
                guard watched[name] != nil, value.dtype == .float32, let k = value.shape.last, k > 0 else { return nil }
                let x = value.floats(), n = x.count / k
                var m = absMax[name] ?? [Float](repeating: 0, count: k)
                for r in 0..<n { for j in 0..<k { m[j] = max(m[j], abs(x[r * k + j])) } }
                absMax[name] = m
                var kept = rows[name] ?? []
                let take = min(n, maximumRows / batches.count + 1)
                for _ in 0..<take where kept.count / k < maximumRows {
                    let r = Int(rng.next() % UInt64(n))
                    kept += x[(r * k)..<(r * k + k)]
                }
                rows[name] = kept
                return nil
            }
        }

        var results: [Smoothed] = []
        var newNodes: [Int: [Node]] = [:]
        for candidate in candidates {
            let norm = graph.nodes[candidate.norm]
            let name = norm.outputs[0]
            guard let x = rows[name], let m = absMax[name] else { continue }
            let k = m.count
            let weights = candidate.matMuls.map { graph.initializers[graph.nodes[$0].inputs[1]]! }
            let readers = zip(candidate.matMuls, weights).map { node, w in
                Reader(rows: x, weight: w, site: QuantizerPlacement.Site(value: graph.nodes[node].inputs[1], role: .weight,
                                                                         channelAxis: 1, reductionAxis: 0, consumers: []))
            }
            let best = try bestScales(activationMaxima: m, readers: readers, alphas: alphas, config: config)
            results.append(Smoothed(layerNorm: norm.name, alpha: best.alpha, matMuls: candidate.matMuls.count,
                                    errorBefore: best.before, errorAfter: best.after))
            guard best.alpha != nil else { continue }
            let s = best.scales
            // Fold 1 / s into the LayerNorm (or the Mul's constant), s into the MatMul rows.
            if norm.opType == "LayerNormalization" {
                var gamma = graph.initializers[norm.inputs[1]]!.floats()
                for j in 0..<k { gamma[j] /= s[j] }
                graph.initializers[norm.inputs[1]] = Tensor(shape: [k], scalars: gamma)
                if let b = norm.input(2) {
                    var beta = graph.initializers[b]!.floats()
                    for j in 0..<k { beta[j] /= s[j] }
                    graph.initializers[b] = Tensor(shape: [k], scalars: beta)
                }
            } else if let c = constantOperand(norm, graph: graph) {
                let t = graph.initializers[norm.inputs[c]]!
                let values = t.floats()
                let folded = (0..<k).map { j in (values.count == 1 ? values[0] : values[j]) / s[j] }
                graph.initializers[norm.inputs[c]] = Tensor(shape: Array(t.shape.dropLast()) + [k], scalars: folded)
            }
            for (index, w) in weights.enumerated() {
                let cols = w.shape[1]
                var v = w.floats()
                for j in 0..<k { for c in 0..<cols { v[j * cols + c] *= s[j] } }
                graph.initializers[graph.nodes[candidate.matMuls[index]].inputs[1]] = Tensor(shape: w.shape, scalars: v)
            }
            // The smoothed value gets a new name read by the MatMuls; a Mul restores the original for everyone else.
            let smoothed = name + "/smoothed"
            var renamedNorm = norm
            renamedNorm.outputs[0] = smoothed
            for r in candidate.matMuls { graph.nodes[r].inputs[0] = smoothed }
            var replacement = [renamedNorm]
            let isOutput = graph.outputs.contains { $0.name == name }
            if !candidate.others.isEmpty || isOutput {
                let factor = name + "/smoothquant_scale"
                graph.initializers[factor] = Tensor(shape: [k], scalars: s)
                replacement.append(Node(name: norm.name + "/smoothquant_restore", opType: "Mul", inputs: [smoothed, factor],
                                        outputs: [name]))
            }
            newNodes[candidate.norm] = replacement
        }
        if !newNodes.isEmpty {
            graph.nodes = graph.nodes.enumerated().flatMap { newNodes[$0.offset] ?? [$0.element] }
            try graph.sortTopologically()
        }
        return (graph, results)
    }

    /// One weight reading the smoothed activation rows, with its FP32 product X W (the same for
    /// every migration strength, so formed once).
    struct Reader {
        /// Activation rows [n, K] it reads (FP32).
        let rows: [Float]
        let weight: Tensor
        /// The weight's quantizer site: `reductionAxis` 0 for a [K, N] MatMul weight, 1 for an [N, K] (1x1 Conv) one.
        let site: QuantizerPlacement.Site
        /// X W, [n, N].
        let reference: [Float]
        /// Σ (X W)².
        let signal: Double

        init(rows: [Float], weight: Tensor, site: QuantizerPlacement.Site) {
            self.rows = rows
            self.weight = weight
            self.site = site
            reference = Self.product(rows, weight.floats(), reduction: weight.shape[site.reductionAxis != 0 ? 1 : 0], site: site)
            signal = reference.reduce(0) { $0 + Double($1) * Double($1) }
        }

        /// X [n, K] times a weight laid out as `site` says, [n, N].
        static func product(_ x: [Float], _ w: [Float], reduction k: Int, site: QuantizerPlacement.Site) -> [Float] {
            let n = x.count / k, columns = w.count / k, transposed = site.reductionAxis != 0
            var result = [Float](repeating: 0, count: n * columns)
            x.withUnsafeBufferPointer { a in w.withUnsafeBufferPointer { b in result.withUnsafeMutableBufferPointer { c in
                TechniqueMath.gemm(transB: transposed, m: n, n: columns, k: k, a.baseAddress!, lda: k, b.baseAddress!,
                                   ldb: transposed ? k : columns, c.baseAddress!, ldc: columns)
            } } }
            return result
        }
    }

    /// The migration strength from `alphas` (nil: none beats no smoothing) with the lowest relative quantized
    /// output error over `readers`, s_j = max|X_j|^α / max|W_j|^(1-α), and the errors before and after.
    static func bestScales(activationMaxima m: [Float], readers: [Reader], alphas: [Float], config: QuantizationConfig) throws
        -> (alpha: Float?, scales: [Float], before: Double, after: Double) {
        let k = m.count
        var wMax = [Float](repeating: 0, count: k)
        for reader in readers {
            let v = reader.weight.floats(), columns = v.count / k, transposed = reader.site.reductionAxis != 0
            for j in 0..<k { for c in 0..<columns { wMax[j] = max(wMax[j], abs(v[transposed ? c * k + j : j * columns + c])) } }
        }
        func scales(_ alpha: Float) -> [Float] {
            (0..<k).map { j in
                guard m[j] > 0, wMax[j] > 0 else { return 1 }
                let s = pow(m[j], alpha) / pow(wMax[j], 1 - alpha)
                return s.isFinite && s > 0 ? min(max(s, 1e-5), 1e5) : 1
            }
        }
        let signal = readers.reduce(0) { $0 + $1.signal }
        func error(_ s: [Float]) throws -> Double {
            let noise = try readers.reduce(0) { $0 + (try smoothedProductError(of: $1, scales: s, config: config)) }
            return signal > 0 ? noise / signal : noise
        }
        let before = try error([Float](repeating: 1, count: k))
        var best: (alpha: Float?, scales: [Float], before: Double, after: Double) = (nil, [], before, before)
        for alpha in alphas {
            let s = scales(alpha)
            let e = try error(s)
            if e < best.after { best = (alpha, s, before, e) }
        }
        return best
    }

    /// Σ (X W − Q(X / s) Q(s W))² for `reader`'s rows X [n, K] (K = s.count) and weight, both quantized
    /// with `config`'s formats (activations per tensor over the rows' min-max).
    static func smoothedProductError(of reader: Reader, scales s: [Float], config: QuantizationConfig) throws -> Double {
        let k = s.count, n = reader.rows.count / k, columns = reader.weight.count / k
        let transposed = reader.site.reductionAxis != 0
        var xs = reader.rows
        for r in 0..<n { for j in 0..<k { xs[r * k + j] /= s[j] } }
        let xq = try fakeQuantizedActivation(xs, shape: [n, k], config: config)
        var ws = reader.weight.floats()
        for j in 0..<k { for c in 0..<columns { ws[transposed ? c * k + j : j * columns + c] *= s[j] } }
        let wq = try fakeQuantizedWeight(Tensor(shape: reader.weight.shape, scalars: ws), site: reader.site, config: config)
        let quantized = Reader.product(xq, wq, reduction: k, site: reader.site)
        var noise = 0.0
        for (r, q) in zip(reader.reference, quantized) { noise += Double(r - q) * Double(r - q) }
        return noise
    }

    /// The index (0 or 1) of a Mul's constant float operand.
    static func constantOperand(_ node: Node, graph: Graph) -> Int? {
        if let t = graph.initializers[node.inputs[1]], t.dtype == .float32 { return 1 }
        if let t = graph.initializers[node.inputs[0]], t.dtype == .float32 { return 0 }
        return nil
    }

    /// Rows quantized per tensor with the configured activation format, min-max range.
    static func fakeQuantizedActivation(_ x: [Float], shape: [Int], config: QuantizationConfig) throws -> [Float] {
        let format = config.activations
        let low = x.min() ?? 0, high = x.max() ?? 0
        let p = QuantizationParameters(format: format, granularity: .perTensor, minimums: [low], maximums: [high])
        return try Tensor(shape: shape, scalars: x).fakeQuantized(p).floats()
    }

    /// A weight quantized as the calibrator would quantize it.
    static func fakeQuantizedWeight(_ w: Tensor, site: QuantizerPlacement.Site, config: QuantizationConfig) throws -> [Float] {
        let format = config.format(for: site)
        let granularity = QuantizationCalibrator.weightGranularity(config.weightGranularity, site: site, weight: w)
        let (axis, group): (Int?, Int?) = {
            switch granularity {
            case .perTensor: return (nil, nil)
            case .perChannel(let axis): return (axis, nil)
            case .perGroup(let axis, let size): return (axis, size)
            }
        }()
        let ranges = try WeightRanges.ranges(of: w, method: config.weightRange, axis: axis, groupSize: group,
                                             levels: format.levels, symmetric: format.isSymmetric)
        let p = QuantizationParameters(format: format, granularity: granularity, minimums: ranges.minimums, maximums: ranges.maximums)
        return try w.fakeQuantized(p).floats()
    }
}

enum TechniqueData {
    /// `feeds` split along axis 0 into batches of at most `size`.
    static func batches(_ feeds: [String: Tensor], size: Int) -> [[String: Tensor]] {
        let count = feeds.values.first?.shape.first ?? 0
        return stride(from: 0, to: count, by: max(size, 1)).map { start in
            feeds.mapValues { $0.rows(start..<min(start + size, count)) }
        }
    }

    /// The first `count` samples of `data`.
    static func first(_ data: CalibrationData, _ count: Int) -> [String: Tensor] {
        data.inputs.mapValues { $0.rows(0..<min(count, data.count)) }
    }
}
