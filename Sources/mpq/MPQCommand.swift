import ArgumentParser
import MPQ

@main
struct MPQCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpq",
        abstract: "Automatic mixed-precision post-training quantization of neural networks.",
        discussion: "Runs ONNX models on the CPU (oneDNN) and finds per-layer precisions under hardware constraints.",
        subcommands: [InspectCommand.self, RunCommand.self, BenchCommand.self, QuantizeCommand.self, EvalCommand.self,
                      SearchCommand.self]
    )
}

/// Options shared by commands that execute a model.
struct ThreadOptions: ParsableArguments {
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be >= 1") }
    }

    var session: SessionOptions { SessionOptions(threads: threads) }
}

/// Model inputs given on the command line as `--input NAME=FILE.npy` or `--inputs FILE.npz`.
struct InputOptions: ParsableArguments {
    @Option(name: .customLong("input"), help: ArgumentHelp("A model input from a .npy file.", valueName: "NAME=FILE.npy"))
    var input: [String] = []

    @Option(name: .customLong("inputs"), help: ArgumentHelp("All model inputs from a .npz file (array names = input names).", valueName: "FILE.npz"))
    var inputs: String?

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
        result[String(parts[0])] = value
    }
    return result
}
