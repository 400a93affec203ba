import ArgumentParser
import Foundation
import MPQ

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Calibrate and export a quantized model: DIR/model.qdq.onnx, DIR/encodings.json, DIR/report.json.")

    @OptionGroup var quantization: QuantizationOptions

    @Option(help: ArgumentHelp("Output folder (replaced wholly, and only when everything succeeded).", valueName: "DIR"))
    var out: String

    func validate() throws {
        try Check.outputFolder(out)
    }

    func run() throws {
        let result = try quantization.workflow(output: out).run(progress: TerminalProgress())
        print(result.report.summary)
        print("wrote \(out)/" + result.files.names.joined(separator: ", "))
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Quantize in simulation and compare the outputs with FP32: SQNR, top-1 agreement, cosine similarity, accuracy.")

    @OptionGroup var quantization: QuantizationOptions

    @Option(help: ArgumentHelp("Class labels, one integer per evaluated sample (--eval's, else --calib's).", valueName: "FILE.npy"))
    var labels: String?

    func run() throws {
        let result = try quantization.workflow(labels: labels).run(progress: TerminalProgress())
        print(result.report.summary)
    }
}
