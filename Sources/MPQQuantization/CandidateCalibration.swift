import Foundation
import MPQGraph
import MPQRuntime

/// Calibration done once for every candidate format: one FP32 pass over the
/// data keeps a `RangeObserver` per activation site (its histogram gives the
/// range for any grid via `range(levels:symmetric:)`) and the FP32 outputs;
/// parameters for a (site, format) pair are then derived on demand. This is the
/// one calibration path: `QuantizationCalibrator.parameters` is this with one
/// format per site. With `refinements` (the per-layer techniques' results per weight format), a weight
/// site at a refined format takes that format's parameters, float weight and corrected bias.
public final class CandidateCalibration: @unchecked Sendable {
    /// The FP32 graph calibrated.
    public let graph: Graph
    /// The quantizer sites parameters are derived for.
    public let placement: QuantizerPlacement
    /// Range estimator for activation sites.
    public let activationRange: RangeMethod
    /// Range estimator for weights.
    public let weightRange: RangeMethod
    /// Scale granularity of weights.
    public let weightGranularity: QuantizationConfig.WeightGranularity
    /// Calibration batches and the FP32 outputs of each (none when made with `keepsOutputs: false`).
    public let batches: [[String: Tensor]]
    /// FP32 graph outputs per batch, parallel to `batches`; empty with `keepsOutputs: false`.
    public let referenceOutputs: [[String: Tensor]]
    /// The per-layer techniques' results by weight format name (`WeightRefinement`); empty: none ran.
    public let refinements: [String: WeightRefinement]
    private let observers: [String: RangeObserver]
    private let sites: [String: QuantizerPlacement.Site]
    private var cache: [String: QuantizationParameters] = [:]
    private let lock = NSLock()

    /// Runs the FP32 graph once over `data` in batches of `batchSize`, observing every activation
    /// site; `refinements` are kept as they are; `progress` gets (batches done, batch count).
    public init(graph: Graph, placement: QuantizerPlacement, data: CalibrationData, batchSize: Int,
                activationRange: RangeMethod = .mse, weightRange: RangeMethod = .minMax,
                weightGranularity: QuantizationConfig.WeightGranularity = .perChannel,
                options: SessionOptions = SessionOptions(), keepsOutputs: Bool = true,
                refinements: [WeightRefinement] = [], progress: ((Int, Int) -> Void)? = nil) throws {
        self.graph = graph
        self.refinements = Dictionary(refinements.map { ($0.format.name, $0) }, uniquingKeysWith: { _, last in last })
        self.placement = placement
        self.activationRange = activationRange
        self.weightRange = weightRange
        self.weightGranularity = weightGranularity
        var observers: [String: RangeObserver] = [:]
        for site in placement.activations { observers[site.value] = RangeObserver(method: activationRange) }
        self.observers = observers
        sites = Dictionary(placement.sites.map { ($0.value, $0) }, uniquingKeysWith: { first, _ in first })
        batches = data.batches(of: batchSize)
        let session = try InferenceSession(graph: graph, options: options)
        var outputs: [[String: Tensor]] = []
        for (index, batch) in batches.enumerated() {
            for (name, tensor) in batch { try observers[name]?.observe(tensor) }
            let result = try session.run(batch) { name, value in
                do {
                    try observers[name]?.observe(value)
                } catch MPQError.invalidInput(let message) {
                    throw MPQError.invalidInput("value '\(name)' in calibration batch \(index): \(message)")
                }
                return nil
            }
            if keepsOutputs { outputs.append(result) }
            progress?(index + 1, batches.count)
        }
        referenceOutputs = outputs
    }

    /// Parameters of `value`'s quantizer in `format` (cached).
    public func parameters(for value: String, format: QuantizationFormat) throws -> QuantizationParameters {
        let key = "\(value)\u{0}\(format.name)"
        if let cached = lock.withLock({ cache[key] }) { return cached }
        guard let site = sites[value] else { throw MPQError.invalidInput("'\(value)' has no quantizer") }
        let parameters: QuantizationParameters
        if site.role == .weight, let refined = refinements[format.name]?.parameters[value] {
            parameters = refined
        } else if site.role == .weight {
            guard let weight = graph.initializers[value] else { throw MPQError.invalidModel("weight '\(value)' is not an initializer") }
            let granularity = QuantizationCalibrator.weightGranularity(weightGranularity, site: site, weight: weight)
            let (axis, group): (Int?, Int?) = {
                switch granularity {
                case .perTensor: return (nil, nil)
                case .perChannel(let axis): return (axis, nil)
                case .perGroup(let axis, let size): return (axis, size)
                }
            }()
            let ranges = try WeightRanges.ranges(of: weight, method: weightRange, axis: axis, groupSize: group,
                                                 levels: format.levels, symmetric: format.isSymmetric)
            parameters = QuantizationParameters(format: format, granularity: granularity,
                                                minimums: ranges.minimums, maximums: ranges.maximums)
        } else {
            guard let observer = observers[value] else { throw MPQError.invalidInput("'\(value)' has no range observer") }
            let range = observer.range(levels: format.levels, symmetric: format.isSymmetric)
            parameters = QuantizationParameters(format: format, granularity: .perTensor,
                                                minimums: [range.minimum], maximums: [range.maximum])
        }
        lock.withLock { cache[key] = parameters }
        return parameters
    }

    /// The float initializers that replace `graph`'s when weight site `value` takes `format`: its refined
    /// weight and corrected bias (none without a refinement of `format`).
    public func refinedInitializers(of value: String, format: QuantizationFormat) -> [String: Tensor] {
        refinements[format.name]?.initializers(of: value) ?? [:]
    }

    /// `graph` with the refined float weights and corrected biases of a configuration (`formats` maps site
    /// values to formats): the float model its quantized model is built on and exported from.
    public func refinedGraph(_ formats: [String: QuantizationFormat]) -> Graph {
        guard !refinements.isEmpty else { return graph }
        var result = graph
        for (value, format) in formats where sites[value]?.role == .weight {
            for (name, tensor) in refinedInitializers(of: value, format: format) { result.initializers[name] = tensor }
        }
        return result
    }

    /// The quantized model of a configuration (`formats` maps site values to formats) on the refined graph,
    /// compared in reports with `graph`.
    public func quantizedModel(_ formats: [String: QuantizationFormat], options: SessionOptions = SessionOptions()) throws -> QuantizedModel {
        let (config, parameters) = try configuration(formats)
        let model = try QuantizedModel(graph: refinedGraph(formats), placement: placement, config: config, parameters: parameters,
                                       options: options)
        if !refinements.isEmpty { model.reference = graph }
        return model
    }

    /// The config and parameters of a configuration: `formats` maps site values to formats
    /// (sites not listed stay unquantized).
    public func configuration(_ formats: [String: QuantizationFormat]) throws
        -> (config: QuantizationConfig, parameters: [String: QuantizationParameters]) {
        var config = QuantizationConfig(weights: .float32, activations: .float32, weightGranularity: weightGranularity,
                                        weightRange: weightRange, activationRange: activationRange)
        var parameters: [String: QuantizationParameters] = [:]
        for (value, format) in formats {
            config.overrides[value] = format
            parameters[value] = try self.parameters(for: value, format: format)
        }
        return (config, parameters)
    }
}
