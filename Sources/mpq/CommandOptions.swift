import ArgumentParser
import Foundation
import MPQ

/// Options shared by commands that execute a model.
struct ThreadOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: all cores; at most 4x the cores).")
    var threads: Int?

    /// More threads than 4x the cores only add contention, and far more make
    /// the OpenMP runtime fail to allocate its per-thread state (a crash).
    func validate() throws {
        try Check.range(threads, "--threads", 1...SizeLimits.maximumThreads,
                        why: ", 4x the \(ProcessInfo.processInfo.activeProcessorCount) cores")
    }

    var session: SessionOptions { SessionOptions(threads: threads) }
}

/// Model inputs given on the command line as `--input NAME=FILE.npy` or `--inputs FILE.npz`.
struct InputOptions: ParsableArguments {
    @Option(name: .customLong("input"), help: ArgumentHelp("A model input from a .npy file.", valueName: "NAME=FILE.npy"))
    var input: [String] = []

    @Option(name: .customLong("inputs"), help: ArgumentHelp("All model inputs from a .npz file (array names = input names).", valueName: "FILE.npz"))
    var inputs: String?

    func validate() throws {
        if inputs != nil && !input.isEmpty {
            throw ValidationError("give either --input NAME=FILE.npy (per input) or --inputs FILE.npz (all inputs), not both")
        }
        var names: Set<String> = []
        for entry in input {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts.count == 2 ? parts[0] : ""
            guard names.insert(name).inserted else {
                throw ValidationError(name.isEmpty ? "--input FILE.npy given twice (a bare file feeds the only input)"
                                                   : "--input \(name) given twice (one file per input)")
            }
        }
    }

    /// Loads the tensors; a bare `FILE.npy` names the only input of a one-input model.
    func load(for graph: Graph) throws -> [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        if let inputs { feeds = try NPZ.read(contentsOf: inputs) }
        for entry in input {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 {
                feeds[parts[0]] = try NPY.read(contentsOf: parts[1])
            } else if graph.inputs.count == 1 {
                feeds[graph.inputs[0].name] = try NPY.read(contentsOf: entry)
            } else {
                throw ValidationError("--input \(entry): write NAME=FILE.npy (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))")
            }
        }
        if input.count > 1 && input.contains(where: { !$0.contains("=") }) {
            throw ValidationError("--input: a bare FILE.npy feeds a one-input model; with several --input give NAME=FILE.npy")
        }
        if feeds.isEmpty { throw ValidationError("give the model inputs with --input NAME=FILE.npy or --inputs FILE.npz") }
        return feeds
    }
}

/// Parses `NAME=VALUE` dimension bindings such as `batch=8`.
func parseDimensions(_ entries: [String]) throws -> [String: Int] {
    var result: [String: Int] = [:]
    for entry in entries {
        let parts = entry.split(separator: "=")
        guard parts.count == 2, let value = Int(parts[1]), value > 0 else {
            throw ValidationError("--dim \(entry): write NAME=POSITIVE_INTEGER")
        }
        guard result[String(parts[0])] == nil else { throw ValidationError("--dim \(parts[0]) given twice") }
        result[String(parts[0])] = value
    }
    return result
}

func formatCount(_ n: Int) -> String {
    let value = Double(n)
    if value >= 1e9 { return String(format: "%.2f G", value / 1e9) }
    if value >= 1e6 { return String(format: "%.2f M", value / 1e6) }
    if value >= 1e3 { return String(format: "%.2f K", value / 1e3) }
    return String(n)
}

func formatBytes(_ n: Int) -> String {
    let value = Double(n)
    if value >= 1_073_741_824 { return String(format: "%.2f GiB", value / 1_073_741_824) }
    if value >= 1_048_576 { return String(format: "%.2f MiB", value / 1_048_576) }
    if value >= 1024 { return String(format: "%.1f KiB", value / 1024) }
    return "\(n) B"
}
