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
