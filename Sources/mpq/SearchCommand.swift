import ArgumentParser
import Foundation
import MPQ

/// Mixed-precision search methods `mpq search --method` offers.
enum SearchMethod: String, ExpressibleByArgument, CaseIterable {
    /// Pareto-greedy (Pandey et al. 2023; AIMET's AMP).
    case pareto
    /// Taylor-IP (Markovich-Golan et al. 2025): loss-MSE sensitivities, measured block latency, CBC.
    case taylorIP = "taylor-ip"
}

struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Find per-layer precisions: the accuracy-vs-cost front and a configuration that meets a target.",
        discussion: """
            Writes DIR/pareto.csv, pareto.json, sensitivity.csv, pareto.svg, report.html and, with a target, \
            config.json (loadable by `mpq quantize --config`), model.qdq.onnx, encodings.json and report.json of the chosen point.
            """)

    @Argument(help: "ONNX model file.")
    var model: String

    @Option(help: "Search method.")
    var method: SearchMethod = .pareto

    @Option(help: ArgumentHelp("Calibration data: .npy, .npz or a folder of them.", valueName: "DATA"))
    var calib: String

    @Option(help: ArgumentHelp("Candidates to consider, comma-separated (default: the profile's).", valueName: "w8a8,w4a8,..."))
    var candidates: String?

    @Option(help: ArgumentHelp("Hardware profile: default, cpu-avx2 or a JSON file.", valueName: "NAME|FILE.json"))
    var profile = "default"

    @Option(help: ArgumentHelp("The runtime the exported model will run on: ort-x86 (7-bit weights in int8 kernels on CPUs without VNNI), ort-arm64 or generic; default: this machine's.", valueName: "TARGET"))
    var deploy: DeploymentTarget = .host

    /// The profile restricted to `--candidates` and adapted to `--deploy` (a warning line per change).
    func hardwareProfile() throws -> HardwareProfile {
        var hardware = try HardwareProfile.load(profile)
        if let candidates {
            hardware = try hardware.restricted(to: candidates.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        let deployed = hardware.deployed(on: deploy)
        for note in deployed.notes { FileHandle.standardError.write(Data("warning: \(note)\n".utf8)) }
        return deployed.profile
    }

    @Option(name: .customLong("metric"), help: ArgumentHelp("pareto: score: \(SearchMetric.allCases.map(\.rawValue).joined(separator: ", ")) (default sqnr).", valueName: "METRIC"))
    var metricOption: String?
    var metric: String { metricOption ?? "sqnr" }

    @Option(help: ArgumentHelp("Class labels, one integer per calibration sample (pareto: for --metric accuracy; taylor-ip: the cross-entropy loss).", valueName: "FILE.npy"))
    var labels: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("pareto: select the cheapest point whose output SQNR is at least DB (metric sqnr).", valueName: "DB"))
    var targetSqnr: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("pareto: select the cheapest point whose metric drops at most X (SQNR: from the most precise configuration).", valueName: "X"))
    var maxDrop: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("pareto: select the best point of relative cost at most R.", valueName: "R"))
    var targetCost: Double?

    @Option(help: ArgumentHelp("Score cache folder (default: ~/.cache/mpq).", valueName: "DIR"))
    var cache: String?

    @Option(name: .customLong("cache-memory"), help: ArgumentHelp("pareto: memory for cached activations; the rest spills to the cache folder (e.g. 512MB, 2GB; default 2GB).", valueName: "SIZE"))
    var cacheMemoryOption: String?
    var cacheMemory: String { cacheMemoryOption ?? "2GB" }

    @Flag(help: "pareto: run the whole model for every phase-1 evaluation instead of only the part after each group.")
    var noActivationCache = false

    @Option(help: ArgumentHelp("Activation range estimator: minmax, percentile or mse.", valueName: "METHOD"))
    var activationRange = "mse"

    @Option(help: ArgumentHelp("Weight range estimator: minmax or mse.", valueName: "METHOD"))
    var weightRange = "minmax"

    @Option(parsing: .unconditional, help: "Samples per batch.")
    var batchSize = 16

    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: ArgumentHelp("Output folder (created if missing).", valueName: "DIR"))
    var out: String

    @OptionGroup var taylor: TaylorSearchOptions

    /// The pareto-only options given on the command line (to reject them under taylor-ip).
    private var paretoOptionsGiven: [String] {
        var names: [String] = []
        if targetSqnr != nil { names.append("--target-sqnr") }
        if maxDrop != nil { names.append("--max-drop") }
        if targetCost != nil { names.append("--target-cost") }
        if metricOption != nil { names.append("--metric") }
        if cacheMemoryOption != nil { names.append("--cache-memory") }
        if noActivationCache { names.append("--no-activation-cache") }
        return names
    }

    func validate() throws {
        switch method {
        case .pareto:
            if let option = taylor.given.first {
                throw ValidationError("\(option) is a taylor-ip option: --method pareto does not use it (pareto targets: --target-sqnr, --max-drop, --target-cost)")
            }
        case .taylorIP:
            if let option = paretoOptionsGiven.first {
                throw ValidationError("\(option) is a pareto option: --method taylor-ip does not use it (taylor-ip targets: --max-loss-mse, --sweep, --validate)")
            }
            if taylor.maxLossMse == nil && !taylor.sweep && taylor.validateCount == nil {
                throw ValidationError("--method taylor-ip needs --max-loss-mse T, --sweep or --validate N")
            }
        }
        if [targetSqnr, maxDrop, targetCost].compactMap({ $0 }).count > 1 {
            throw ValidationError("give at most one of --target-sqnr, --max-drop, --target-cost")
        }
        try Check.range(targetSqnr, "--target-sqnr", -1000...1000)
        if let targetCost, !(targetCost > 0) || !targetCost.isFinite {
            throw ValidationError("--target-cost \(targetCost) is out of range: it must be a positive relative cost (e.g. 0.25)")
        }
        try Check.range(maxDrop, "--max-drop", 0...Double.greatestFiniteMagnitude)
        try Check.range(batchSize, "--batch-size", 1...1_000_000)
        try Check.choice(metricOption, "--metric", SearchMetric.allCases.map(\.rawValue))
        if targetSqnr != nil && metric != "sqnr" { throw ValidationError("--target-sqnr needs --metric sqnr (use --max-drop for other metrics)") }
        if metric == "accuracy" && labels == nil { throw ValidationError("--metric accuracy needs --labels FILE.npy") }
        _ = try Check.rangeMethod(activationRange, "--activation-range", weights: false)
        _ = try Check.rangeMethod(weightRange, "--weight-range", weights: true)
        _ = try parseByteSize(cacheMemory)
        try Check.outputFolder(out)
        if let cache { try Check.outputFolder(cache, "--cache") }
    }

    func run() throws {
        if method == .taylorIP { return try TaylorSearch(command: self).run() }
        let loaded = try Model(contentsOf: model)
        let graph = loaded.graph
        let hardware = try hardwareProfile()
        let data = try CalibrationData(contentsOf: calib, graph: graph)
        var options = ParetoGreedySearch.Options()
        options.metric = SearchMetric(rawValue: metric) ?? .sqnr
        options.batchSize = batchSize
        options.labels = try labels.map { try Check.labels($0, graph: graph, samples: data.count) }
        options.cacheRoot = cache.map { URL(fileURLWithPath: $0) }
        options.activationCacheBytes = try parseByteSize(cacheMemory)
        options.usesActivationCache = !noActivationCache
        options.session = threadOptions.session
        options.activationRange = try Check.rangeMethod(activationRange, "--activation-range", weights: false) ?? options.activationRange
        options.weightRange = try Check.rangeMethod(weightRange, "--weight-range", weights: true) ?? options.weightRange
        let target: ParetoGreedySearch.Target? = targetSqnr.map { .score($0) } ?? maxDrop.map { .maximumDrop($0) }
            ?? targetCost.map { .relativeCost($0) }

        let search = try ParetoGreedySearch(graph: graph, data: data, profile: hardware, options: options)
        FileHandle.standardError.write(Data("\(search.groups.groups.count) quantizer groups, \(search.candidates.reduce(0) { $0 + $1.count }) (group, candidate) entries; cache \(search.cache.folder.path)\n".utf8))
        let bar = SearchProgressBar()
        var result = try search.run(target: nil, progress: bar.report)
        try Check.createOutputFolder(out)
        var selectionError: Error?
        if let target {
            do {
                result.chosen = try search.select(target, front: &result.front)
            } catch {
                selectionError = error
            }
        }
        result.statistics = search.currentStatistics
        try writeFront(result, search: search, profile: hardware)
        if let selectionError { throw selectionError }
        guard let chosen = result.chosen else {
            print(frontSummary(result))
            print("no target given: wrote the front to \(out) (add --target-sqnr, --max-drop or --target-cost to export a configuration)")
            return
        }
        let point = result.front[chosen]
        try AtomicFile.write(try ParetoSearchFiles.configJSON(search, assignment: point.assignment), to: path("config.json"))
        let quantized = try search.quantizedModel(point.assignment)
        var report = try QuantizationReport(model: quantized, data: data, batchSize: batchSize, labels: options.labels,
                                            options: threadOptions.session, progress: Progress.reporter("evaluating"))
        let export = try QDQExport(quantized)
        report.exportNotes = export.notes
        try export.write(to: path("model.qdq.onnx"))
        try AtomicFile.write(try QuantizationEncodings.json(quantized), to: path("encodings.json"))
        try AtomicFile.write(try report.json(), to: path("report.json"))
        print(frontSummary(result))
        print(String(format: "chosen: step %d, relative cost %.4f, evaluated %@ %@", point.step, point.relativeCost, result.metric.rawValue,
                     ParetoSearchFiles.text(point.evaluatedScore)))
        print(summary(report))
        print("wrote \(out)/pareto.csv, pareto.json, sensitivity.csv, pareto.svg, report.html, config.json, model.qdq.onnx, encodings.json, report.json")
    }

    private func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }

    private func writeFront(_ result: ParetoSearchResult, search: ParetoGreedySearch, profile: HardwareProfile) throws {
        let names = profile.candidates.map(\.name)
        let plot = ParetoSearchFiles.plot(result, costName: profile.cost.rawValue)
        try AtomicFile.write(ParetoSearchFiles.paretoCSV(result), to: path("pareto.csv"))
        try AtomicFile.write(try ParetoSearchFiles.paretoJSON(result), to: path("pareto.json"))
        try AtomicFile.write(ParetoSearchFiles.sensitivityCSV(result, candidateNames: names), to: path("sensitivity.csv"))
        try AtomicFile.write(Data(plot.svg().utf8), to: path("pareto.svg"))
        let html = SearchReportHTML.html(model: model, profile: profile, result: result, plot: plot, candidateNames: names)
        try AtomicFile.write(Data(html.utf8), to: path("report.html"))
    }

    private func frontSummary(_ result: ParetoSearchResult) -> String {
        var lines = ["\(result.groups.count) groups; phase 1: \(result.statistics.phase1Evaluations) evaluations run, "
            + "\(result.statistics.phase1Loaded) cached, " + String(format: "%.1f s", result.statistics.phase1Seconds)
            + "; front of \(result.front.count) points; \(result.statistics.fullEvaluations) end-to-end evaluations"]
        for reference in result.references {
            lines.append(String(format: "uniform %@: relative cost %.4f, %@ %@", reference.candidate, reference.relativeCost,
                                result.metric.rawValue, ParetoSearchFiles.text(reference.score)))
        }
        return lines.joined(separator: "\n")
    }
}

