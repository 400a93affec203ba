import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

extension GGUFTypeSearchWorkflow {
    /// `--method taylor-ip`: `GGUFTaylorSearch`, then (with `taylor.validationConfigurations`)
    /// `GGUFTaylorValidation` on random mixes, reported and written as validation.csv.
    func taylor(space: GGUFSearchSpace, calibration: GGUFCalibration, weights: GGUFQuantizedWeights, cache: SensitivityCache?,
                speedLimit: GGUFSpeedLimit?, progress: ProgressReporter) throws -> Outcome {
        var search = GGUFTaylorSearch(space: space, calibration: calibration, weights: weights, cache: cache,
                                      options: options.taylor, progress: progress)
        search.speedLimit = speedLimit
        // Uniform mixes that fit are measured too, so the choice is never worse than one of them on calibration.
        let r = try search.run(target: options.target, extraPoints: options.types.compactMap { space.uniform($0) })
        let s = options.taylor.sensitivity
        var report = [
            "- loss: \(s.loss.rawValue), \(s.passesPerChunk) pass(es) per chunk, seed \(s.seed); predicted KLD = (positions / 2) x loss MSE",
            "- calibration KLD: predicted (sum of Taylor sensitivities) \(String(format: "%.6f", r.predictedKLD)), measured \(String(format: "%.6f", r.measuredKLD))",
            "- integer program: CBC \(r.solution.status.rawValue), gap \(String(format: "%.2g", r.solution.gap)), \(String(format: "%.2f", r.solution.solveSeconds)) s; "
                + "its mix measures \(String(format: "%.6f", r.programKLD))" + (r.fromProgram ? " (chosen)" : ", a uniform mix measured better (chosen)"),
            "- search: Taylor passes \(String(format: "%.2f", r.passSeconds)) s (forward + backward, \(calibration.chunks.count * s.passesPerChunk) passes), "
                + "\(r.evaluations) mix evaluation(s), \(String(format: "%.1f", r.seconds)) s",
        ]
        var files: [(String, Data)] = []
        var validation: GGUFTaylorValidation?
        if options.taylor.validationConfigurations > 0 {
            let v = try GGUFTaylorValidation.measure(space: space, sensitivity: r.sensitivity, calibration: calibration, weights: weights,
                                                     cache: cache, count: options.taylor.validationConfigurations,
                                                     seed: s.seed, progress: progress)
            report.append("- additivity validation: \(v.rows.count) random mixes, Spearman(predicted, measured KLD) "
                          + String(format: "%.3f, median measured / predicted %.3f", v.spearman, v.medianRatio))
            files.append(("validation.csv", Data(v.csv.utf8)))
            validation = v
        }
        return Outcome(choice: r.choice, predictedKLD: r.predictedKLD, measuredKLD: r.measuredKLD, sensitivity: r.sensitivity,
                       sensitivityColumn: "predicted_kld", report: report, files: files, taylor: r, validation: validation)
    }
}
