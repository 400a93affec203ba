import ArgumentParser
import Foundation
import MPQ
import MPQGGUF

/// `mpq search-lm`: per-tensor ggml types of a GGUF decoder for a size, bits-per-weight or KL target.
struct SearchLMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search-lm",
        abstract: "Per-tensor ggml types of a GGUF language model for a file-size, bits-per-weight or KL-divergence target.",
        discussion: """
        Writes DIR/model.gguf (the mix, loadable by llama.cpp), tensor-types.txt (llama-quantize --tensor-type-file), \
        imatrix.gguf, front.csv, sensitivity.csv and report.md. Scores are cached (keyed by the model, the text and \
        the settings) so that a killed run resumes.
        """)

    @Argument(help: "Base GGUF model (F16/F32 or any type mpq dequantizes).")
    var model: String

    @Option(help: "Search method: pareto (taylor-ip is not implemented yet).")
    var method = "pareto"

    @Option(help: ArgumentHelp("Calibration text (UTF-8).", valueName: "FILE"))
    var text: String

    @Option(name: .customLong("target-bpw"), help: "Bits per weight (llama.cpp's figure: 8 x tensor bytes / weights).")
    var targetBPW: Double?

    @Option(name: .customLong("target-size"), help: "File size, e.g. 6985056, 90MB, 6.5MiB.")
    var targetSize: String?

    @Option(name: .customLong("max-kld"), help: "Largest mean KL divergence from the base model on the calibration text.")
    var maxKLD: Double?

    @Option(help: ArgumentHelp("Output folder.", valueName: "DIR"))
    var out: String

    @Option(help: "Candidate types, comma-separated (default q2_K,q3_K,q4_K,q5_K,q6_K,q8_0,f16).")
    var types: String?

    @Option(help: ArgumentHelp("Tensors that take one type together, comma-separated (repeatable).", valueName: "NAMES"))
    var tie: [String] = []

    @Option(help: ArgumentHelp("Search only tensors whose name matches this regular expression.", valueName: "REGEX"))
    var tensors: String?

    @Option(help: "Calibration tokens per chunk.")
    var context = 512

    @Option(help: "Calibration chunks.")
    var chunks = 4

    @Option(name: .customLong("eval-text"), help: ArgumentHelp("Held-out text for the report's KLD and perplexity.", valueName: "FILE"))
    var evalText: String?

    @Option(name: .customLong("eval-context"), help: "Held-out tokens per chunk.")
    var evalContext = 512

    @Option(name: .customLong("eval-chunks"), help: "Held-out chunks.")
    var evalChunks = 8

    @Option(help: "Uniform type the report compares with on the held-out text.")
    var baseline = "q4_K"

    @Option(name: .customLong("cache"), help: ArgumentHelp("Score cache folder (default ~/.cache/mpq).", valueName: "DIR"))
    var cacheFolder: String?

    @Flag(name: .customLong("no-cache"), help: "Do not read or write the score cache.")
    var noCache = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        let targets = [targetBPW != nil, targetSize != nil, maxKLD != nil].filter { $0 }.count
        guard targets == 1 else { throw ValidationError("give exactly one of --target-bpw, --target-size, --max-kld") }
        guard GGUFTypeSearchWorkflow.Method(rawValue: method) != nil else { throw ValidationError("--method must be pareto or taylor-ip") }
        try Check.range(context, "--context", 4...65_536)
        try Check.range(evalContext, "--eval-context", 4...65_536)
        try Check.range(chunks, "--chunks", 1...1_000_000)
        try Check.range(evalChunks, "--eval-chunks", 1...1_000_000)
    }

    static func parseType(_ text: String) throws -> GGMLType {
        guard let type = GGMLType(name: text.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("unknown ggml type '\(text)'")
        }
        return type
    }

    func run() throws {
        let target: GGUFSearchTarget
        if let targetBPW { target = .bitsPerWeight(targetBPW) } else if let maxKLD { target = .maxKLD(maxKLD) } else {
            target = .fileBytes(try GGUFSearchTarget.parseSize(targetSize ?? ""))
        }
        var options = GGUFTypeSearchWorkflow.Options(model: model, calibrationText: text, target: target)
        options.method = GGUFTypeSearchWorkflow.Method(rawValue: method) ?? .pareto
        options.output = out
        if let types { options.types = try types.split(separator: ",").map { try Self.parseType(String($0)) } }
        options.tied = tie.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
        options.tensorPattern = tensors
        options.context = context
        options.chunks = chunks
        options.evaluationText = evalText
        options.evaluationContext = evalContext
        options.evaluationChunks = evalChunks
        options.baseline = try Self.parseType(baseline)
        options.cacheFolder = cacheFolder
        options.useCache = !noCache
        options.threads = threadOptions.threads
        let result = try GGUFTypeSearchWorkflow(options).run(progress: TerminalProgress())
        print(result.summary)
        print("wrote \(out)")
    }
}
