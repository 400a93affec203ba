import ArgumentParser
import Foundation
import MPQ

@main
struct MPQCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpq",
        abstract: "Automatic mixed-precision post-training quantization of neural networks.",
        discussion: "Runs ONNX models on the CPU (oneDNN) and finds per-layer precisions under hardware constraints.",
        subcommands: [InspectCommand.self, RunCommand.self, BenchCommand.self, QuantizeCommand.self, EvalCommand.self,
                      SearchCommand.self, EvalLMCommand.self, SearchLMCommand.self]
    )

    /// Parses and runs; every error is one line on standard error ("Error: ..."), with
    /// exit status 64 for usage errors and 1 otherwise (help and --version print as usual).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            FileHandle.standardError.write(Data(("Error: " + oneLine(error) + "\n").utf8))
            Foundation.exit(exitCode(for: error).rawValue)
        }
    }

    /// The error's message on one line: Foundation errors by their description and
    /// file path, never the raw `NSError` dump.
    static func oneLine(_ error: Error) -> String {
        var text: String
        if error is MPQError || error is ValidationError || error is CleanExit || error is ExitCode {
            text = message(for: error)
        } else if [NSCocoaErrorDomain, NSPOSIXErrorDomain].contains((error as NSError).domain) {
            let nsError = error as NSError
            text = nsError.localizedDescription
            if let path = nsError.userInfo[NSFilePathErrorKey] as? String ?? (nsError.userInfo[NSURLErrorKey] as? URL)?.path,
               !text.contains(path) {
                text += " (\(path))"
            }
        } else {
            text = message(for: error)
        }
        if text.isEmpty { text = String(describing: error) }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.joined(separator: "; ")
    }
}

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
