import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Perplexity and KL divergence of a causal LM over a token stream, scored the way
/// llama.cpp's `llama-perplexity` does (and its `--kl-divergence` mode).
///
/// The stream is cut into non-overlapping chunks of `context` tokens; each chunk runs from
/// position 0 (with its first token replaced by BOS when `bos` is set, as llama-perplexity does
/// for models whose vocabulary adds one) and only the second half is scored: the logits at
/// positions context/2 ..< context-1 predict tokens context/2+1 ..< context. With a reference
/// model, the KL divergence KL(reference || model) of the next-token distributions and the
/// agreement of their top tokens are taken over the same positions.
public struct LanguageModelEvaluation {
    /// How the token stream is cut and scored (llama-perplexity's -c, --chunks and add_bos).
    public struct Options: Sendable {
        /// Tokens per chunk (llama-perplexity's -c), at least 4; default 512.
        public var context: Int = 512
        /// Chunks to evaluate (nil: every whole chunk of the stream).
        public var chunks: Int?
        /// Token that replaces the first token of each chunk (llama.cpp's add_bos), nil for none.
        public var bos: Int?
        /// Options with llama-perplexity's defaults unless given: 512-token chunks, every chunk, no BOS.
        public init(context: Int = 512, chunks: Int? = nil, bos: Int? = nil) {
            self.context = context
            self.chunks = chunks
            self.bos = bos
        }
    }

    /// KL(reference || model) = sum_v p_ref(v) (log p_ref(v) - log p_model(v)) of the next-token
    /// distributions, in nats, summarised over the scored positions as llama-perplexity's
    /// --kl-divergence prints it.
    public struct KLDivergence: Sendable {
        /// Mean KL divergence over every scored position, in nats.
        public var mean: Double
        /// Standard error of `mean`: sqrt(variance / (n - 1)) over the n scored positions.
        public var standardError: Double
        /// Median KL divergence of a position (llama-perplexity's interpolated percentile).
        public var median: Double
        /// 99th percentile of the per-position KL divergence (interpolated as llama-perplexity does).
        public var percentile99: Double
        /// Largest KL divergence of any scored position.
        public var maximum: Double
        /// Fraction of scored positions where both models' most likely token agrees.
        public var sameTopRate: Double
        /// Standard error of `sameTopRate`: sqrt(p (1 - p) / (n - 1)).
        public var sameTopStandardError: Double
    }

    /// Perplexity, and with a reference the KL divergence, of one evaluation.
    public struct Result: Sendable {
        /// Chunks evaluated.
        public var chunks: Int
        /// Tokens per chunk.
        public var context: Int
        /// Positions scored: chunks x (context - 1 - context / 2).
        public var scoredTokens: Int
        /// Perplexity = exp(mean NLL) over the scored positions (llama-perplexity's PPL).
        public var perplexity: Double
        /// llama-perplexity's "+/-": exp(mean NLL) * standard error of the mean NLL.
        public var perplexityError: Double
        /// Mean negative log-likelihood of the next token, -log p(t_{i+1} | t_0 ... t_i), in nats.
        public var meanNLL: Double
        /// The reference model's perplexity over the same positions (with a reference).
        public var referencePerplexity: Double?
        /// KL divergence from the reference; nil without one.
        public var kld: KLDivergence?
        /// Wall time of the model's forward passes (not the reference's), and tokens through them per second.
        public var seconds: Double
        /// Tokens through the model's forward passes per second: chunks x context / `seconds`.
        public var tokensPerSecond: Double
    }

    /// The evaluated model: a session of a graph from `input_ids` [1, seq] to `logits` [1, seq, vocab].
    public let model: InferenceSession
    /// The model the KL divergence is taken against (e.g. the F16 base); nil: perplexity only.
    public let reference: InferenceSession?

    /// An evaluation of `model`, against `reference` when given.
    public init(model: InferenceSession, reference: InferenceSession? = nil) {
        self.model = model
        self.reference = reference
    }

    /// Logits [context, vocab] of one chunk.
    static func logits(_ session: InferenceSession, _ chunk: [Int]) throws -> Tensor {
        let input = Tensor(shape: [1, chunk.count], scalars: chunk.map { Int64($0) })
        let outputs = try session.run([DecoderGraphBuilder.inputName: input])
        guard let logits = outputs[DecoderGraphBuilder.outputName] ?? outputs.values.first, logits.rank == 3 else {
            throw MPQError.invalidModel("the language model must output logits [batch, seq, vocab]")
        }
        return logits
    }

    /// Log-softmax of one row, in double precision.
    static func logSoftmax(_ row: UnsafePointer<Float>, _ count: Int, into target: inout [Double]) {
        var maximum = -Double.infinity
        for i in 0..<count { maximum = max(maximum, Double(row[i])) }
        var sum = 0.0
        for i in 0..<count { sum += Foundation.exp(Double(row[i]) - maximum) }
        let shift = maximum + Foundation.log(sum)
        for i in 0..<count { target[i] = Double(row[i]) - shift }
    }

