import Foundation

/// A model with quantizers attached: weights replaced by their quantize-
/// dequantized values, activations quantize-dequantized by `FakeQuantize`
/// nodes as they are computed. This is what the search methods score, and
/// what the exported QDQ model computes in ONNX Runtime.
public final class QuantizedModel: @unchecked Sendable {
    public let original: Graph
    public let placement: QuantizerPlacement
    public let config: QuantizationConfig
    /// Parameters of every site, by value name.
    public let parameters: [String: QuantizationParameters]
    /// The graph with quantize-dequantized weights.
    public let graph: Graph
    /// `graph` with a `FakeQuantize` node after every activation site: what
    /// `run` executes, with operator fusion (a site's consumers read the
    /// quantized value under the site's name; a computed site's float value is
    /// renamed `NAME/float`, a graph input's quantized value `NAME/quantized`).
    public let simulationGraph: Graph
    /// What the deployment target changed in the requested configuration (`DeploymentTarget.adapted`),
    /// carried into report.json.
    public var deploymentNotes: [String] = []
    /// The FP32 model to compare with when `original` is a transformed one whose float weights
    /// differ (`QuantizationTechniques`: AdaRound, bias correction); nil: `original`.
    public var reference: Graph?
    /// What the quantization techniques did (`QuantizationTechniques.Report.notes`), for report.json.
    public var techniqueNotes: [String] = []
    private let session: InferenceSession
    private let simulation: InferenceSession
    private let inputSites: [String: QuantizationParameters]
    private let computedSites: [String: QuantizationParameters]

    public init(graph original: Graph, placement: QuantizerPlacement, config: QuantizationConfig,
                parameters: [String: QuantizationParameters], options: SessionOptions = SessionOptions()) throws {
        self.original = original
        self.placement = placement
        self.config = config
        self.parameters = parameters
        var graph = original
        for site in placement.weights {
            guard let p = parameters[site.value], let weight = original.initializers[site.value] else { continue }
            graph.initializers[site.value] = try weight.fakeQuantized(p)
        }
        self.graph = graph
        session = try InferenceSession(graph: graph, options: options)
        let inputs = Set(original.inputs.map(\.name))
        var inputSites: [String: QuantizationParameters] = [:], computedSites: [String: QuantizationParameters] = [:]
        for site in placement.activations {
            guard let p = parameters[site.value] else { continue }
            if inputs.contains(site.value) { inputSites[site.value] = p } else { computedSites[site.value] = p }
        }
        self.inputSites = inputSites
        self.computedSites = computedSites
        simulationGraph = graph.insertingFakeQuantizers(inputs: inputSites, computed: computedSites)
        simulation = try InferenceSession(graph: simulationGraph, options: options)
    }


    /// Runs the quantized model. `observe` sees each activation site's value
    /// before and after quantization and may return a replacement for the
    /// quantized value (used to check each quantizer against another runtime);
    /// with it, the graph runs unfused, quantizing through value hooks.
    public func run(_ feeds: [String: Tensor],
                    observe: ((_ site: String, _ original: Tensor, _ quantized: Tensor) throws -> Tensor?)? = nil)
        throws -> [String: Tensor] {
        guard let observe else { return try simulation.run(feeds) }
        var quantizedFeeds = feeds
        for (name, p) in inputSites {
            guard let x = feeds[name] else { continue }
            let q = try x.fakeQuantized(p)
            quantizedFeeds[name] = try observe(name, x, q) ?? q
        }
        let sites = computedSites
        return try session.run(quantizedFeeds) { name, value in
            guard let p = sites[name] else { return nil }
            let q = try value.fakeQuantized(p)
            return try observe(name, value, q) ?? q
        }
    }
}

/// Computes quantization parameters: activation ranges from calibration data
/// (streamed batch by batch through `RangeObserver`s), weight ranges from the weights —
/// `CandidateCalibration` (the searches' calibration) with one format per site.
public enum QuantizationCalibrator {
    public static func parameters(
        graph: Graph, placement: QuantizerPlacement, config: QuantizationConfig, data: CalibrationData,
        batchSize: Int = 16, options: SessionOptions = SessionOptions(),
        progress: ((_ done: Int, _ total: Int) -> Void)? = nil
    ) throws -> [String: QuantizationParameters] {
        let calibration = try CandidateCalibration(
            graph: graph, placement: placement, data: data, batchSize: batchSize, activationRange: config.activationRange,
            weightRange: config.weightRange, weightGranularity: config.weightGranularity, options: options, keepsOutputs: false,
            progress: progress)
        var result: [String: QuantizationParameters] = [:]
        for site in placement.weights + placement.activations where result[site.value] == nil {
            if site.role == .weight && graph.initializers[site.value] == nil { continue }
            result[site.value] = try calibration.parameters(for: site.value, format: config.format(for: site))
        }
        return result
    }

    /// Granularity of a weight: per-channel on its output-channel axis, groups along its reduction axis.
    static func weightGranularity(_ granularity: QuantizationConfig.WeightGranularity, site: QuantizerPlacement.Site,
                                  weight: Tensor) -> QuantizationGranularity {
        switch granularity {
        case .perTensor: return .perTensor
        case .perChannel: return site.channelAxis.map { .perChannel(axis: $0) } ?? .perTensor
        case .perGroup(let size):
            guard let axis = site.reductionAxis, weight.shape[axis] % size == 0 else {
                return site.channelAxis.map { .perChannel(axis: $0) } ?? .perTensor
            }
            return .perGroup(axis: axis, size: size)
        }
    }
}

extension Graph {
    /// This graph with a `FakeQuantize` node after each quantized value: `inputs` are graph
    /// inputs (their readers read `NAME/quantized`), `computed` are node outputs (renamed
    /// `NAME/float`; the quantizer writes `NAME`, so readers and graph outputs are unchanged).
    public func insertingFakeQuantizers(inputs: [String: QuantizationParameters],
                                        computed: [String: QuantizationParameters]) -> Graph {
        var result = self
        result.nodes = []
        var renamed: [String: String] = [:]
        for (name, p) in inputs.sorted(by: { $0.key < $1.key }) {
            renamed[name] = name + "/quantized"
            result.nodes.append(.fakeQuantize(name, output: name + "/quantized", parameters: p))
        }
        for var node in nodes {
            node.inputs = node.inputs.map { renamed[$0] ?? $0 }
            var quantizers: [Node] = []
            for (index, output) in node.outputs.enumerated() {
                guard let p = computed[output] else { continue }
                node.outputs[index] = output + "/float"
                quantizers.append(.fakeQuantize(output + "/float", output: output, parameters: p))
            }
            result.nodes.append(node)
            result.nodes += quantizers
        }
        return result
    }
}
