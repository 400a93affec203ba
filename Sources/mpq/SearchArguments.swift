import ArgumentParser
import Foundation
import MPQ

/// The options both search methods share (`SearchOptions`).
struct SearchArguments: ParsableArguments {
    @Argument(help: "ONNX model file.")
    var model: String

    @Option(help: ArgumentHelp("Calibration data (ranges and sensitivities): .npy, .npz or a folder of them.", valueName: "DATA"))
    var calib: String

    @Option(help: ArgumentHelp("Held-out data (same layout as --calib): the chosen point's report and the check that the target holds on it.", valueName: "DATA"))
    var eval: String?

    @Option(help: ArgumentHelp("Candidates to consider, comma-separated (default: the profile's).", valueName: "w8a8,w4a8,..."))
    var candidates: String?

    @Option(help: ArgumentHelp("Hardware profile: default, cpu-avx2 or a JSON file.", valueName: "NAME|FILE.json"))
    var profile = "default"

    @Option(help: ArgumentHelp("The runtime the exported model will run on: ort-x86 (7-bit weights in int8 kernels on CPUs without VNNI), ort-arm64 or generic; default: this machine's.", valueName: "TARGET"))
    var deploy: DeploymentTarget = .host

    @Option(help: ArgumentHelp("Class labels, one integer per calibration sample (pareto: for --metric accuracy; taylor-ip: the cross-entropy loss).", valueName: "FILE.npy"))
    var labels: String?

    @Option(help: ArgumentHelp("Score and latency cache folder (default: ~/.cache/mpq).", valueName: "DIR"))
    var cache: String?

    @Option(help: ArgumentHelp("Activation range estimator.", valueName: "METHOD"))
    var activationRange: RangeMethod = .mse

    @Option(help: ArgumentHelp("Weight range estimator: minmax or mse.", valueName: "METHOD"))
    var weightRange: RangeMethod = .minMax

    @Option(parsing: .unconditional, help: "Samples per batch.")
    var batchSize = 16

    @Option(help: ArgumentHelp("Quantization techniques applied before calibration and sensitivities, comma-separated: cle, smoothquant (to the model), seq-mse, adaround, gptq, bias-correction (once per candidate weight format).", valueName: "LIST"))
    var techniques: String?

    @Option(parsing: .unconditional, help: "AdaRound iterations per layer (with --techniques adaround; default 1000).")
    var adaroundIterations: Int?

    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: ArgumentHelp("Output folder (replaced wholly, and only when everything succeeded).", valueName: "DIR"))
    var out: String

    func validate() throws {
        try Check.range(batchSize, "--batch-size", 1...1_000_000)
        try Check.weightRange(weightRange)
        try Check.outputFolder(out)
        if let cache { try Check.outputFolder(cache, "--cache") }
        if let techniques { _ = try QuantizationTechniques(parsing: techniques) }
        try Check.range(adaroundIterations, "--adaround-iterations", 1...1_000_000)
    }

    /// Copies these options into a workflow's.
    func fill(_ options: inout SearchOptions) throws {
        options.evaluationData = eval
        options.candidates = candidates.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        options.profile = profile
        options.deployment = deploy
        options.labels = labels
        options.cacheFolder = cache
        options.activationRange = activationRange
        options.weightRange = weightRange
        options.batchSize = batchSize
        options.techniques = try techniques.map { try QuantizationTechniques(parsing: $0) } ?? QuantizationTechniques()
        if let adaroundIterations { options.techniques.reconstruction.iterations = adaroundIterations }
        options.session = threadOptions.session
        options.output = out
    }
}

/// The first option of the other method given, as one clear error naming both methods.
func rejectOptions(of method: String, _ given: [String], under current: String, targets: String) throws {
    guard let option = given.first else { return }
    throw ValidationError("\(option) is a \(method) option: \(current) does not use it (\(targets))")
}
