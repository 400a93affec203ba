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
        imatrix.gguf, sensitivity.csv, report.md, and front.csv (pareto) or validation.csv (taylor-ip --validate). \
        Scores are cached (keyed by the model, the text and the settings) so that a killed run resumes. \
        pareto: measured KLD per tensor and type, greedy front, the best measured fitting points (--measure). \
        taylor-ip: Taylor loss MSE from one forward and backward pass per chunk, then an integer program \
        (--loss, --draws, --seed, --validate, --solver-time-limit). Options of one method are rejected under the other.
        """)

    @Argument(help: "Base GGUF model (F16/F32 or any type mpq dequantizes).")
    var model: String

    @Option(help: "Search method: pareto or taylor-ip.")
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

    @Option(name: .customLong("random-control"), help: ArgumentHelp("Also write random-control.gguf, a random mix at the chosen size, and evaluate it.", valueName: "SEED"))
    var randomControl: UInt64?

    @Option(name: .customLong("speed-table"), help: ArgumentHelp("Per-type speed table measured on this CPU (bench/ggml_type_speed.sh): predict milliseconds per token of every mix.", valueName: "FILE"))
    var speedTable: String?

    @Option(name: .customLong("max-ms-per-token"), help: ArgumentHelp("Most predicted milliseconds per token (needs --speed-table); taylor-ip: a constraint of its program, pareto: a filter on its front.", valueName: "MS"))
    var maxMillisecondsPerToken: Double?

    @Option(name: .customLong("speed-phase"), help: "Phase --max-ms-per-token limits: decode (default) or prefill.")
    var speedPhase = "decode"

    @Option(help: "pareto: front points measured for a size target (default 3).")
    var measure: Int?

    @Option(help: "taylor-ip: loss, kl (labels drawn from the base model; default) or next-token.")
    var loss: String?

    @Option(help: "taylor-ip: forward and backward passes per chunk, each with fresh label draws (kl; default 16; more draws, less noisy sensitivities).")
    var draws: Int?

    @Option(help: "taylor-ip: seed of the label draws and of the validation mixes (default 1).")
    var seed: UInt64?

    @Option(name: .customLong("validate"), help: ArgumentHelp("taylor-ip: measure N random mixes against the prediction (Spearman) and write validation.csv.", valueName: "N"))
    var validationMixes: Int?

    @Option(name: .customLong("solver-time-limit"), help: ArgumentHelp("taylor-ip: seconds CBC may spend on the integer program.", valueName: "SECONDS"))
    var solverTimeLimit: Double?

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        let result = try GGUFTypeSearchWorkflow(try workflowOptions()).run(progress: TerminalProgress())
        print(result.summary)
        print("wrote \(out)")
    }
}
