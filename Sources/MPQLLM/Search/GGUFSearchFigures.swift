import Foundation
import MPQReports

/// The figures `mpq search-lm` writes next to its CSV files: the KLD-vs-bits-per-weight plot of
/// what the search saw (front.svg: the Pareto front, predicted and measured; or, for Taylor-IP,
/// the validation mixes and the chosen one) and report.html (report.md with the plot).
enum GGUFSearchFigures {
    /// The Pareto front over bits per weight: predicted KLD as a line, measured points as markers,
    /// the chosen point labelled.
    static func front(_ r: GGUFParetoSearch.Result) -> LinePlot {
        var plot = LinePlot(title: "Pareto front (mean KLD from the base model, calibration text)",
                            xLabel: "bits per weight", yLabel: "mean KLD")
        plot.series.append(.init(name: "predicted (sum of sensitivities)",
                                 points: r.front.map { ($0.bitsPerWeight, $0.predictedKLD) }, color: "#1f77b4"))
        plot.series.append(.init(name: "measured", points: r.front.compactMap { p in p.measuredKLD.map { (p.bitsPerWeight, $0) } },
                                 color: "#d62728", drawsLine: false, drawsMarkers: true))
        let chosen = r.front[r.chosen]
        plot.labelledPoints.append(.init(x: chosen.bitsPerWeight, y: chosen.measuredKLD ?? chosen.predictedKLD,
                                         label: "chosen", color: "#2ca02c"))
        return plot
    }

    /// Taylor-IP's chosen mix over bits per weight, with the validation mixes (predicted and measured) when there are any.
    static func taylor(_ r: GGUFTaylorSearch.Result, validation: GGUFTaylorValidation?) -> LinePlot {
        var plot = LinePlot(title: "Taylor-IP (mean KLD from the base model, calibration text)",
                            xLabel: "bits per weight", yLabel: "mean KLD")
        if let rows = validation?.rows.sorted(by: { $0.bitsPerWeight < $1.bitsPerWeight }), !rows.isEmpty {
            plot.series.append(.init(name: "random mixes, predicted", points: rows.map { ($0.bitsPerWeight, $0.predictedKLD) },
                                     color: "#1f77b4", drawsLine: false, drawsMarkers: true))
            plot.series.append(.init(name: "random mixes, measured", points: rows.map { ($0.bitsPerWeight, $0.measuredKLD) },
                                     color: "#d62728", drawsLine: false, drawsMarkers: true))
        }
        plot.labelledPoints.append(.init(x: r.bitsPerWeight, y: r.measuredKLD, label: "chosen", color: "#2ca02c"))
        return plot
    }

    /// report.html: the report's text and the plot, in one self-contained page.
    static func html(report: String, svg: String) -> String {
        let text = LinePlot.escape(report)
        return """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>mpq search-lm</title>
        <style>body { font-family: sans-serif; margin: 2em; } pre { background: #f6f6f6; padding: 1em; }</style>
        </head><body>
        <h1>mpq search-lm</h1>
        \(svg)
        <pre>\(text)</pre>
        </body></html>

        """
    }
}
