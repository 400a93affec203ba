import ArgumentParser
import Foundation
import MPQ

/// The options of the Pareto-greedy search.
struct ParetoArguments: ParsableArguments {
    @Option(name: .customLong("metric"), help: ArgumentHelp("pareto: score (default sqnr).", valueName: "METRIC"))
    var metricOption: SearchMetric?

    @Option(parsing: .unconditional, help: ArgumentHelp("pareto: select the cheapest point whose output SQNR is at least DB (metric sqnr).", valueName: "DB"))
    var targetSqnr: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("pareto: select the cheapest point whose metric drops at most X (SQNR: from the most precise configuration).", valueName: "X"))
    var maxDrop: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("pareto: select the best point of relative cost at most R.", valueName: "R"))
    var targetCost: Double?

    @Option(name: .customLong("cache-memory"), help: ArgumentHelp("pareto: memory for cached activations; the rest spills to the cache folder (e.g. 512MB, 2GB; default 2GB).", valueName: "SIZE"))
    var cacheMemory: String?

    @Flag(help: "pareto: run the whole model for every phase-1 evaluation instead of only the part after each group.")
    var noActivationCache = false

    /// The options given on the command line (to reject them under taylor-ip).
    var given: [String] {
        [("--target-sqnr", targetSqnr != nil), ("--max-drop", maxDrop != nil), ("--target-cost", targetCost != nil),
         ("--metric", metricOption != nil), ("--cache-memory", cacheMemory != nil),
         ("--no-activation-cache", noActivationCache)].filter(\.1).map(\.0)
    }

    func validate() throws {
        if [targetSqnr, maxDrop, targetCost].compactMap({ $0 }).count > 1 {
            throw ValidationError("give at most one of --target-sqnr, --max-drop, --target-cost")
        }
        try Check.range(targetSqnr, "--target-sqnr", -1000...1000)
        if let targetCost, !(targetCost > 0) || !targetCost.isFinite {
            throw ValidationError("--target-cost \(targetCost) is out of range: it must be a positive relative cost (e.g. 0.25)")
        }
        try Check.range(maxDrop, "--max-drop", 0...Double.greatestFiniteMagnitude)
        if targetSqnr != nil && (metricOption ?? .sqnr) != .sqnr { throw ValidationError("--target-sqnr needs --metric sqnr (use --max-drop for other metrics)") }
        if let cacheMemory { _ = try parseByteSize(cacheMemory) }
    }

    /// Runs the search with the shared options and prints what it found.
    func run(_ common: SearchArguments) throws {
        if metricOption == .accuracy && common.labels == nil { throw ValidationError("--metric accuracy needs --labels FILE.npy") }
        var options = ParetoSearchWorkflow.Options(model: common.model, calibrationData: common.calib)
        try common.fill(&options.shared)
        options.metric = metricOption ?? .sqnr
        options.target = targetSqnr.map { .score($0) } ?? maxDrop.map { .maximumDrop($0) } ?? targetCost.map { .relativeCost($0) }
        options.activationCacheBytes = try parseByteSize(cacheMemory ?? "2GB")
        options.usesActivationCache = !noActivationCache
        print(try ParetoSearchWorkflow(options).run(progress: TerminalProgress()).summary)
    }
}

/// `mpq search pareto`.
struct ParetoSearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pareto",
        abstract: "Pareto-greedy search: the accuracy-vs-cost front and the cheapest configuration that meets a target.",
        discussion: "Writes DIR/pareto.csv, pareto.json, sensitivity.csv, pareto.svg, report.html and, with a target, config.json, model.qdq.onnx, encodings.json and report.json.")

    @OptionGroup var common: SearchArguments
    @OptionGroup var pareto: ParetoArguments
    @OptionGroup(visibility: .private) var taylor: TaylorArguments

    func validate() throws {
        try rejectOptions(of: "taylor-ip", taylor.given, under: "mpq search pareto",
                          targets: "pareto targets: --target-sqnr, --max-drop, --target-cost")
    }

    func run() throws { try pareto.run(common) }
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
        if let value = Double(upper.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)) { return try checked(value * factor) }
    }
    if let value = Double(upper), value.rounded() == value { return try checked(value) }
    throw ValidationError("\(option) \(text): write a size such as 512MB or 2GB")
}
