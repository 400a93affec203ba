import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime
import MPQSearch

/// The files `mpq search taylor-ip` writes: sensitivity.csv (loss MSE per group and candidate),
/// latency.csv (block timings), predicted.csv (the chosen point, predicted and measured),
/// front.csv / front.svg (a sweep) and validation.csv (random configurations).
public enum TaylorSearchFiles {
    package static func text(_ x: Double) -> String { x.isNaN ? "" : String(format: "%.6g", x) }

    static func field(_ text: String) -> String { ParetoSearchFiles.csvField(text) }

    static func lines(_ rows: [String]) -> Data { Data((rows.joined(separator: "\n") + "\n").utf8) }

    /// sensitivity.csv: one row per group (name, op types, site count), one loss-MSE column per
    /// profile candidate, empty where the group does not allow it.
    public static func sensitivityCSV(_ search: TaylorIntegerProgramSearch, _ table: [[Double]]) -> Data {
        let names = search.profile.candidates.map(\.name)
        var rows = [(["group", "op_types", "sites"] + names.map { "loss_mse_\($0)" }).joined(separator: ",")]
        for (g, group) in search.groups.groups.enumerated() {
            let values = names.map { name in
                search.candidates[g].firstIndex { $0.name == name }.map { text(table[g][$0]) } ?? ""
            }
            rows.append(([field(group.name), field(group.opTypes.joined(separator: " ")), String(group.sites.count)] + values)
                .joined(separator: ","))
        }
        return lines(rows)
    }

    /// latency.csv: one row per timed configuration of each block factor (milliseconds, the
    /// block's float32 time, how it was timed), and one row for blocks without groups.
    public static func latencyCSV(_ search: TaylorIntegerProgramSearch, _ blocks: [BlockLatency.Block]) -> Data {
        var rows = ["block,first_node,last_node,groups,configuration,milliseconds,float_milliseconds,timed_as"]
        for (b, block) in blocks.enumerated() {
            for factor in block.factors {
                for (configuration, ms) in zip(factor.configurations, factor.milliseconds) {
                    let described = zip(factor.groups, configuration).map { "\(search.groups.groups[$0].name)=\(search.candidates[$0][$1].name)" }
                    rows.append([String(b), field(block.nodes.first ?? ""), field(block.nodes.last ?? ""),
                                 field(block.groups.map { search.groups.groups[$0].name }.joined(separator: " ")),
                                 field(described.joined(separator: " ")), text(ms), text(block.floatMilliseconds),
                                 block.isExhaustive ? "configuration" : "one group at a time"].joined(separator: ","))
                }
            }
            if block.factors.isEmpty {
                rows.append([String(b), field(block.nodes.first ?? ""), field(block.nodes.last ?? ""), "", "",
                             text(block.baseMilliseconds), text(block.floatMilliseconds), "no groups"].joined(separator: ","))
            }
        }
        return lines(rows)
    }

    /// predicted.csv: predicted against measured loss MSE and latency of the chosen point, its
    /// memory and BOPs, and the solver's status, gap and time.
    public static func predictedCSV(_ choice: TaylorIntegerProgramSearch.Choice, threshold: Double, measuredLoss: Double,
                                    measuredTime: Double) -> Data {
        lines([
            "quantity,predicted,measured,threshold",
            "loss_mse,\(text(choice.predictedLossMSE)),\(text(measuredLoss)),\(text(threshold))",
            "latency_ms,\(text(choice.predictedMilliseconds)),\(text(measuredTime)),",
            "memory_bytes,\(text(choice.memoryBytes)),,",
            "bops,\(text(choice.bops)),,",
            "solver,\(choice.status.rawValue),gap \(text(choice.gap)),\(text(choice.solveSeconds)) s",
        ])
    }

    /// front.csv: one row per point of a threshold sweep, predicted and measured.
    public static func frontCSV(_ front: [TaylorIntegerProgramSearch.FrontPoint]) -> Data {
        var rows = ["threshold,predicted_loss_mse,measured_loss_mse,predicted_ms,measured_ms,memory_bytes,bops,solver_status,solve_seconds"]
        for point in front {
            rows.append([text(point.threshold), text(point.choice.predictedLossMSE), text(point.measuredLossMSE),
                         text(point.choice.predictedMilliseconds), text(point.measuredMilliseconds),
                         text(point.choice.memoryBytes), text(point.choice.bops), point.choice.status.rawValue,
                         text(point.choice.solveSeconds)].joined(separator: ","))
        }
        return lines(rows)
    }

    /// validation.csv: one row per random configuration, predicted and measured loss MSE and latency.
    public static func validationCSV(_ validation: TaylorValidation) -> Data {
        var rows = ["configuration,quantized_groups,predicted_loss_mse,measured_loss_mse,predicted_ms,measured_ms,candidate_per_group"]
        for (index, row) in validation.rows.enumerated() {
            let quantized = row.assignment.filter { $0 != 0 }.count
            rows.append("\(index),\(quantized),\(text(row.predictedLossMSE)),\(text(row.measuredLossMSE)),\(text(row.predictedMilliseconds)),\(text(row.measuredMilliseconds)),"
                        + row.assignment.map(String.init).joined(separator: " "))
        }
        return lines(rows)
    }

    /// Loss MSE (log10) against latency, predicted and measured.
    public static func frontPlot(_ front: [TaylorIntegerProgramSearch.FrontPoint], search: TaylorIntegerProgramSearch) -> LinePlot {
        var plot = LinePlot(title: "Taylor-IP front (\(search.groups.groups.count) quantizer groups)",
                            xLabel: "latency (ms)", yLabel: "log10 loss MSE")
        func log(_ x: Double) -> Double { log10(max(x, 1e-30)) }
        plot.series.append(.init(name: "predicted", points: front.map { ($0.choice.predictedMilliseconds, log($0.choice.predictedLossMSE)) },
                                 color: "#1f77b4", drawsLine: true, drawsMarkers: true))
        plot.series.append(.init(name: "measured", points: front.map { ($0.measuredMilliseconds, log($0.measuredLossMSE)) },
                                 color: "#d62728", drawsLine: true, drawsMarkers: true))
        return plot
    }
}
