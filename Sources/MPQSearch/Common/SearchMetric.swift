import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// How a configuration's outputs are scored against the FP32 model's.
public enum SearchMetric: String, Sendable, CaseIterable {
    /// Output SQNR in dB (all float outputs together).
    case sqnr
    /// Fraction of samples whose arg-max class matches FP32 (classifier outputs [N, C]).
    case top1
    /// Mean KL divergence KL(softmax(FP32) || softmax(quantized)) over the rows of the last axis, in nats.
    case kl
    /// Mean cosine similarity (rows of [N, D]; [N, S, H] mean-pooled with the attention mask).
    case cosine
    /// Accuracy against labels.
    case accuracy

    /// Whether larger values are better (all but KL).
    public var higherIsBetter: Bool { self != .kl }

    /// `a` is a better score than `b`.
    public func isBetter(_ a: Double, than b: Double) -> Bool { higherIsBetter ? a > b : a < b }

    /// Value the metric takes for an unquantized model (`accuracy` uses the FP32 accuracy).
    package func perfect(referenceAccuracy: Double?) -> Double {
        switch self {
        case .sqnr: return .infinity
        case .top1, .cosine: return 1
        case .kl: return 0
        case .accuracy: return referenceAccuracy ?? 1
        }
    }
}

/// Accumulates a metric over batches.
package struct ScoreAccumulator {
    let metric: SearchMetric
    private(set) var comparison = OutputComparison()
    private var divergence = 0.0, rows = 0

    package init(metric: SearchMetric) { self.metric = metric }

    package mutating func add(reference: [String: Tensor], quantized: [String: Tensor], feeds: [String: Tensor], labels: [Int]?) {
        comparison.add(reference: reference, quantized: quantized, feeds: feeds, labels: labels)
        guard metric == .kl else { return }
        for name in reference.keys.sorted() {
            guard let r = reference[name], let q = quantized[name], r.dtype == .float32, q.shape == r.shape,
                  let width = r.shape.last, width > 1 else { continue }
            let a = r.floats(), b = q.floats()
            for start in stride(from: 0, to: a.count, by: width) {
                divergence += Self.kullbackLeibler(a, b, start, width)
                rows += 1
            }
        }
    }

    /// The metric's value (throws when the outputs do not support it, e.g. top-1 of embeddings).
    package func value() throws -> Double {
        switch metric {
        case .sqnr: return comparison.sqnr
        case .top1:
            guard let value = comparison.top1Agreement else { throw MPQError.invalidInput("--metric top1 needs a classifier output [N, C]") }
            return value
        case .cosine:
            guard let value = comparison.cosineSimilarity else {
                throw MPQError.invalidInput("--metric cosine needs [N, D] or [N, S, H] outputs")
            }
            return value
        case .kl:
            guard rows > 0 else { throw MPQError.invalidInput("--metric kl needs float outputs with a last axis of 2 or more") }
            return divergence / Double(rows)
        case .accuracy:
            guard let accuracy = comparison.accuracy else { throw MPQError.invalidInput("--metric accuracy needs --labels and a classifier output") }
            return accuracy.quantized
        }
    }

    /// KL(softmax(a) || softmax(b)) of one row, computed stably in Double.
    static func kullbackLeibler(_ a: [Float], _ b: [Float], _ start: Int, _ count: Int) -> Double {
        func logSoftmax(_ x: [Float]) -> [Double] {
            let row = x[start..<(start + count)].map(Double.init)
            let peak = row.max() ?? 0
            let logSum = log(row.reduce(0) { $0 + exp($1 - peak) }) + peak
            return row.map { $0 - logSum }
        }
        let p = logSoftmax(a), q = logSoftmax(b)
        return zip(p, q).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }
}
