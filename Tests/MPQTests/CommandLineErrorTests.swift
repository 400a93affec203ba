import Foundation
import Testing
@testable import MPQ

/// Bad input gets a one-line error and a non-zero exit from the `mpq` tool, never a crash.
@Suite struct CommandLineErrorTests {
    let folder = temporaryFolder("mpq-cli")
    let mobileNet = sharedFolder.appendingPathComponent("models/mobilenetv2.onnx").path

    /// Runs the built `mpq` executable; returns exit status and stderr.
    func mpq(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("mpq")
        let candidates = [binary, repositoryRoot.appendingPathComponent(".build/debug/mpq")]
        guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw MPQError.fileNotFound("mpq executable next to the test bundle")
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, stdout, stderr)
    }

    func expectCleanFailure(_ arguments: [String], mentions words: [String]) throws {
        let result = try mpq(arguments)
        #expect(result.status == 1, "exit status \(result.status) for \(arguments): \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line of error, got: \(result.stderr)")
        for word in words {
            #expect(result.stderr.contains(word), "'\(word)' missing from: \(result.stderr)")
        }
    }

    @Test func truncatedAndNonOnnxFilesAreRejected() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: mobileNet))
        let truncated = folder.appendingPathComponent("truncated.onnx")
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        try expectCleanFailure(["inspect", truncated.path], mentions: ["not an ONNX model"])
        let text = folder.appendingPathComponent("notes.onnx")
        try Data("these are not the weights you are looking for\n".utf8).write(to: text)
        try expectCleanFailure(["inspect", text.path], mentions: ["not an ONNX model"])
        try expectCleanFailure(["inspect", folder.appendingPathComponent("missing.onnx").path], mentions: ["file not found"])
    }

    @Test func unknownOperatorsAreListedBeforeRunning() throws {
        let graph = Graph(
            name: "bad", nodes: [
                Node(name: "first_bad", opType: "FrobnicateV2", inputs: ["x"], outputs: ["y"]),
                Node(name: "fine", opType: "Relu", inputs: ["y"], outputs: ["z"]),
                Node(name: "second_bad", opType: "FrobnicateV2", inputs: ["z"], outputs: ["w"]),
                Node(name: "cubic", opType: "Resize", inputs: ["w", "", "scales"], outputs: ["out"],
                     attributes: ["mode": .string("cubic")]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(2), .fixed(2), .fixed(2)])],
            outputs: [ValueInfo(name: "out", dtype: .float32, shape: nil)],
            initializers: ["scales": Tensor(shape: [4], scalars: [Float(1), 1, 2, 2])], opset: 13)
        let path = folder.appendingPathComponent("unknown.onnx").path
        try Model(graph: graph).write(to: path)
        let input = folder.appendingPathComponent("x.npy").path
        try NPY.write(Tensor(zeros: .float32, shape: [1, 2, 2, 2]), to: input)
        try expectCleanFailure(["run", path, "--input", "x=\(input)"],
                               mentions: ["FrobnicateV2", "first_bad", "second_bad", "opset 13", "Resize", "cubic"])
    }

    @Test func badInputFilesAreRejected() throws {
        let wrongShape = folder.appendingPathComponent("small.npy").path
        try NPY.write(Tensor(zeros: .float32, shape: [1, 3, 100, 100]), to: wrongShape)
        try expectCleanFailure(["run", mobileNet, "--input", "input=\(wrongShape)"], mentions: ["input", "[1, 3, 100, 100]"])
        let wrongType = folder.appendingPathComponent("doubles.npy").path
        try NPY.write(Tensor(zeros: .float64, shape: [1, 3, 224, 224]), to: wrongType)
        try expectCleanFailure(["run", mobileNet, "--input", "input=\(wrongType)"], mentions: ["float32", "float64"])
        let good = folder.appendingPathComponent("good.npy").path
        try NPY.write(Tensor(zeros: .float32, shape: [2, 3, 224, 224]), to: good)
        try expectCleanFailure(["run", mobileNet, "--input", "pixels=\(good)"], mentions: ["no input named 'pixels'"])
        let notNpy = folder.appendingPathComponent("bad.npy").path
        try Data("nope".utf8).write(to: URL(fileURLWithPath: notNpy))
        try expectCleanFailure(["run", mobileNet, "--input", "input=\(notNpy)"], mentions: ["not a .npy file"])
        let miniLM = sharedFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path
        let ids = folder.appendingPathComponent("ids.npy").path
        try NPY.write(Tensor(shape: [1, 4], scalars: [Int64](repeating: 101, count: 4)), to: ids)
        try expectCleanFailure(["run", miniLM, "--input", "input_ids=\(ids)"], mentions: ["missing model input"])

        let result = try mpq(["run", mobileNet, "--input", "input=\(good)", "--output", folder.appendingPathComponent("out.npz").path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try NPZ.read(contentsOf: folder.appendingPathComponent("out.npz").path)["logits"]?.shape == [2, 1000])
    }
}
