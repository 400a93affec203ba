import Foundation
import MPQGraph
import MPQRuntime

/// The per-layer techniques' results (`LayerReconstruction`: range search, AdaRound, bias correction)
/// for one weight format, run with every layer at that format. A search holds one per candidate weight
/// format (`CandidateCalibration.refinements`) and gives each weight site the refinement of the format
/// its group takes, so that sensitivities, evaluations and the export all see the refined quantizers.
public struct WeightRefinement: Sendable {
    /// A layer's corrected bias: the initializer and its new value.
    public struct Bias: Sendable {
        /// The bias initializer's name.
        public var name: String
        /// Its corrected value.
        public var value: Tensor
    }

    /// The weight format the pass quantized every layer to.
    public var format: QuantizationFormat
    /// The techniques that ran.
    public var techniques: [QuantizationTechnique]
    /// Refined float weights (AdaRound's rounding, lying on `parameters`' grid), by weight site.
    public var weights: [String: Tensor] = [:]
    /// The weight parameters found (range search) or rounded to (AdaRound), by weight site.
    public var parameters: [String: QuantizationParameters] = [:]
    /// Corrected biases of the refined layers, by weight site.
    public var biases: [String: Bias] = [:]
    /// What the pass did, per technique.
    public var report = QuantizationTechniques.Report()

    /// The refinement of `format` taken from one pass's result.
    public init(format: QuantizationFormat, techniques: [QuantizationTechnique], result: LayerReconstruction.Result,
                report: QuantizationTechniques.Report) {
        self.format = format
        self.techniques = techniques
        self.report = report
        parameters = result.weightParameters
        for (weight, bias) in result.correctedBiases {
            if let value = result.graph.initializers[bias] { biases[weight] = Bias(name: bias, value: value) }
        }
        for weight in result.roundedWeights {
            if let value = result.graph.initializers[weight] { weights[weight] = value }
        }
    }

    /// Every value the refinement sets, as named tensors (weights, biases, and each weight's scales and
    /// zero points), for cache keys: two refinements with the same tensors score the same.
    public var keyTensors: [String: Tensor] {
        var result: [String: Tensor] = [:]
        let prefix = "refined \(format.name) "
        for (weight, value) in weights { result[prefix + weight] = value }
        for (weight, bias) in biases { result[prefix + weight + " bias " + bias.name] = bias.value }
        for (weight, p) in parameters {
            result[prefix + weight + " scales"] = Tensor(shape: [p.scales.count], scalars: p.scales)
            result[prefix + weight + " zero points"] = Tensor(shape: [p.zeroPoints.count], scalars: p.zeroPoints.map(Float.init))
        }
        return result
    }

    /// The initializers that replace `graph`'s when `weight` takes this refinement's format.
    func initializers(of weight: String) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        if let value = weights[weight] { result[weight] = value }
        if let bias = biases[weight] { result[bias.name] = bias.value }
        return result
    }
}
