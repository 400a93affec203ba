// KLD against bits per weight from bench/results/llm_vs_llamacpp.csv, drawn with mpq's LinePlot
// (Sources/MPQReports/LinePlot.swift, compiled with this file by bench/llm_vs_llamacpp.sh).
// Usage: llm_plot CSV SVG
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 3, let text = try? String(contentsOfFile: arguments[1], encoding: .utf8) else {
    FileHandle.standardError.write(Data("usage: llm_plot CSV SVG\n".utf8))
    exit(1)
}
let rows = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
guard let header = rows.first, let arm = header.firstIndex(of: "arm"), let bpw = header.firstIndex(of: "bits_per_weight"),
      let kld = header.firstIndex(of: "kld") else {
    FileHandle.standardError.write(Data("the CSV lacks arm, bits_per_weight or kld\n".utf8))
    exit(1)
}
let styles: [(String, String, Bool)] = [("llama.cpp ladder", "#444444", true), ("mpq pareto", "#1f77b4", true),
                                        ("mpq taylor-ip", "#d62728", true), ("random control", "#8c8c8c", false)]
var plot = LinePlot(title: "tiny-llama-jargon: KLD vs F16 (Jargon tail, ctx 512 x 20 chunks)",
                    xLabel: "bits per weight (8 x file bytes / weights)", yLabel: "log10 mean KLD")
let engine = header.firstIndex(of: "engine")
for (name, color, line) in styles {
    // One engine per curve: mpq eval-lm where the arm has it, else the rows there are.
    var selected = rows.dropFirst().filter { $0.count > max(arm, bpw, kld, engine ?? 0) && $0[arm] == name }
    if let engine, selected.contains(where: { $0[engine] == "mpq eval-lm" }) { selected = selected.filter { $0[engine] == "mpq eval-lm" } }
    let points = selected
        .compactMap { row -> (x: Double, y: Double)? in
            // KLD spans orders of magnitude between the ladder's ends and the random control.
            guard let x = Double(row[bpw]), let y = Double(row[kld]), y > 0 else { return nil }
            return (x, log10(y))
        }.sorted { $0.x < $1.x }
    if !points.isEmpty { plot.series.append(.init(name: name, points: points, color: color, drawsLine: line, drawsMarkers: true)) }
}
try plot.svg().write(toFile: arguments[2], atomically: true, encoding: .utf8)
