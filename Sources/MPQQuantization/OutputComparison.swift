import Foundation
import MPQGraph
import MPQRuntime

/// How far a quantized model's outputs are from the FP32 model's over a
/// data set: SQNR in dB, top-1 agreement for classifier logits [N, C],
/// cosine similarity of embeddings (rows of [N, D] outputs, or [N, S, H]
/// outputs mean-pooled over tokens with the `attention_mask` input when there
/// is one), and labelled accuracy.
///
/// For [N, S, H] outputs with an `attention_mask` [N, S] feed, SQNR counts only
/// the tokens the mask keeps: padded positions carry no meaning (every reader
/// of the embedding masks them), and their errors would otherwise dominate.
public struct OutputComparison: Sendable {
    /// Σ ref² over all outputs compared so far (SQNR's numerator).
    public private(set) var signalEnergy = 0.0
    /// Σ (ref − q)² over all outputs compared so far (SQNR's denominator).
    public private(set) var noiseEnergy = 0.0
    private var agreements = 0, rows = 0
    private var cosineSum = 0.0, embeddings = 0
    private var correct = 0, referenceCorrect = 0, labelled = 0

    /// An empty comparison; feed it batches with `add`.
    public init() {}

    /// Output SQNR in dB: 10 log10(sum ref^2 / sum (ref - q)^2); infinite when identical.
    public var sqnr: Double { noiseEnergy == 0 ? .infinity : 10 * log10(signalEnergy / noiseEnergy) }
    /// Fraction of samples whose arg-max class matches the FP32 model's (classifiers).
    public var top1Agreement: Double? { rows == 0 ? nil : Double(agreements) / Double(rows) }
    /// Mean cosine similarity of FP32 and quantized embeddings.
    public var cosineSimilarity: Double? { embeddings == 0 ? nil : cosineSum / Double(embeddings) }
    /// Accuracy against labels of the quantized and of the FP32 model.
    public var accuracy: (quantized: Double, reference: Double)? {
        labelled == 0 ? nil : (Double(correct) / Double(labelled), Double(referenceCorrect) / Double(labelled))
    }

    /// Adds one batch. `labels` (class indices, one per sample) apply to the first classifier output.
    public mutating func add(reference: [String: Tensor], quantized: [String: Tensor], feeds: [String: Tensor],
                             labels: [Int]? = nil) {
        for name in reference.keys.sorted() {
            guard let r = reference[name], let q = quantized[name], r.dtype == .float32, q.shape == r.shape else { continue }
            let a = r.floats(), b = q.floats()
            let mask = r.rank == 3 ? feeds["attention_mask"].flatMap { $0.shape == [r.shape[0], r.shape[1]] ? $0.integers() : nil } : nil
            let rowLength = r.rank == 3 ? r.shape[2] : a.count
            for row in 0..<(a.count / max(rowLength, 1)) where mask?[row] ?? 1 != 0 {
                for i in (row * rowLength)..<((row + 1) * rowLength) {
                    signalEnergy += Double(a[i]) * Double(a[i])
                    noiseEnergy += Double(a[i] - b[i]) * Double(a[i] - b[i])
                }
            }
            if r.rank == 2 && r.shape[1] > 1 {
                let classes = r.shape[1]
                for row in 0..<r.shape[0] {
                    let top = argmax(a, row * classes, classes), topQ = argmax(b, row * classes, classes)
                    if top == topQ { agreements += 1 }
                    rows += 1
                    if let labels, row < labels.count {
                        labelled += 1
                        if topQ == labels[row] { correct += 1 }
                        if top == labels[row] { referenceCorrect += 1 }
                    }
                    cosineSum += cosine(a, b, row * classes, classes)
                    embeddings += 1
                }
            } else if r.rank == 3 {
                let (n, s, h) = (r.shape[0], r.shape[1], r.shape[2])
                for sample in 0..<n {
                    var pooledA = [Double](repeating: 0, count: h), pooledB = pooledA
                    for token in 0..<s where mask?[sample * s + token] ?? 1 != 0 {
                        let base = (sample * s + token) * h
                        for k in 0..<h {
                            pooledA[k] += Double(a[base + k])
                            pooledB[k] += Double(b[base + k])
                        }
                    }
                    let dot = zip(pooledA, pooledB).reduce(0) { $0 + $1.0 * $1.1 }
                    let norms = (pooledA.reduce(0) { $0 + $1 * $1 } * pooledB.reduce(0) { $0 + $1 * $1 }).squareRoot()
                    cosineSum += norms == 0 ? 1 : dot / norms
                    embeddings += 1
                }
            }
        }
    }

    private func argmax(_ values: [Float], _ start: Int, _ count: Int) -> Int {
        var best = 0
        for i in 1..<count where values[start + i] > values[start + best] { best = i }
        return best
    }

    private func cosine(_ a: [Float], _ b: [Float], _ start: Int, _ count: Int) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in start..<(start + count) {
            dot += Double(a[i]) * Double(b[i])
            na += Double(a[i]) * Double(a[i])
            nb += Double(b[i]) * Double(b[i])
        }
        return na * nb == 0 ? 1 : dot / (na * nb).squareRoot()
    }
}
