import ArgumentParser
import Foundation
import MPQ

/// `mpq eval-lm`: perplexity (and KL divergence against a reference) of a GGUF decoder LM,
/// scored like llama.cpp's llama-perplexity.
struct EvalLMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-lm",
        abstract: "Perplexity of a GGUF language model (llama-perplexity's scoring), with KL divergence against a reference.",
        discussion: """
        The token stream is cut into chunks of --context tokens; the second half of each chunk is scored. \
        The text (--text) is tokenized with the GGUF's own vocabulary as llama.cpp does; --tokens takes \
        token ids from a .npy file instead (e.g. from HF tokenizers).
        """)

    @Argument(help: "GGUF model (llama, qwen2, qwen3 architectures).")
    var model: String

    @Option(help: ArgumentHelp("Token ids of the evaluation text (.npy, integers).", valueName: "FILE.npy"))
    var tokens: String?

    @Option(help: ArgumentHelp("Evaluation text (UTF-8), tokenized with the model's GGUF vocabulary.", valueName: "FILE"))
    var text: String?

    @Option(help: "Tokens per chunk.")
    var context = 512

    @Option(help: "Chunks to evaluate (default: all).")
    var chunks: Int?

    @Option(help: ArgumentHelp("Reference model for KL divergence and top-token agreement.", valueName: "F16.gguf"))
    var reference: String?

    @Flag(name: .customLong("llama-cpp"), help: "Round activations as llama.cpp's CPU backend does (8-bit blocks, f16 KV cache), to predict llama-perplexity's figures.")
    var simulatesLlamaCpp = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if (tokens == nil) == (text == nil) { throw ValidationError("give exactly one of --tokens FILE.npy or --text FILE") }
        try Check.range(context, "--context", 4...65_536)
        if let chunks { try Check.range(chunks, "--chunks", 1...1_000_000) }
    }

    func run() throws {
        let loaded = try GGUFLanguageModel(contentsOf: model)
        let ids: [Int]
        if let tokens {
            ids = try NPY.read(contentsOf: tokens).integers()
        } else {
            guard let text, let data = FileManager.default.contents(atPath: text) else {
                throw MPQError.fileNotFound(text ?? "")
            }
            let start = Date()
            ids = try loaded.tokenize(String(decoding: data, as: UTF8.self))
            FileHandle.standardError.write(Data("tokenized \(text): \(ids.count) tokens in \(String(format: "%.2f", Date().timeIntervalSince(start))) s\n".utf8))
        }
        let session = try InferenceSession(graph: try loaded.graph(maxSequenceLength: context, simulatingLlamaCpp: simulatesLlamaCpp), options: threadOptions.session)
        var referenceSession: InferenceSession?
        if let reference {
            let other = try GGUFLanguageModel(contentsOf: reference)
            referenceSession = try InferenceSession(graph: try other.graph(maxSequenceLength: context, simulatingLlamaCpp: simulatesLlamaCpp), options: threadOptions.session)
        }
        let c = loaded.configuration
        print("\(model): \(c.architecture), \(c.layers) layers, hidden \(c.hidden), \(c.heads)/\(c.kvHeads) heads, vocab \(c.vocabulary)")
        print("\(ids.count) tokens, context \(context), BOS per chunk: \(loaded.chunkBOS.map(String.init) ?? "none")")
        let evaluation = LanguageModelEvaluation(model: session, reference: referenceSession)
        let result = try evaluation.evaluate(
            tokens: ids, options: .init(context: context, chunks: chunks, bos: loaded.chunkBOS)
        ) { done, total, perplexity in
            FileHandle.standardError.write(Data(String(format: "[%d/%d] %.4f\n", done, total, perplexity).utf8))
        }
        print(String(format: "perplexity: %.4f +/- %.4f over %d chunks (%d scored tokens)",
                     result.perplexity, result.perplexityError, result.chunks, result.scoredTokens))
        if let kld = result.kld, let referencePerplexity = result.referencePerplexity {
            print(String(format: "reference perplexity: %.4f", referencePerplexity))
            print(String(format: "mean KLD: %.6f +/- %.6f", kld.mean, kld.standardError))
            print(String(format: "median KLD: %.6f, 99.0%% KLD: %.6f, maximum KLD: %.6f", kld.median, kld.percentile99, kld.maximum))
            print(String(format: "same top token: %.3f +/- %.3f %%", kld.sameTopRate * 100, kld.sameTopStandardError * 100))
        }
        print(String(format: "speed: %.1f tokens/s (%.2f s in the model's forward passes, %d threads); peak RSS %.1f MiB",
                     result.tokensPerSecond, result.seconds, threadOptions.session.threads,
                     Double(ProcessMemory.peakResidentBytes) / 1_048_576))
    }
}
