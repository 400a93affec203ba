import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// `mpq quantize` (and `mpq eval`) as a library call: load the model and data, calibrate for a
/// deployment target (techniques first, if any), evaluate on held-out data, and produce the QDQ
/// model, encodings.json and report.json, written all-or-nothing to `output`.
///
/// ```swift
/// var options = QuantizationWorkflow.Options(model: "model.onnx", calibrationData: "calib.npy", config: "w8a8")
/// options.evaluationData = "heldout.npy"
/// options.output = "out"
/// let result = try QuantizationWorkflow(options).run()
/// print(result.report.summary)
/// ```
public struct QuantizationWorkflow: Sendable {
    /// What to quantize, with what, and where the results go.
    public struct Options: Sendable {
        /// The ONNX model file.
        public var model: String
        /// Calibration data: .npy (one-input models), .npz (arrays named as inputs) or a folder of them.
        public var calibrationData: String
        /// Held-out data for the reported figures (ranges still come from `calibrationData`); nil: the calibration data.
        public var evaluationData: String?
        /// A preset wXaY (w8a8, w4a8, ...) or a JSON config file.
        public var config: String
        /// Per-output-channel weight scales for presets (presets default to per-tensor).
        public var perChannel = false
        /// Per-group weight scales: groups of this size along the reduction dim.
        public var groupSize: Int?
        /// Range estimators; nil: the config's.
        public var activationRange: RangeMethod?
        /// Range estimator for weights; nil: the config's.
        public var weightRange: RangeMethod?
        /// Samples per forward pass during calibration and evaluation; default 16.
        public var batchSize = 16
        /// The runtime the exported model is adapted to (e.g. 7-bit int8 weights on x86 ORT); default the host.
        public var deployment: DeploymentTarget = .host
        /// Techniques applied before calibration (CLE, SmoothQuant, SeqMSE, AdaRound, bias correction).
        public var techniques = QuantizationTechniques()
        /// Class labels (.npy), one per evaluated sample, for the accuracy figures.
        public var labels: String?
        /// Threads for calibration and evaluation.
        public var session = SessionOptions()
        /// The output folder (replaced wholly on success); nil: evaluate only, write nothing.
        public var output: String?

        /// Options for quantizing `model` with `config` calibrated on `calibrationData`; the rest at defaults.
        public init(model: String, calibrationData: String, config: String) {
            self.model = model
            self.calibrationData = calibrationData
            self.config = config
        }
    }

    /// What a run produced.
    public struct Result: @unchecked Sendable {
        /// The quantized model (simulation and parameters).
        public var model: QuantizedModel
        /// Per-quantizer and output error figures, as in report.json.
        public var report: QuantizationReport
        /// The files written to `output` (none without one).
        public var files: OutputFiles
    }

    /// The run's settings.
    public var options: Options

    /// A workflow for `options`; nothing is read until `run`.
    public init(_ options: Options) { self.options = options }

    /// Checks the options that need no model or data (ranges, estimators, the output folder).
    public func validate() throws {
        guard options.batchSize >= 1 else { throw MPQError.invalidInput("batch size \(options.batchSize) must be at least 1") }
        if let size = options.groupSize, !(1...65_536).contains(size) {
            throw MPQError.invalidInput("group size \(size) is out of range (valid: 1...65536)")
        }
        if options.weightRange == .percentile { throw MPQError.invalidInput("weight range percentile: weights take minmax or mse") }
        if !options.config.hasSuffix(".json") { _ = try QuantizationConfig(preset: options.config) }
        if let output = options.output { try OutputFolder.check(output) }
    }

    /// The config to calibrate: the preset or file with the options applied, adapted to the deployment target.
    public func configuration(for graph: Graph, placement: QuantizerPlacement,
                              progress: ProgressReporter = SilentProgress()) throws -> (config: QuantizationConfig, notes: [String]) {
        var config = try QuantizationConfig.load(options.config, placement: placement)
        if !options.config.hasSuffix(".json") { config.weightGranularity = options.perChannel ? .perChannel : .perTensor }
        if let size = options.groupSize { config.weightGranularity = .perGroup(size: size) }
        if let method = options.activationRange { config.activationRange = method }
        if let method = options.weightRange { config.weightRange = method }
        let deployment = options.deployment.adapted(config, placement: placement, graph: graph)
        for note in deployment.notes { progress.note("warning: \(note)") }
        return (deployment.config, deployment.notes)
    }

    /// Calibrates (after the techniques, if any) and returns the quantized model, writing nothing.
    /// `check` sees the calibration data before any calibration work.
    public func calibrate(_ graph: Graph, progress: ProgressReporter = SilentProgress(),
                          check: (CalibrationData) throws -> Void = { _ in }) throws -> (QuantizedModel, CalibrationData) {
        let placement = QuantizerPlacement(graph: graph)
        let (config, notes) = try configuration(for: graph, placement: placement, progress: progress)
        if options.output != nil {
            _ = try QDQExport.checkExportable(graph, formats: Array(Set([config.weights, config.activations] + Array(config.overrides.values))),
                                              granularity: config.weightGranularity)
        }
        let data = try CalibrationData(contentsOf: options.calibrationData, graph: graph)
        try check(data)
        let quantized: QuantizedModel
        if options.techniques.isEmpty {
            let parameters = try QuantizationCalibrator.parameters(
                graph: graph, placement: placement, config: config, data: data, batchSize: options.batchSize,
                options: options.session, progress: progress.steps("calibrating"))
            quantized = try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters,
                                           options: options.session)
        } else {
            let applied = try options.techniques.apply(to: graph, placement: placement, config: config, data: data,
                                                       options: options.session)
            for note in applied.report.notes { progress.note(note) }
            quantized = try applied.quantizedModel(reference: graph, config: config, data: data, batchSize: options.batchSize,
                                                   options: options.session, progress: progress.steps("calibrating"))
        }
        quantized.deploymentNotes = notes
        return (quantized, data)
    }

    /// Runs the whole workflow and, with `output`, writes its files (all or nothing).
    public func run(progress: ProgressReporter = SilentProgress()) throws -> Result {
        try validate()
        let graph = try Model(contentsOf: options.model).graph
        let heldOut = try options.evaluationData.map { try CalibrationData(contentsOf: $0, graph: graph) }
        let labelValues = try options.labels.map { try ClassLabels.load($0, graph: graph) }
        let (quantized, calibration) = try calibrate(graph, progress: progress) { calibration in
            let evaluated = heldOut ?? calibration
            if let labelValues, let path = options.labels, labelValues.count != evaluated.count {
                throw MPQError.invalidInput("--labels \(path) holds \(labelValues.count) labels for \(evaluated.count) \(heldOut == nil ? "calibration" : "--eval") samples (one per sample)")
            }
        }
        var report = try QuantizationReport(model: quantized, data: heldOut ?? calibration, batchSize: options.batchSize,
                                            labels: labelValues, options: options.session,
                                            progress: progress.steps("evaluating"))
        report.heldOut = heldOut != nil
        var files = OutputFiles()
        if let output = options.output {
            try QuantizedModelFiles.add(quantized, report: &report, to: &files)
            try files.write(to: output)
        }
        return Result(model: quantized, report: report, files: files)
    }
}