/// "2GB", "512MB", "64KiB" or a number of bytes, at most the machine's physical memory
/// (the activation cache is memory; a larger budget would only end in swapping or an OOM kill).
func parseByteSize(_ text: String, option: String = "--cache-memory") throws -> Int {
    let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
    let upper = text.uppercased().trimmingCharacters(in: .whitespaces)
    let limit = SizeLimits.maximumTensorBytes
    func checked(_ bytes: Double) throws -> Int {
        guard bytes.isFinite, bytes >= 0 else { throw ValidationError("\(option) \(text): write a size such as 512MB or 2GB") }
        guard bytes <= Double(limit) else {
            throw ValidationError("\(option) \(text) is more than this machine's memory (valid: 0...\(SizeLimits.describe(bytes: limit)))")
        }
        return Int(bytes)
    }
    for (suffix, factor) in units where upper.hasSuffix(suffix) {
        if let value = Double(upper.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)) {
            return try checked(value * factor)
        }
    }
    if let value = Double(upper), value.rounded() == value { return try checked(value) }
    throw ValidationError("\(option) \(text): write a size such as 512MB or 2GB")
}

/// Progress on standard error: a bar with ETA on a terminal, plain lines otherwise.
final class SearchProgressBar: @unchecked Sendable {
    private var start = Date()
    private var phase = ""
    private let terminal = isatty(STDERR_FILENO) != 0

    func report(_ progress: ParetoGreedySearch.Progress) {
        if progress.phase != phase {
            phase = progress.phase
            start = Date()
        }
        let elapsed = Date().timeIntervalSince(start)
        let eta = progress.done > 0 ? elapsed / Double(progress.done) * Double(progress.total - progress.done) : 0
        let status = String(format: "%@ %d/%d, %.1f s, eta %.0f s", progress.phase, progress.done, progress.total, elapsed, eta)
        if terminal {
            let width = 30, filled = progress.total > 0 ? width * progress.done / progress.total : width
            let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
            FileHandle.standardError.write(Data(("\r" + bar + status + (progress.done == progress.total ? "\n" : "")).utf8))
        } else {
            FileHandle.standardError.write(Data((status + "\n").utf8))
        }
    }
}
