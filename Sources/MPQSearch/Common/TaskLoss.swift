import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// The task loss whose gradients drive Taylor-IP sensitivity (docs/DESIGN.md
/// method 2): dL ~ g_W . dW + g_A . dA, loss MSE = E[dL^2] over samples.
///
/// Every loss is a sum of per-sample losses. Cross-entropies average over the
/// positions of a sample (tokens, pixels), so a sample's loss does not grow
/// with its length.
public enum TaskLoss: DifferentiableLoss {
    /// Cross-entropy of logits [N, C] (or [N, ..., C]) against class labels:
    /// one per sample, or one per position (N x the middle dims), in row-major order.
    case crossEntropy(labels: [Int])
    /// Cross-entropy against the model's own FP32 predictions (the argmax of
    /// the logits): the default for classifiers without labels.
    case pseudoLabelCrossEntropy
    /// Language-model logits [N, T, V] scored against the token ids fed as
    /// input `inputIDs` [N, T] shifted by one (position t predicts id t+1).
    /// When the feeds hold `attentionMask` [N, T], targets it marks 0 are skipped.
    case nextTokenCrossEntropy(inputIDs: String = "input_ids", attentionMask: String? = "attention_mask")
    /// For embedding models: `count` heads L_k = <y, r_k>, r_k ~ N(0, I) over
    /// a sample's output y, fixed by `seed`.
    ///
    /// A loss minimised at the FP32 output (e.g. the MSE to it) has zero
    /// gradient there, so its first-order term vanishes. With random
    /// projections E_r[(r . J dA)^2] = ||J dA||^2: averaging each head's
    /// squared first-order term (g_k . dA)^2 over heads estimates the output's
    /// squared error, which output SQNR measures. The engine therefore
    /// back-propagates every head separately (`GradientResult.headGradients`),
    /// after one forward pass.
    case randomProjection(count: Int, seed: UInt64)

    /// Per-head, per-sample loss values and each head's seed gradient
    /// d(sum over samples of the head's loss) / d(output).
    public func evaluate(output: Tensor, feeds: [String: Tensor]) throws -> LossEvaluation {
        guard output.dtype == .float32 else { throw MPQError.typeMismatch("the loss needs a float32 output, got \(output.dtype)") }
        switch self {
        case .crossEntropy(let labels):
            return try Self.crossEntropy(logits: output, labels: labels)
        case .pseudoLabelCrossEntropy:
            let (_, classes, _) = try Self.logitRows(output)
            let values = output.pointer(as: Float.self)
            let labels = stride(from: 0, to: output.count, by: max(classes, 1)).map { start in
                (0..<classes).max { values[start + $0] < values[start + $1] } ?? 0
            }
            return try Self.crossEntropy(logits: output, labels: labels)
        case .nextTokenCrossEntropy(let inputIDs, let attentionMask):
            return try Self.nextToken(logits: output, feeds: feeds, inputIDs: inputIDs, attentionMask: attentionMask)
        case .randomProjection(let count, let seed):
            return try Self.randomProjection(output: output, count: count, seed: seed)
        }
    }

    /// (samples, classes, positions per sample) of logits [N, ..., C].
    private static func logitRows(_ logits: Tensor) throws -> (samples: Int, classes: Int, positions: Int) {
        guard logits.rank >= 2, let classes = logits.shape.last, classes > 0 else {
            throw MPQError.shapeMismatch("cross-entropy needs logits [N, C] or [N, ..., C], got \(logits.shape)")
        }
        return (logits.shape[0], classes, logits.shape.dropFirst().dropLast().reduce(1, *))
    }

    private static func crossEntropy(logits: Tensor, labels: [Int]) throws -> LossEvaluation {
        let (samples, classes, positions) = try logitRows(logits)
        guard labels.count == samples * positions else {
            let expected = positions == 1 ? "\(samples) (one per sample)" : "\(samples * positions) (one per position of \(samples) samples)"
            throw MPQError.shapeMismatch("cross-entropy got \(labels.count) labels for logits \(logits.shape): expected \(expected)")
        }
        if let bad = labels.first(where: { $0 < 0 || $0 >= classes }) {
            throw MPQError.invalidInput("label \(bad) is outside the \(classes) classes of logits \(logits.shape)")
        }
        let targets = labels.map { Optional($0) }
        return softmaxCrossEntropy(logits: logits, targets: targets, samples: samples, positions: positions,
                                   classes: classes)
    }

