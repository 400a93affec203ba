import Foundation
import MPQGraph
import MPQRuntime

/// A quantizer improvement applied before calibration scoring: a graph or weight
/// transformation, or a refinement of weight parameters. The transformed model
/// exports as ordinary QDQ ONNX (transformed float weights).
public enum QuantizationTechnique: String, CaseIterable, Sendable, Codable {
    /// Cross-layer equalization with high-bias absorption (graph transform, FP32-preserving on the calibration data).
    case crossLayerEqualization = "cle"
    /// SmoothQuant for LayerNormalization -> MatMul and for convolution streams (graph transforms, FP32-preserving).
    case smoothQuant = "smoothquant"
    /// Per-channel weight clipping ratio minimising each layer's output MSE.
    case rangeSearch = "seq-mse"
    /// Learnt rounding of weights per layer.
    case adaRound = "adaround"
    /// Second-order (GPTQ) rounding of MatMul / Gemm weights.
    case gptq
    /// Empirical bias correction.
    case biasCorrection = "bias-correction"
}

/// Which techniques to apply and their settings. `apply` runs them in a fixed order:
/// graph transforms first (CLE, SmoothQuant), then one per-layer pass doing range
/// search, AdaRound or GPTQ, and bias correction on the quantized model's own inputs.
public struct QuantizationTechniques: Sendable {
    /// The techniques to run; empty runs none.
    public var techniques: Set<QuantizationTechnique>
    /// Settings of the per-layer pass (range search, AdaRound, bias correction).
    public var reconstruction = LayerReconstruction.Options()
    /// SmoothQuant migration strengths α tried per LayerNorm; default 0.3...0.8 in steps of 0.1.
    public var smoothQuantAlphas: [Float] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    /// Sweeps of cross-layer equalization over each chain; default 20.
    public var equalizationIterations = 20
    /// Calibration samples used for the data-driven techniques (the first ones).
    public var samples: Int {
        get { reconstruction.samples }
        set { reconstruction.samples = newValue }
    }

    /// Settings that run `techniques` with default parameters.
    public init(_ techniques: Set<QuantizationTechnique> = []) { self.techniques = techniques }

