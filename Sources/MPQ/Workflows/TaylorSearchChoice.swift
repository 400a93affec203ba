import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

extension TaylorSearchWorkflow {
    /// Solves at `threshold`, measures the choice (and on the held-out data), and adds config.json,
    /// predicted.csv and the exported model; returns the lines to print.
    func choose(_ search: TaylorIntegerProgramSearch, threshold: Double, budgets: TaylorIntegerProgramSearch.Budgets,
                loss: TaskLoss, inputs: SearchInputs, progress: ProgressReporter, result: inout Result) throws -> [String] {
        var limited = budgets
        limited.maxLossMSE = threshold
        let choice = try search.solve(objective: options.objective, budgets: limited)
        let measuredLoss = try search.measuredLossMSE(choice.assignment)
        let measuredTime = try search.measuredMilliseconds(choice.assignment)
        let quantizedGroups = choice.assignment.enumerated().reduce(0) { $0 + (search.candidates[$1.offset][$1.element].weights == .float32 ? 0 : 1) }
        var lines = [
            String(format: "CBC: %@, gap %.3g, %.3f s", choice.status.rawValue, choice.gap, choice.solveSeconds),
            String(format: "chosen: predicted loss MSE %.4g (threshold %.4g), measured %.4g; predicted latency %.3f ms, measured %.3f ms",
                   choice.predictedLossMSE, threshold, measuredLoss, choice.predictedMilliseconds, measuredTime),
            "\(quantizedGroups) of \(search.groups.groups.count) groups quantized",
        ]
        result.files.add("config.json", try search.configJSON(choice.assignment))
        result.files.add("predicted.csv", TaylorSearchFiles.predictedCSV(choice, threshold: threshold, measuredLoss: measuredLoss,
                                                                          measuredTime: measuredTime))
        let model = try search.quantizedModel(choice.assignment)
        var section: [String: Any] = ["method": "taylor-ip", "target": "predicted loss MSE <= \(threshold)", "max_loss_mse": threshold,
                                      "predicted_loss_mse": choice.predictedLossMSE, "calibration_loss_mse": measuredLoss,
                                      "predicted_ms": choice.predictedMilliseconds, "measured_ms": measuredTime,
                                      "latency_noise": search.latency.noise.reportFields]
        inputs.describe(model, in: &section)
        if let heldOut = inputs.heldOut {
            let calibration = try CandidateCalibration(graph: inputs.graph, placement: search.placement, data: heldOut,
                                                       batchSize: options.batchSize, options: options.session,
                                                       progress: progress.steps("held-out reference"))
            let sensitivity = try TaylorSensitivity(graph: inputs.graph, data: heldOut, calibration: calibration, loss: loss,
                                                    options: options.session)
            let heldOutLoss = try sensitivity.measuredLossMSE(model)
            let held = heldOutLoss <= threshold
            (result.heldOutLossMSE, result.targetHeldOnHeldOut) = (heldOutLoss, held)
            section["held_out_loss_mse"] = heldOutLoss
            section["target_held_on_held_out"] = held
            lines.append(String(format: "held-out --eval data: measured loss MSE %.4g (calibration %.4g): ", heldOutLoss, measuredLoss)
                         + (held ? "the threshold holds" : String(format: "the threshold %.4g does NOT hold", threshold)))
        }
        var report = try QuantizationReport(model: model, data: inputs.evaluated, batchSize: options.batchSize,
                                            labels: inputs.heldOut == nil ? try options.labels.map { try ClassLabels.load($0, graph: inputs.graph) } : nil,
                                            options: options.session, progress: progress.steps("evaluating"))
        report.heldOut = inputs.heldOut != nil
        try QuantizedModelFiles.add(model, report: &report, search: section, to: &result.files)
        lines.append(report.summary)
        (result.choice, result.model, result.report, result.measuredLossMSE) = (choice, model, report, measuredLoss)
        return lines
    }
}

/// `--validate N`: predicted against measured loss MSE and latency over random configurations, and the
/// integer program's choice at uniform int8's predicted loss MSE against uniform int8 itself.
struct TaylorValidationRun {
    var search: TaylorIntegerProgramSearch
    var objective: TaylorIntegerProgramSearch.Objective
    var budgets: TaylorIntegerProgramSearch.Budgets

    func run(count: Int, progress: ProgressReporter, result: inout TaylorSearchWorkflow.Result) throws -> [String] {
        let validation = try TaylorValidation.measure(search, count: count, progress: progress.steps("validating"))
        result.validation = validation
        result.files.add("validation.csv", TaylorSearchFiles.validationCSV(validation))
        var lines = [String(format: "validation over %d random configurations: Spearman(predicted, measured loss MSE) = %.4f; "
                            + "latency |predicted - measured| / measured: mean %.1f%%, max %.1f%%",
                            count, validation.lossSpearman, validation.meanLatencyError * 100, validation.maxLatencyError * 100)]
        for single in validation.singleGroups {
            lines.append(String(format: "  %@ at %@ alone: predicted loss MSE %.4g, measured %.4g",
                                search.groups.groups[single.group].name, search.candidates[single.group][single.candidate].name,
                                single.predictedLossMSE, single.measuredLossMSE))
        }
        // The widest integer weights this CPU's int8 kernels take (w7a8 also runs int8 on VNNI CPUs).
        let bits = CPUFeatures.current.int8WeightBits
        let integer = try (bits >= 8 ? ["w\(bits)a8", "w7a8"] : ["w\(bits)a8"]).map { try Candidate(parsing: $0) }
        guard let int8 = integer.first(where: search.profile.candidates.contains) else {
            lines.append("profile \(search.profile.name) has no \(integer[0].name) candidate: no comparison with uniform int8")
            return lines
        }
        let uniform = search.uniformAssignment(int8)
        var atUniform = budgets
        atUniform.maxLossMSE = try search.predictedLossMSE(uniform)
        let choice = try search.solve(objective: objective, budgets: atUniform)
        let uniformLoss = try search.measuredLossMSE(uniform), chosenLoss = try search.measuredLossMSE(choice.assignment)
        // Timed in turns, keeping each one's fastest: a slow spell of a shared machine then hits both alike.
        var uniformTime = Double.infinity, chosenTime = Double.infinity
        for _ in 0..<3 {
            uniformTime = min(uniformTime, try search.measuredMilliseconds(uniform))
            chosenTime = min(chosenTime, try search.measuredMilliseconds(choice.assignment))
        }
        let differing = zip(uniform, choice.assignment).filter { $0 != $1 }.count
        let floatTime = try search.measuredMilliseconds([Int](repeating: 0, count: search.groups.groups.count))
        lines.append(String(format: "IP solve %.3f s (%@, gap %.3g) at threshold %.4g (uniform %@ predicted loss MSE)",
                            choice.solveSeconds, choice.status.rawValue, choice.gap, atUniform.maxLossMSE, int8.name))
        lines.append(String(format: "uniform %@: measured loss MSE %.4g, %.3f ms; chosen (%d of %d groups differ): measured loss MSE %.4g, %.3f ms; most precise: %.3f ms",
                            int8.name, uniformLoss, uniformTime, differing, uniform.count, chosenLoss, chosenTime, floatTime))
        lines.append("chosen configuration " + (chosenTime < uniformTime && chosenLoss <= uniformLoss
            ? "is faster than uniform \(int8.name) at equal or lower measured loss MSE"
            : "is not both faster and at most as lossy as uniform \(int8.name)"))
        return lines
    }
}
