import ArgumentParser
import Foundation
import MPQ

/// Options shared by `mpq quantize` and `mpq eval`: the model and `QuantizationWorkflow.Options` on the command line.
struct QuantizationOptions: ParsableArguments {
    @Argument(help: "ONNX model file.")
    var model: String

    @Option(help: ArgumentHelp("Calibration data: .npy (one-input models), .npz (arrays named as inputs) or a folder of them.", valueName: "DATA"))
    var calib: String

    @Option(help: ArgumentHelp("A preset wXaY (w8a8, w4a8, w8a16, w16a16, w4a4, ...) or a JSON config file.", valueName: "w8a8|FILE.json"))
    var config: String

    @Flag(help: "Per-output-channel weight scales (presets default to per-tensor).")
    var perChannel = false

    @Option(parsing: .unconditional, help: "Per-group weight scales: groups of G along the reduction dim.")
    var groupSize: Int?

    @Option(help: ArgumentHelp("Activation range estimator.", valueName: "METHOD"))
    var activationRange: RangeMethod?

    @Option(help: ArgumentHelp("Weight range estimator: minmax or mse.", valueName: "METHOD"))
    var weightRange: RangeMethod?

    @Option(parsing: .unconditional, help: "Samples per calibration batch.")
    var batchSize = 16

    @Option(help: ArgumentHelp("Held-out evaluation data (same layout as --calib): ranges come from --calib, the reported figures from this; default: the calibration data (the report then says the figures are not held out).", valueName: "DATA"))
    var eval: String?

    @Option(help: ArgumentHelp("Quantization techniques applied before calibration, comma-separated: cle, smoothquant, seq-mse, adaround, gptq, bias-correction (report.json lists what each did).", valueName: "LIST"))
    var techniques: String?

    @Option(parsing: .unconditional, help: "AdaRound iterations per layer (with --techniques adaround; default 1000).")
    var adaroundIterations: Int?

    @Option(help: ArgumentHelp("The runtime the exported model will run on: ort-x86 (7-bit weights in int8 kernels on CPUs without VNNI), ort-arm64 or generic (exact QDQ semantics); default: this machine's.", valueName: "TARGET"))
    var deploy: DeploymentTarget = .host

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        try Check.range(groupSize, "--group-size", 1...65_536)
        try Check.range(batchSize, "--batch-size", 1...1_000_000)
        try Check.weightRange(weightRange)
        if !config.hasSuffix(".json") { _ = try QuantizationConfig(preset: config) }
        if let techniques { _ = try QuantizationTechniques(parsing: techniques) }
        try Check.range(adaroundIterations, "--adaround-iterations", 1...1_000_000)
    }

    /// The workflow these options describe, writing to `output` and scoring against `labels`.
    func workflow(output: String? = nil, labels: String? = nil) throws -> QuantizationWorkflow {
        var options = QuantizationWorkflow.Options(model: model, calibrationData: calib, config: config)
        options.evaluationData = eval
        options.perChannel = perChannel
        options.groupSize = groupSize
        options.activationRange = activationRange
        options.weightRange = weightRange
        options.batchSize = batchSize
        options.deployment = deploy
        options.techniques = try techniques.map { try QuantizationTechniques(parsing: $0) } ?? QuantizationTechniques()
        if let adaroundIterations { options.techniques.reconstruction.iterations = adaroundIterations }
        options.labels = labels
        options.session = threadOptions.session
        options.output = output
        return QuantizationWorkflow(options)
    }
}