    /// A comma-separated list: cle, smoothquant, seq-mse, adaround, gptq, bias-correction (or "none").
    public init(parsing text: String) throws {
        var set: Set<QuantizationTechnique> = []
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) where !part.isEmpty && part != "none" {
            guard let technique = QuantizationTechnique(rawValue: part) else {
                throw MPQError.invalidInput("unknown technique '\(part)' (use \(QuantizationTechnique.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            set.insert(technique)
        }
        self.init(set)
    }

    /// True when no technique is selected (`apply` is then the identity).
    public var isEmpty: Bool { techniques.isEmpty }

    /// What the techniques did.
    public struct Report: Sendable {
        /// What one technique did.
        public struct Entry: Sendable {
            /// The technique.
            public var technique: QuantizationTechnique
            /// Wall-clock time it took, seconds.
            public var seconds: Double
            /// One line of what changed (pairs equalized, layers refined, MSE before -> after).
            public var summary: String
            /// One line per item touched (e.g. "conv1 -> conv2" for an equalized pair).
            public var details: [String]
        }
        /// One entry per technique run, in the order they ran.
        public var entries: [Entry] = []
        /// Per-layer results of the reconstruction pass (empty when it did not run).
        public var layers: [LayerReconstruction.LayerRecord] = []

        /// An empty report: no technique ran.
        public init() {}

        /// One line per technique: name, run time, what it did.
        public var notes: [String] {
            entries.map { String(format: "%@ (%.2f s): %@", $0.technique.rawValue, $0.seconds, $0.summary) }
        }

        /// For report.json.
        public var jsonObject: [[String: Any]] {
            entries.map { ["technique": $0.technique.rawValue, "seconds": $0.seconds, "summary": $0.summary, "details": $0.details] }
        }
    }

    /// The transformed model, its quantizer placement, the weight parameters the
    /// refined weights lie on (to override calibrated ones) and the report.
    public struct Result: Sendable {
        /// The transformed graph (equalized / smoothed, weights refined); FP32 function kept by the transforms.
        public var graph: Graph
        /// Quantizer placement of the transformed graph.
        public var placement: QuantizerPlacement
        /// Weight parameters the refined weights lie on, by value name; they override calibrated ones.
        public var weightParameters: [String: QuantizationParameters]
        /// What the techniques did.
        public var report: Report

        /// Calibrates the transformed graph and applies the weight parameter overrides.
        public func parameters(config: QuantizationConfig, data: CalibrationData, batchSize: Int = 16,
                               options: SessionOptions = SessionOptions(),
                               progress: ((Int, Int) -> Void)? = nil) throws -> [String: QuantizationParameters] {
            var result = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: config, data: data,
                                                               batchSize: batchSize, options: options, progress: progress)
            for (name, p) in weightParameters where result[name] != nil { result[name] = p }
            return result
        }

        /// The quantized transformed model, compared in reports with `reference` (the FP32 model
        /// the techniques started from).
        public func quantizedModel(reference: Graph, config: QuantizationConfig, data: CalibrationData, batchSize: Int = 16,
                                   options: SessionOptions = SessionOptions(),
                                   progress: ((Int, Int) -> Void)? = nil) throws -> QuantizedModel {
            let parameters = try self.parameters(config: config, data: data, batchSize: batchSize, options: options, progress: progress)
            let model = try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters, options: options)
            model.reference = reference
            model.techniqueNotes = report.notes
            return model
        }
    }

    /// The graph transforms alone (cross-layer equalization, Nagel et al. 2019; SmoothQuant, Xiao et al. 2023):
    /// `graph` with the same FP32 function, rescaled so that its weights and activations quantize better, and
    /// what they did. SmoothQuant picks its migration strength for `config`'s formats. Searches apply these
    /// before calibration so that every candidate is scored on the transformed model.
    public func transformed(_ graph: Graph, config: QuantizationConfig, data: CalibrationData,
                            options: SessionOptions = SessionOptions(), progress: ((String) -> Void)? = nil) throws
        -> (graph: Graph, changed: Bool, report: Report) {
        var graph = graph
        var report = Report()
        var changed = false
        if techniques.contains(.crossLayerEqualization) {
            let start = Date()
            let result = try CrossLayerEqualization.apply(to: graph, iterations: equalizationIterations)
            let absorption = try HighBiasAbsorption.apply(to: result.graph, pairs: result.pairs, data: data,
                                                          maximumSamples: samples, options: options)
            graph = absorption.graph
            changed = changed || !result.pairs.isEmpty
            let channels = absorption.pairs.reduce(0) { $0 + $1.channels }
            report.entries.append(.init(technique: .crossLayerEqualization, seconds: Date().timeIntervalSince(start),
                                        summary: "\(result.pairs.count) convolution pairs equalized, \(result.rewrittenClips) Clip(0, c) activations rewritten as Relu + per-channel Min, high biases of \(channels) channels in \(absorption.pairs.count) pairs absorbed",
                                        details: result.pairs.map { "\($0.0) -> \($0.1)" }
                                            + absorption.pairs.map { "\($0.conv1) -> \($0.conv2): \($0.channels) channels' biases absorbed" }))
            progress?("cle: \(result.pairs.count) pairs")
        }
        if techniques.contains(.smoothQuant) {
            let start = Date()
            let result = try SmoothQuant.apply(to: graph, config: config, data: data, alphas: smoothQuantAlphas,
                                               maximumSamples: samples, options: options)
            let streams = try StreamSmoothing.apply(to: result.graph, config: config, data: data, alphas: smoothQuantAlphas,
                                                    maximumSamples: samples, options: options)
            graph = streams.graph
            let applied = result.smoothed.filter { $0.alpha != nil }, appliedStreams = streams.smoothed.filter { $0.alpha != nil }
            changed = changed || !applied.isEmpty || !appliedStreams.isEmpty
            func alpha(_ a: Float?) -> String { a.map { String(format: "%.1f", $0) } ?? "none" }
            report.entries.append(.init(technique: .smoothQuant, seconds: Date().timeIntervalSince(start),
                                        summary: "\(applied.count) of \(result.smoothed.count) LayerNormalization -> MatMul groups and \(appliedStreams.count) of \(streams.smoothed.count) convolution streams smoothed",
                                        details: result.smoothed.map {
                                            String(format: "%@: alpha %@, %d MatMuls, relative output error %.3g -> %.3g", $0.layerNorm,
                                                   alpha($0.alpha), $0.matMuls, $0.errorBefore, $0.errorAfter)
                                        } + streams.smoothed.map {
                                            String(format: "stream from %@: alpha %@, %d values, %d 1x1 Convs reading, relative output error %.3g -> %.3g",
                                                   $0.stream, alpha($0.alpha), $0.values, $0.readers, $0.errorBefore, $0.errorAfter)
                                        }))
            progress?("smoothquant: \(applied.count) groups, \(appliedStreams.count) streams")
        }
        return (graph, changed, report)
    }

    /// The per-layer techniques (range search, AdaRound, Nagel et al. 2020; GPTQ, Frantar et al. 2022; bias
    /// correction, Nagel et al. 2019) selected, in the order they run.
    public var layerTechniques: [QuantizationTechnique] {
        [.rangeSearch, .adaRound, .gptq, .biasCorrection].filter(techniques.contains)
    }

    /// The per-layer pass over `graph` quantized with `parameters` (calibrated for `config`'s formats) and
    /// its report entries; nil when no per-layer technique is selected.
    public func reconstructed(_ graph: Graph, placement: QuantizerPlacement, parameters: [String: QuantizationParameters],
                              data: CalibrationData, options: SessionOptions = SessionOptions(),
                              progress: ((String) -> Void)? = nil) throws -> (result: LayerReconstruction.Result, report: Report)? {
        let layerTechniques = self.layerTechniques
        guard !layerTechniques.isEmpty else { return nil }
        let start = Date()
        var settings = reconstruction
        settings.rangeSearch = techniques.contains(.rangeSearch)
        settings.adaRound = techniques.contains(.adaRound)
        settings.gptq = techniques.contains(.gptq)
        settings.biasCorrection = techniques.contains(.biasCorrection)
        let result = try LayerReconstruction.apply(to: graph, placement: placement, parameters: parameters, data: data,
                                                   options: settings, sessionOptions: options, progress: progress)
        var report = Report()
        report.layers = result.layers
        let seconds = Date().timeIntervalSince(start)
        let nearest = result.layers.reduce(0) { $0 + $1.nearestError }
        for technique in layerTechniques {
            var summary: String
            switch technique {
            case .rangeSearch:
                let after = result.layers.reduce(0) { $0 + ($1.rangeSearchError ?? $1.nearestError) }
                summary = String(format: "%d layers; summed layer output MSE %.4g -> %.4g", result.layers.count, nearest, after)
            case .adaRound:
                let before = result.layers.reduce(0) { $0 + ($1.rangeSearchError ?? $1.nearestError) }
                let after = result.layers.reduce(0) { $0 + ($1.adaRoundError ?? $1.nearestError) }
                summary = String(format: "%d layers, %d iterations; summed layer output MSE %.4g -> %.4g",
                                 result.layers.count, settings.iterations, before, after)
            case .gptq:
                let refined = result.layers.filter { $0.gptqError != nil }
                let before = refined.reduce(0) { $0 + ($1.rangeSearchError ?? $1.nearestError) }
                let after = refined.reduce(0) { $0 + min($1.gptqError!, $1.rangeSearchError ?? $1.nearestError) }
                summary = String(format: "%d MatMul / Gemm layers; their summed output MSE %.4g -> %.4g", refined.count, before, after)
            default:
                let corrected = result.layers.filter { $0.biasCorrection != nil }
                let skipped = result.layers.count { $0.skippedBiasCorrection }
                summary = String(format: "%d layers corrected, largest |correction| %.4g", corrected.count,
                                 corrected.compactMap(\.biasCorrection).max() ?? 0)
                    + (skipped == 0 ? "" : "; \(skipped) MatMul / Gemm layers over token sequences left uncorrected")
            }
            report.entries.append(.init(technique: technique, seconds: seconds, summary: summary,
                                        details: technique == layerTechniques.last ? result.layers.map {
                                            String(format: "%@: MSE %.4g", $0.layer, $0.nearestError)
                                                + ($0.rangeSearchError.map { String(format: ", range search %.4g", $0) } ?? "")
                                                + ($0.adaRoundError.map { String(format: ", adaround %.4g", $0) } ?? "")
                                                + ($0.gptqError.map { String(format: ", gptq %.4g", $0) } ?? "")
                                                + ($0.biasCorrection.map { String(format: ", bias correction max %.3g", $0) } ?? "")
                                                + String(format: ", %.2f s", $0.seconds)
                                        } : []))
        }
        return (result, report)
    }

    /// The per-layer pass with every weight site at `format` and every activation site at `activations`
    /// (calibrated with `config`'s range estimators and granularity), as a search's refinement of that format.
    /// `graph` should already hold a bias on every layer that bias correction may correct
    /// (`LayerReconstruction.addingBiases`), so that every format's refinement is a set of values of one graph.
    public func refinement(of graph: Graph, placement: QuantizerPlacement, format: QuantizationFormat,
                           activations: QuantizationFormat, config: QuantizationConfig, data: CalibrationData,
                           options: SessionOptions = SessionOptions(), progress: ((String) -> Void)? = nil) throws -> WeightRefinement? {
        var config = config
        (config.weights, config.activations, config.overrides) = (format, activations, [:])
        let parameters = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: config, data: data,
                                                               options: options)
        guard let (result, report) = try reconstructed(graph, placement: placement, parameters: parameters, data: data,
                                                       options: options, progress: progress) else { return nil }
        guard result.graph.nodes.map(\.inputs) == graph.nodes.map(\.inputs) else {
            throw MPQError.invalidModel("the per-layer techniques changed the graph's structure at \(format.name); add the biases first (LayerReconstruction.addingBiases)")
        }
        return WeightRefinement(format: format, techniques: layerTechniques, result: result, report: report)
    }

    /// Applies the techniques to `graph` (quantized with `config`, sites of `placement`),
    /// using `data` for the data-driven ones.
    public func apply(to graph: Graph, placement: QuantizerPlacement, config: QuantizationConfig, data: CalibrationData,
                      options: SessionOptions = SessionOptions(), progress: ((String) -> Void)? = nil) throws -> Result {
        var (graph, graphChanged, report) = try transformed(graph, config: config, data: data, options: options, progress: progress)
        var placement = graphChanged ? QuantizerPlacement(graph: graph) : placement
        var weightParameters: [String: QuantizationParameters] = [:]
        if !layerTechniques.isEmpty {
            let calibrated = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: config,
                                                                   data: data, options: options)
            if let (result, layerReport) = try reconstructed(graph, placement: placement, parameters: calibrated, data: data,
                                                             options: options, progress: progress) {
                if result.graph.nodes.map(\.inputs) != graph.nodes.map(\.inputs) { placement = QuantizerPlacement(graph: result.graph) }
                graph = result.graph
                weightParameters = result.weightParameters
                report.layers = layerReport.layers
                report.entries += layerReport.entries
            }
        }
        return Result(graph: graph, placement: placement, weightParameters: weightParameters, report: report)
    }
}
