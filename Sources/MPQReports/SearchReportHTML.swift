import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime
import MPQSearch

/// report.html of a search: one self-contained page (inline SVG and CSS, no scripts, no network)
/// with the front, the chosen point, the uniform references and a table of every quantizer group's
/// phase-1 scores and chosen candidate.
public enum SearchReportHTML {
    /// The page for `result` of the search of `model` on `profile`, embedding `plot` (the front)
    /// and a table column per name in `candidateNames`.
    public static func html(model: String, profile: HardwareProfile, result: ParetoSearchResult, plot: LinePlot,
                            candidateNames: [String]) -> String {
        let e = LinePlot.escape
        let chosen = result.chosen.map { result.front[$0] }
        func number(_ x: Double?) -> String { ParetoSearchFiles.text(x) }
        var page = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
                    "<title>mpq search: \(e(model))</title>",
                    "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}"
                        + "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
                        + "td.chosen{background:#e8dcf5;font-weight:bold}.note{color:#666}</style></head><body>",
                    "<h1>Mixed-precision search (Pareto-greedy)</h1>",
                    "<p>model <code>\(e(model))</code>, hardware profile <b>\(e(profile.name))</b>, cost <b>\(profile.cost.rawValue)</b>, "
                        + "metric <b>\(result.metric.rawValue)</b>, \(result.groups.count) quantizer groups, "
                        + "\(result.front.count) front points.</p>",
                    "<p class=\"note\">phase 1: \(result.statistics.phase1Evaluations) evaluations run, \(result.statistics.phase1Loaded) read from the cache, "
                        + String(format: "%.1f s", result.statistics.phase1Seconds)
                        + "; \(result.statistics.fullEvaluations) end-to-end evaluations.</p>"]
        if let chosen {
            page.append("<h2>Chosen point</h2><p>step \(chosen.step): relative cost \(number(chosen.relativeCost)), "
                + "evaluated \(result.metric.rawValue) \(number(chosen.evaluatedScore)), predicted \(number(chosen.predictedScore)).</p>")
        } else {
            page.append("<h2>Chosen point</h2><p>none (no target given, or no point met it).</p>")
        }
        page.append("<h2>Front</h2>")
        page.append(plot.svg())
        page.append("<h2>Uniform configurations</h2><table><tr><th>candidate</th><th>relative cost</th><th>evaluated \(result.metric.rawValue)</th></tr>")
        for reference in result.references {
            page.append("<tr><td>\(e(reference.candidate))</td><td>\(number(reference.relativeCost))</td><td>\(number(reference.score))</td></tr>")
        }
        page.append("</table>")
        page.append("<h2>Quantizer groups</h2><p class=\"note\">phase-1 \(result.metric.rawValue) with only that group quantized; the chosen candidate is highlighted.</p>")
        page.append("<table><tr><th>group</th><th>op types</th><th>activations</th><th>weights</th>"
            + candidateNames.map { "<th>\(e($0))</th>" }.joined() + "<th>chosen</th></tr>")
        for (g, group) in result.groups.enumerated() {
            let choice = chosen.map { result.candidates[g][$0.assignment[g]].name }
            var row = "<tr><td>\(e(group.name))</td><td>\(e(group.opTypes.joined(separator: " ")))</td>"
                + "<td>\(group.activations.count)</td><td>\(group.weights.count)</td>"
            for name in candidateNames {
                let score = result.candidates[g].firstIndex { $0.name == name }.map { result.sensitivities[g][$0] }
                row += "<td\(name == choice ? " class=\"chosen\"" : "")>\(score.map { number($0) } ?? "&ndash;")</td>"
            }
            row += "<td>\(e(choice ?? ""))</td></tr>"
            page.append(row)
        }
        page.append("</table></body></html>")
        return page.joined(separator: "\n") + "\n"
    }
}
