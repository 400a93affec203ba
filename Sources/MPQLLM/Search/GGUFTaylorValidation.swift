import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// How well the additive Taylor prediction ranks mixes (as `TaylorValidation` does for ONNX
/// models; Markovich-Golan et al. 2025, arXiv 2505.13060, the additivity assumption behind the
/// integer program): random mixes, each predicted (sum of its groups' sensitivities) and
/// measured (calibration KLD of the whole mix), and the Spearman rank correlation of the two.
public struct GGUFTaylorValidation: Sendable {
    /// One random mix, predicted and measured.
    public struct Row: Sendable {
        /// The candidate of every group.
        public var choice: [Int]
        /// Bytes of the mix's GGUF file.
        public var fileBytes: Int
        /// llama.cpp's bits per weight of the mix.
        public var bitsPerWeight: Double
        /// Sum of its groups' sensitivities.
        public var predictedKLD: Double
        /// Its mean KLD from the base model on the calibration chunks.
        public var measuredKLD: Double
    }

    /// The measured mixes.
    public var rows: [Row]
    /// Spearman rank correlation of predicted and measured KLD.
    public var spearman: Double
    /// Median of measured / predicted KLD (how far the prediction's scale is off).
    public var medianRatio: Double

    /// Measures `count` random mixes. Mix i moves each group with probability (i + 0.5) / count
    /// from its largest candidate to a random smaller one, so the set spans nearly the largest to
    /// nearly the smallest mix.
    public static func measure(space: GGUFSearchSpace, sensitivity: [[Double]], calibration: GGUFCalibration,
                               weights: GGUFQuantizedWeights, cache: SensitivityCache?, count: Int, seed: UInt64 = 1,
                               progress: ProgressReporter = SilentProgress()) throws -> GGUFTaylorValidation {
        guard count >= 2 else { throw MPQError.invalidInput("validation needs at least 2 configurations, got \(count)") }
        var generator = SplitMix64(seed: seed)
        var rows: [Row] = []
        for i in 0..<count {
            let probability = (Double(i) + 0.5) / Double(count)
            let choice = space.groups.map { group -> Int in
                let largest = group.candidates.count - 1
                guard largest > 0, generator.nextUnit() < probability else { return largest }
                return min(Int(generator.nextUnit() * Double(largest)), largest - 1)
            }
            let predicted = zip(sensitivity, choice).reduce(0) { $0 + $1.0[$1.1] }
            let measured = try calibration.kld(of: choice, in: space, weights: weights, cache: cache)
            rows.append(Row(choice: choice, fileBytes: space.fileBytes(choice), bitsPerWeight: space.bitsPerWeight(choice),
                            predictedKLD: predicted, measuredKLD: measured))
            progress.progress("validation", done: i + 1, total: count)
        }
        let ratios = rows.filter { $0.predictedKLD > 0 }.map { $0.measuredKLD / $0.predictedKLD }.sorted()
        return GGUFTaylorValidation(rows: rows,
                                    spearman: TaylorValidation.spearman(rows.map(\.predictedKLD), rows.map(\.measuredKLD)),
                                    medianRatio: ratios.isEmpty ? .nan : ratios[ratios.count / 2])
    }

    /// validation.csv: one line per mix.
    public var csv: String {
        var lines = ["index,file_bytes,bits_per_weight,predicted_kld,measured_kld"]
        for (i, r) in rows.enumerated() {
            lines.append("\(i),\(r.fileBytes),\(String(format: "%.6f", r.bitsPerWeight)),\(r.predictedKLD),\(r.measuredKLD)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
