import ArgumentParser
import Foundation
import MPQ

/// Options shared by `mpq quantize` and `mpq eval`.
struct QuantizationOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Calibration data: .npy (one-input models), .npz (arrays named as inputs) or a folder of them.", valueName: "DATA"))
    var calib: String

    @Option(help: ArgumentHelp("A preset wXaY (w8a8, w4a8, w8a16, w16a16, w4a4, ...) or a JSON config file.", valueName: "w8a8|FILE.json"))
    var config: String

    @Flag(help: "Per-output-channel weight scales (presets default to per-tensor).")
    var perChannel = false

    @Option(parsing: .unconditional, help: "Per-group weight scales: groups of G along the reduction dim.")
    var groupSize: Int?

    @Option(help: ArgumentHelp("Activation range estimator: minmax, percentile or mse.", valueName: "METHOD"))
    var activationRange: String?

    @Option(help: ArgumentHelp("Weight range estimator: minmax or mse.", valueName: "METHOD"))
    var weightRange: String?

    @Option(parsing: .unconditional, help: "Samples per calibration batch.")
    var batchSize = 16

    @Option(help: ArgumentHelp("Held-out evaluation data (same layout as --calib): ranges come from --calib, the reported figures from this; default: the calibration data (the report then says the figures are not held out).", valueName: "DATA"))
    var eval: String?

    @Option(help: ArgumentHelp("The runtime the exported model will run on: ort-x86 (7-bit weights in int8 kernels on CPUs without VNNI), ort-arm64 or generic (exact QDQ semantics); default: this machine's.", valueName: "TARGET"))
    var deploy: DeploymentTarget = .host

    func validate() throws {
        try Check.range(groupSize, "--group-size", 1...65_536)
        try Check.range(batchSize, "--batch-size", 1...1_000_000)
        _ = try Check.rangeMethod(activationRange, "--activation-range", weights: false)
        _ = try Check.rangeMethod(weightRange, "--weight-range", weights: true)
        if !config.hasSuffix(".json") { _ = try QuantizationConfig(preset: config) }
    }

    /// Loads model data and config, calibrates, and returns the quantized model;
    /// `check` sees the calibration data before any calibration work.
    func quantize(_ model: Model, threads: SessionOptions,
                  check: (CalibrationData) throws -> Void = { _ in }) throws -> (QuantizedModel, CalibrationData) {
        let graph = model.graph
        let placement = QuantizerPlacement(graph: graph)
        var config = try QuantizationConfig.load(self.config, placement: placement)
        let data = try CalibrationData(contentsOf: calib, graph: graph)
        try check(data)
        if !self.config.hasSuffix(".json") { config.weightGranularity = perChannel ? .perChannel : .perTensor }
        if let groupSize { config.weightGranularity = .perGroup(size: groupSize) }
        if let method = try Check.rangeMethod(activationRange, "--activation-range", weights: false) { config.activationRange = method }
        if let method = try Check.rangeMethod(weightRange, "--weight-range", weights: true) { config.weightRange = method }
        let deployment = deploy.adapted(config, placement: placement, graph: graph)
        config = deployment.config
        for note in deployment.notes { FileHandle.standardError.write(Data("warning: \(note)\n".utf8)) }
        let parameters = try QuantizationCalibrator.parameters(
            graph: graph, placement: placement, config: config, data: data, batchSize: batchSize, options: threads,
            progress: Progress.reporter("calibrating"))
        let quantized = try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters, options: threads)
        quantized.deploymentNotes = deployment.notes
        return (quantized, data)
    }

    /// The held-out data of `--eval` (loaded and checked before any calibration), nil without it.
    func heldOutData(_ model: Model) throws -> CalibrationData? {
        try eval.map { try CalibrationData(contentsOf: $0, graph: model.graph) }
    }
}

/// Progress lines on standard error.
enum Progress {
    static func reporter(_ task: String) -> (Int, Int) -> Void {
        let start = Date()
        return { done, total in
            let elapsed = Date().timeIntervalSince(start)
            let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
            let line = String(format: "%@ %d/%d batches, %.1f s, eta %.1f s", task, done, total, elapsed, eta)
            if isatty(STDERR_FILENO) != 0 {
                FileHandle.standardError.write(Data(("\r" + line + (done == total ? "\n" : "")).utf8))
            } else {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }
    }
}

extension DeploymentTarget: ExpressibleByArgument {}

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Calibrate and export a quantized model: DIR/model.qdq.onnx, DIR/encodings.json, DIR/report.json.")

