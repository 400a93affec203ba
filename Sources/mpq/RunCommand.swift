import ArgumentParser
import Foundation
import MPQ

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a model on inputs from .npy/.npz files and summarise (or save) its outputs.")

    @Argument(help: "ONNX model file.")
    var model: String

    @OptionGroup var inputOptions: InputOptions
    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: ArgumentHelp("Write all outputs to this .npz file.", valueName: "OUT.npz"))
    var output: String?

    func validate() throws {
        if let output { try Check.outputFile(output, "--output") }
    }

    func run() throws {
        let loaded = try Model(contentsOf: model)
        let session = try InferenceSession(model: loaded, options: threadOptions.session)
        let feeds = try inputOptions.load(for: loaded.graph)
        let start = Date()
        let outputs = try session.run(feeds)
        let seconds = Date().timeIntervalSince(start)
        for info in loaded.graph.outputs {
            guard let value = outputs[info.name] else { throw MPQError.invalidModel("graph output '\(info.name)' was never computed") }
            print(summary(name: info.name, value))
        }
        print(String(format: "ran in %.1f ms on %d threads", seconds * 1000, threadOptions.session.threads))
        if let output {
            try NPZ.write(outputs, to: output)
            print("wrote \(output)")
        }
    }

    /// One line of statistics, plus the top classes per row for [N, classes] float outputs.
    private func summary(name: String, _ tensor: Tensor) -> String {
        var line = "\(name): \(tensor.dtype) \(tensor.shape)"
        guard tensor.count > 0, tensor.dtype != .bool else { return line }
        let values = tensor.doubles()
        let finite = values.filter(\.isFinite)
        if let low = finite.min(), let high = finite.max() {
            let mean = finite.reduce(0, +) / Double(finite.count)
            line += String(format: "  min %.5g  max %.5g  mean %.5g", low, high, mean)
        }
        if finite.count < values.count { line += "  (\(values.count - finite.count) non-finite)" }
        if tensor.rank == 2, tensor.shape[1] > 1, tensor.dtype.isFloatingPoint {
            let classes = tensor.shape[1]
            let rows = (0..<tensor.shape[0]).map { row -> String in
                let slice = values[(row * classes)..<((row + 1) * classes)]
                let top = slice.indices.sorted { slice[$0] > slice[$1] }.prefix(3).map { $0 - row * classes }
                return "\(top)"
            }
            line += "\n  top-3 per row: " + rows.prefix(16).joined(separator: " ") + (rows.count > 16 ? " ..." : "")
        }
        return line
    }
}
