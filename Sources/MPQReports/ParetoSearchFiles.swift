import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime
import MPQSearch

/// The files `mpq search --method pareto` writes: pareto.csv / pareto.json (the front),
/// sensitivity.csv (group x candidate) and config.json (the chosen configuration in the
/// `mpq quantize --config FILE.json` layout, plus the choice per group).
public enum ParetoSearchFiles {
    /// A number as text for CSV and reports: infinities as "inf" / "-inf", NaN (not allowed / not evaluated) empty.
    public static func text(_ x: Double?) -> String {
        guard let x, !x.isNaN else { return "" }
        if x.isInfinite { return x > 0 ? "inf" : "-inf" }
        return String(format: "%.6g", x)
    }

    package static func jsonNumber(_ x: Double?) -> Any {
        guard let x, !x.isNaN else { return NSNull() }
        return x.isFinite ? x : (x > 0 ? "inf" : "-inf")
    }

    static func csvField(_ text: String) -> String {
        text.contains(",") || text.contains("\"") ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    /// One row per front point: step, relative cost, predicted and evaluated score, group and candidate changed.
    public static func paretoCSV(_ result: ParetoSearchResult) -> Data {
        var lines = ["step,relative_cost,predicted_\(result.metric.rawValue),evaluated_\(result.metric.rawValue),group,candidate,chosen"]
        for point in result.front {
            lines.append([String(point.step), text(point.relativeCost), text(point.predictedScore), text(point.evaluatedScore),
                          csvField(point.group ?? ""), point.candidate ?? "", point.step == result.chosen ? "yes" : ""]
                .joined(separator: ","))
        }
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// The front, the uniform references, the chosen point and the search statistics.
    public static func paretoJSON(_ result: ParetoSearchResult) throws -> Data {
        let object: [String: Any] = [
            "metric": result.metric.rawValue,
            "points": result.front.map { point -> [String: Any] in
                [
                    "step": point.step, "relative_cost": point.relativeCost,
                    "predicted_score": jsonNumber(point.predictedScore), "evaluated_score": jsonNumber(point.evaluatedScore),
                    "group": point.group ?? NSNull(), "candidate": point.candidate ?? NSNull(),
                ]
            },
            "references": result.references.map { reference -> [String: Any] in
                ["candidate": reference.candidate, "relative_cost": reference.relativeCost, "evaluated_score": jsonNumber(reference.score)]
            },
            "chosen_step": result.chosen ?? NSNull(),
            "statistics": [
                "groups": result.groups.count,
                "phase1_evaluations": result.statistics.phase1Evaluations,
                "phase1_cached": result.statistics.phase1Loaded,
                "phase1_seconds": result.statistics.phase1Seconds,
                "end_to_end_evaluations": result.statistics.fullEvaluations,
                "activation_bytes_spilled": result.statistics.activationBytesSpilled,
            ] as [String: Any],
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// Group x candidate phase-1 scores (empty where the profile does not allow the candidate).
    public static func sensitivityCSV(_ result: ParetoSearchResult, candidateNames: [String]) -> Data {
        var lines = [(["group", "op_types", "sites"] + candidateNames).joined(separator: ",")]
        for (g, group) in result.groups.enumerated() {
            let scores = candidateNames.map { name -> String in
                guard let c = result.candidates[g].firstIndex(where: { $0.name == name }) else { return "" }
                return text(result.sensitivities[g][c])
            }
            lines.append(([csvField(group.name), csvField(group.opTypes.joined(separator: " ")), String(group.sites.count)] + scores)
                .joined(separator: ","))
        }
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// The configuration of `assignment`: every site's format under "tensors" (loadable with
    /// `QuantizationConfig.load`, so `mpq quantize --config config.json` reproduces it) and the choice per group.
    public static func configJSON(_ search: ParetoGreedySearch, assignment: [Int]) throws -> Data {
        try CandidateAssignment(groups: search.groups, candidates: search.candidates, choice: assignment).configJSON(
            granularity: search.options.weightGranularity, weightRange: search.options.weightRange,
            activationRange: search.options.activationRange,
            extra: ["relative_cost": search.relativeCost(assignment), "cost": search.profile.cost.rawValue])
    }

    /// The front as a chart: predicted score against relative cost, evaluated points marked, the
    /// uniform configurations and the chosen point labelled.
    public static func plot(_ result: ParetoSearchResult, costName: String) -> LinePlot {
        let metricName = result.metric == .sqnr ? "output SQNR (dB)" : result.metric.rawValue
        var plot = LinePlot(title: "Pareto front (\(result.groups.count) quantizer groups)",
                            xLabel: "relative cost (\(costName))", yLabel: metricName)
        plot.series.append(.init(name: "predicted", points: result.front.map { ($0.relativeCost, $0.predictedScore) }, color: "#1f77b4"))
        plot.series.append(.init(name: "evaluated", points: result.front.compactMap { point in
            point.evaluatedScore.map { (point.relativeCost, $0) }
        }, color: "#d62728", drawsLine: false, drawsMarkers: true))
        for reference in result.references {
            plot.labelledPoints.append(.init(x: reference.relativeCost, y: reference.score, label: "uniform \(reference.candidate)", color: "#2ca02c"))
        }
        if let chosen = result.chosen, let score = result.front[chosen].evaluatedScore {
            plot.labelledPoints.append(.init(x: result.front[chosen].relativeCost, y: score, label: "chosen (step \(chosen))", color: "#9467bd"))
        }
        return plot
    }
}