    @Argument(help: "ONNX model file.")
    var model: String

    @OptionGroup var quantization: QuantizationOptions
    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: ArgumentHelp("Output folder (created if missing; written only when everything succeeded).", valueName: "DIR"))
    var out: String

    func validate() throws {
        try Check.outputFolder(out)
    }

    func run() throws {
        let loaded = try Model(contentsOf: model)
        let heldOut = try quantization.heldOutData(loaded)
        let (quantized, calibration) = try quantization.quantize(loaded, threads: threadOptions.session)
        var report = try QuantizationReport(model: quantized, data: heldOut ?? calibration, batchSize: quantization.batchSize,
                                            options: threadOptions.session, progress: Progress.reporter("evaluating"))
        report.heldOut = heldOut != nil
        let export = try QDQExport(quantized)
        report.exportNotes = export.notes
        let encodings = try QuantizationEncodings.json(quantized)
        let reportJSON = try report.json()
        try Check.createOutputFolder(out)
        try export.write(to: (out as NSString).appendingPathComponent("model.qdq.onnx"))
        try AtomicFile.write(encodings, to: (out as NSString).appendingPathComponent("encodings.json"))
        try AtomicFile.write(reportJSON, to: (out as NSString).appendingPathComponent("report.json"))
        print(summary(report))
        print("wrote \(out)/model.qdq.onnx, encodings.json, report.json")
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Quantize in simulation and compare the outputs with FP32: SQNR, top-1 agreement, cosine similarity, accuracy.")

    @Argument(help: "ONNX model file.")
    var model: String

    @OptionGroup var quantization: QuantizationOptions
    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: ArgumentHelp("Class labels, one integer per evaluated sample (--eval's, else --calib's).", valueName: "FILE.npy"))
    var labels: String?

    func run() throws {
        let loaded = try Model(contentsOf: model)
        let labelValues = try labels.map { try Check.labels($0, graph: loaded.graph) }
        let heldOut = try quantization.heldOutData(loaded)
        let (quantized, calibration) = try quantization.quantize(loaded, threads: threadOptions.session) { calibration in
            let evaluated = heldOut ?? calibration
            if let labelValues, labelValues.count != evaluated.count {
                throw ValidationError("--labels \(labels!) holds \(labelValues.count) labels for \(evaluated.count) \(heldOut == nil ? "calibration" : "--eval") samples (one per sample)")
            }
        }
        var report = try QuantizationReport(model: quantized, data: heldOut ?? calibration, batchSize: quantization.batchSize,
                                            labels: labelValues, options: threadOptions.session,
                                            progress: Progress.reporter("evaluating"))
        report.heldOut = heldOut != nil
        print(summary(report))
    }
}

/// The output metrics of a report, one per line.
func summary(_ report: QuantizationReport) -> String {
    var lines = [String(format: "output SQNR %.2f dB", report.output.sqnr)
        + (report.heldOut ? " (held-out --eval data)" : " (on the calibration data, not held out)")]
    if let top1 = report.output.top1Agreement { lines.append(String(format: "top-1 agreement with FP32 %.2f%%", top1 * 100)) }
    if let cosine = report.output.cosineSimilarity { lines.append(String(format: "cosine similarity %.5f", cosine)) }
    if let accuracy = report.output.accuracy {
        lines.append(String(format: "accuracy %.2f%% (FP32 %.2f%%)", accuracy.quantized * 100, accuracy.reference * 100))
    }
    if !report.calibrationNotes.isEmpty {
        lines.append("\(report.calibrationNotes.count) weights quantized per channel: their reduction dim is not a multiple of the group size (report.json)")
    }
    lines.append("\(report.entries.count) quantizers; lowest SQNR: " + report.entries.sorted { $0.sqnr < $1.sqnr }.prefix(3)
        .map { String(format: "%@ %.1f dB", $0.site.value, $0.sqnr) }.joined(separator: ", "))
    return lines.joined(separator: "\n")
}
