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
    public struct Options: Sendable {
        public var context: Int = 512
        /// Chunks to evaluate (nil: every whole chunk of the stream).
        public var chunks: Int?
        /// Token that replaces the first token of each chunk (llama.cpp's add_bos), nil for none.
        public var bos: Int?
        public init(context: Int = 512, chunks: Int? = nil, bos: Int? = nil) {
            self.context = context
            self.chunks = chunks
            self.bos = bos
        }
    }

    public struct KLDivergence: Sendable {
        public var mean: Double
        public var standardError: Double
        public var median: Double
        public var percentile99: Double
        public var maximum: Double
        /// Fraction of scored positions where both models' most likely token agrees.
        public var sameTopRate: Double
        public var sameTopStandardError: Double
    }

    public struct Result: Sendable {
        public var chunks: Int
        public var context: Int
        public var scoredTokens: Int
        public var perplexity: Double
        /// llama-perplexity's "+/-": exp(mean NLL) * standard error of the mean NLL.
        public var perplexityError: Double
        public var meanNLL: Double
        /// The reference model's perplexity over the same positions (with a reference).
        public var referencePerplexity: Double?
        public var kld: KLDivergence?
        /// Wall time of the model's forward passes (not the reference's), and tokens through them per second.
        public var seconds: Double
        public var tokensPerSecond: Double
    }

    public let model: InferenceSession
    public let reference: InferenceSession?

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