    /// Scores `tokens` as llama-perplexity does: perplexity = exp(mean NLL) over the second half of each
    /// chunk, and with a reference the mean KL divergence and top-token agreement over the same positions.
    ///
    /// - Parameters:
    ///   - tokens: the token stream (e.g. from `GGUFLanguageModel.tokenize(_:)`).
    ///   - options: chunk length, number of chunks and BOS.
    ///   - progress: called after each chunk with (chunks done, chunks in all, perplexity so far).
    /// - Throws: `MPQError.invalidInput` for a context under 4, too few tokens for one chunk or a token
    ///   outside the vocabulary; `MPQError.shapeMismatch` when the reference's logits differ in shape.
    public func evaluate(tokens: [Int], options: Options = Options(),
                         progress: ((Int, Int, Double) -> Void)? = nil) throws -> Result {
        let context = options.context
        guard context >= 4 else { throw MPQError.invalidInput("context must be at least 4 tokens") }
        let available = tokens.count / context
        let chunks = min(options.chunks ?? available, available)
        guard chunks > 0 else {
            throw MPQError.invalidInput("\(tokens.count) tokens make no chunk of \(context) (need at least \(context))")
        }
        let first = context / 2
        var nll = 0.0, nll2 = 0.0, referenceNLL = 0.0, count = 0
        var klds: [Double] = [], sameTop = 0
        var seconds = 0.0
        var logProbabilities = [Double](), referenceLogProbabilities = [Double]()
        for chunk in 0..<chunks {
            var ids = Array(tokens[chunk * context..<(chunk + 1) * context])
            if let bos = options.bos { ids[0] = bos }
            let start = Date()
            let logits = try Self.logits(model, ids)
            seconds += Date().timeIntervalSince(start)
            let vocabulary = logits.shape[2]
            let referenceLogits = try reference.map { try Self.logits($0, ids) }
            if let referenceLogits, referenceLogits.shape != logits.shape {
                throw MPQError.shapeMismatch("reference logits \(referenceLogits.shape) differ from the model's \(logits.shape)")
            }
            logProbabilities = [Double](repeating: 0, count: vocabulary)
            referenceLogProbabilities = logProbabilities
            let values = logits.pointer(as: Float.self)
            for position in first..<(context - 1) {
                let target = ids[position + 1]
                guard target >= 0 && target < vocabulary else {
                    throw MPQError.invalidInput("token \(target) is outside the vocabulary of \(vocabulary)")
                }
                Self.logSoftmax(values + position * vocabulary, vocabulary, into: &logProbabilities)
                let loss = -logProbabilities[target]
                nll += loss
                nll2 += loss * loss
                count += 1
                if let referenceLogits {
                    Self.logSoftmax(referenceLogits.pointer(as: Float.self) + position * vocabulary, vocabulary,
                                    into: &referenceLogProbabilities)
                    referenceNLL -= referenceLogProbabilities[target]
                    var kld = 0.0
                    var top = 0, referenceTop = 0
                    for i in 0..<vocabulary {
                        let p = referenceLogProbabilities[i]
                        kld += Foundation.exp(p) * (p - logProbabilities[i])
                        if logProbabilities[i] > logProbabilities[top] { top = i }
                        if p > referenceLogProbabilities[referenceTop] { referenceTop = i }
                    }
                    klds.append(kld)
                    if top == referenceTop { sameTop += 1 }
                }
            }
            progress?(chunk + 1, chunks, Foundation.exp(nll / Double(count)))
        }
        let n = Double(count)
        let mean = nll / n
        let variance = max(0, nll2 / n - mean * mean)
        let meanError = count > 1 ? (variance / (n - 1)).squareRoot() : 0
        var kld: KLDivergence?
        if reference != nil {
            let sorted = klds.sorted()
            let kldMean = klds.reduce(0, +) / n
            let kldVariance = max(0, klds.reduce(0) { $0 + $1 * $1 } / n - kldMean * kldMean)
            let same = Double(sameTop) / n
            kld = KLDivergence(
                mean: kldMean, standardError: count > 1 ? (kldVariance / (n - 1)).squareRoot() : 0,
                median: Self.percentile(sorted, 0.5), percentile99: Self.percentile(sorted, 0.99),
                maximum: sorted.last ?? 0, sameTopRate: same,
                sameTopStandardError: count > 1 ? (same * (1 - same) / (n - 1)).squareRoot() : 0)
        }
        let processed = Double(chunks * context)
        return Result(chunks: chunks, context: context, scoredTokens: count, perplexity: Foundation.exp(mean),
                      perplexityError: Foundation.exp(mean) * meanError, meanNLL: mean,
                      referencePerplexity: reference == nil ? nil : Foundation.exp(referenceNLL / n), kld: kld,
                      seconds: seconds, tokensPerSecond: seconds > 0 ? processed / seconds : 0)
    }

    /// llama-perplexity's percentile: linear interpolation between the sorted values around fraction (n - 1).
    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard let firstValue = sorted.first, let lastValue = sorted.last else { return 0 }
        if fraction <= 0 { return firstValue }
        if fraction >= 1 { return lastValue }
        let position = fraction * Double(sorted.count - 1)
        let index = Int(position), weight = position - Double(index)
        return (1 - weight) * sorted[index] + weight * sorted[min(index + 1, sorted.count - 1)]
    }
}