    /// Mean over a sample's positions of -log softmax(logits)[target] (nil targets skipped);
    /// the seed gradient is (softmax - onehot) / counted positions.
    private static func softmaxCrossEntropy(logits: Tensor, targets: [Int?], samples: Int, positions: Int,
                                            classes: Int) -> LossEvaluation {
        let seed = Tensor(zeros: .float32, shape: logits.shape)
        let x = logits.pointer(as: Float.self), g = seed.pointer(as: Float.self)
        var losses = [Double](repeating: 0, count: samples)
        for sample in 0..<samples {
            let counted = (0..<positions).filter { targets[sample * positions + $0] != nil }.count
            guard counted > 0 else { continue }
            for position in 0..<positions {
                let row = sample * positions + position
                guard let target = targets[row] else { continue }
                let base = row * classes
                var largest = -Double.infinity
                for c in 0..<classes { largest = max(largest, Double(x[base + c])) }
                var total = 0.0
                for c in 0..<classes { total += exp(Double(x[base + c]) - largest) }
                let logTotal = log(total) + largest
                losses[sample] += (logTotal - Double(x[base + target])) / Double(counted)
                for c in 0..<classes {
                    let probability = exp(Double(x[base + c]) - logTotal)
                    g[base + c] = Float((probability - (c == target ? 1 : 0)) / Double(counted))
                }
            }
        }
        return LossEvaluation(headLosses: [losses], seeds: [seed])
    }

    private static func nextToken(logits: Tensor, feeds: [String: Tensor], inputIDs: String,
                                  attentionMask: String?) throws -> LossEvaluation {
        guard logits.rank == 3 else {
            throw MPQError.shapeMismatch("next-token cross-entropy needs logits [N, T, V], got \(logits.shape)")
        }
        guard let ids = feeds[inputIDs] else {
            throw MPQError.invalidInput("next-token cross-entropy reads the token ids from input '\(inputIDs)', which the feeds lack")
        }
        let (samples, length, vocabulary) = (logits.shape[0], logits.shape[1], logits.shape[2])
        guard ids.shape == [samples, length] else {
            throw MPQError.shapeMismatch("token ids '\(inputIDs)' have shape \(ids.shape), the logits \(logits.shape) need [\(samples), \(length)]")
        }
        let tokens = ids.integers()
        var mask = [Int](repeating: 1, count: tokens.count)
        if let attentionMask, let given = feeds[attentionMask] {
            guard given.shape == ids.shape else {
                throw MPQError.shapeMismatch("attention mask '\(attentionMask)' has shape \(given.shape), the ids \(ids.shape)")
            }
            mask = given.integers()
        }
        var targets = [Int?](repeating: nil, count: samples * length)
        for sample in 0..<samples {
            for t in 0..<max(length - 1, 0) where mask[sample * length + t + 1] != 0 {
                let target = tokens[sample * length + t + 1]
                guard target >= 0 && target < vocabulary else {
                    throw MPQError.invalidInput("token id \(target) is outside the vocabulary of \(vocabulary) logits")
                }
                targets[sample * length + t] = target
            }
        }
        return softmaxCrossEntropy(logits: logits, targets: targets, samples: samples, positions: length,
                                   classes: vocabulary)
    }

    private static func randomProjection(output: Tensor, count: Int, seed: UInt64) throws -> LossEvaluation {
        guard count >= 1 else { throw MPQError.invalidInput("random projection needs at least one head, got \(count)") }
        guard output.rank >= 1, output.shape[0] > 0 else {
            throw MPQError.shapeMismatch("random projection needs a batched output [N, ...], got \(output.shape)")
        }
        let samples = output.shape[0]
        let width = output.count / samples
        var generator = SplitMix64(seed: seed)
        let y = output.pointer(as: Float.self)
        var losses: [[Double]] = []
        var seeds: [Tensor] = []
        for _ in 0..<count {
            let direction = (0..<width).map { _ in generator.nextGaussian() }
            let seedTensor = Tensor(uninitialized: .float32, shape: output.shape)
            let g = seedTensor.pointer(as: Float.self)
            var head = [Double](repeating: 0, count: samples)
            for sample in 0..<samples {
                var total = 0.0
                for j in 0..<width {
                    total += Double(y[sample * width + j]) * direction[j]
                    g[sample * width + j] = Float(direction[j])
                }
                head[sample] = total
            }
            losses.append(head)
            seeds.append(seedTensor)
        }
        return LossEvaluation(headLosses: losses, seeds: seeds)
    }
}
