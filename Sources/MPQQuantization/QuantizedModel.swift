import Foundation
import MPQGraph
import MPQRuntime

/// A model with quantizers attached: weights replaced by their quantize-
/// dequantized values, activations quantize-dequantized by `FakeQuantize`
/// nodes as they are computed. This is what the search methods score, and
/// what the exported QDQ model computes in ONNX Runtime.
public final class QuantizedModel: @unchecked Sendable {
    /// The FP32 graph the quantizers were placed in.
    public let original: Graph
    /// Where the quantizers sit.
    public let placement: QuantizerPlacement
    /// The formats asked for (defaults and per-value overrides).
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

    /// Attaches quantizers with `parameters` (by value name) to `original`: quantize-dequantizes
    /// the weights once and builds the simulation graph with `FakeQuantize` nodes.
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
