import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Root of the repository (for scripts and fixtures).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The real models and data the tests use, fetched by `scripts/setup.sh` (scripts/fetch-fixtures.sh)
/// into `.fixtures/` in the repository; `MPQ_FIXTURES` names another folder of the same layout.
let fixturesFolder: URL = {
    if let folder = ProcessInfo.processInfo.environment["MPQ_FIXTURES"], !folder.isEmpty {
        return URL(fileURLWithPath: folder)
    }
    return repositoryRoot.appendingPathComponent(".fixtures")
}()

/// The project's Python (scripts/setup.sh makes `.venv`), or `python3` from PATH without one.
let pythonExecutable: [String] = {
    let venv = repositoryRoot.appendingPathComponent(".venv/bin/python").path
    return FileManager.default.isExecutableFile(atPath: venv) ? [venv] : ["/usr/bin/env", "python3"]
}()

/// A new empty folder under the system temporary directory.
func temporaryFolder(_ prefix: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Deterministic generator for reproducible test inputs.
typealias SeededGenerator = SplitMix64

extension Tensor {
    /// Uniform random float32 values.
    static func random(_ shape: [Int], in range: ClosedRange<Float> = -2...2,
                       using rng: inout SeededGenerator) -> Tensor {
        Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &rng) })
    }
}

/// A single-node model run by mpq and by ONNX Runtime.
struct OperatorCase {
    var name: String
    var opType: String
    var attributes: [String: Attribute] = [:]
    /// Node inputs in order; nil is an omitted optional input.
    var inputs: [Tensor?]
    /// Indices of inputs stored as initializers rather than graph inputs.
    var constantInputs: Set<Int> = []
    var outputCount: Int = 1
    var opset: Int = 17
    /// Allowed max |mpq - ort| relative to max(1, max |ort|).
    var tolerance: Double = 1e-5

    func graph(outputTypes: [DataType]) -> Graph {
        var initializers: [String: Tensor] = [:]
        var graphInputs: [ValueInfo] = []
        let names = inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" }
        for (i, tensor) in inputs.enumerated() {
            guard let tensor else { continue }
            if constantInputs.contains(i) {
                initializers[names[i]] = tensor
            } else {
                graphInputs.append(ValueInfo(name: names[i], dtype: tensor.dtype, shape: tensor.shape.map { .fixed($0) }))
            }
        }
        let outputs = (0..<outputCount).map { "out\($0)" }
        let node = Node(name: "\(opType)_node", opType: opType, inputs: names, outputs: outputs, attributes: attributes)
        return Graph(name: name, nodes: [node], inputs: graphInputs,
                     outputs: zip(outputs, outputTypes).map { ValueInfo(name: $0, dtype: $1, shape: nil) },
                     initializers: initializers, opset: opset)
    }

    var feeds: [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        for (i, tensor) in inputs.enumerated() where !constantInputs.contains(i) {
            if let tensor { feeds["in\(i)"] = tensor }
        }
        return feeds
    }
}

/// ONNX Runtime's outputs of each model on its feeds (Tests/Scripts/ort_reference.py, one python3
/// process for all): per model, its outputs in order, or the error ONNX Runtime reported.
func onnxRuntimeOutputs(_ models: [(graph: Graph, feeds: [String: Tensor])]) throws -> [Result<[Tensor], OnnxRuntimeError>] {
    let root = temporaryFolder("mpq-ort")
    defer { try? FileManager.default.removeItem(at: root) }
    let folders = models.indices.map { root.appendingPathComponent(String(format: "%04d", $0)) }
    for (folder, model) in zip(folders, models) {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Model(graph: model.graph).write(to: folder.appendingPathComponent("model.onnx").path)
        try NPZ.write(model.feeds, to: folder.appendingPathComponent("inputs.npz").path)
    }
    try runPython(["Tests/Scripts/ort_reference.py", root.path])
    return try zip(folders, models).map { folder, model in
        if let error = try? String(contentsOf: folder.appendingPathComponent("error.txt"), encoding: .utf8) {
            return .failure(OnnxRuntimeError(message: error))
        }
        return .success(try model.graph.outputs.indices.map {
            try NPY.read(contentsOf: folder.appendingPathComponent("out_\($0).npy").path)
        })
    }
}

/// What ONNX Runtime reported for a model it could not run.
struct OnnxRuntimeError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Runs all cases in mpq and in ONNX Runtime (one python3 process) and records
/// an issue for every mismatch of dtype, shape or values.
func expectMatchesOnnxRuntime(_ cases: [OperatorCase], sourceLocation: SourceLocation = #_sourceLocation) throws {
    var ours: [String: [Tensor]] = [:]
    var references: [(graph: Graph, feeds: [String: Tensor])] = []
    for c in cases {
        var outputTypes = [DataType](repeating: .float32, count: c.outputCount)
        do {
            let probe = c.graph(outputTypes: outputTypes)
            let session = try InferenceSession(graph: probe, options: SessionOptions(threads: 2))
            let results = try session.run(c.feeds)
            let tensors = (0..<c.outputCount).map { results["out\($0)"]! }
            outputTypes = tensors.map(\.dtype)
            ours[c.name] = tensors
        } catch {
            Issue.record("\(c.name): mpq failed: \(error)", sourceLocation: sourceLocation)
        }
        references.append((c.graph(outputTypes: outputTypes), c.feeds))
    }
    for (c, reference) in zip(cases, try onnxRuntimeOutputs(references)) {
        switch reference {
        case .failure(let error):
            Issue.record("\(c.name): ONNX Runtime failed: \(error)", sourceLocation: sourceLocation)
        case .success(let expected):
            guard let mine = ours[c.name] else { continue }
            if mine.count != expected.count {
                Issue.record("\(c.name): mpq gave \(mine.count) outputs, ONNX Runtime \(expected.count)", sourceLocation: sourceLocation)
            }
            for (i, (actual, expected)) in zip(mine, expected).enumerated() {
                if let problem = compare(actual, expected, tolerance: c.tolerance) {
                    Issue.record("\(c.name) output \(i): \(problem)", sourceLocation: sourceLocation)
                }
            }
        }
    }
}

/// nil when the tensors agree in dtype, shape and values (NaNs must match).
func compare(_ actual: Tensor, _ expected: Tensor, tolerance: Double) -> String? {
    guard actual.dtype == expected.dtype else { return "dtype \(actual.dtype), expected \(expected.dtype)" }
    guard actual.shape == expected.shape else { return "shape \(actual.shape), expected \(expected.shape)" }
    let a = actual.doubles(), e = expected.doubles()
    let scale = max(1, e.filter(\.isFinite).map(abs).max() ?? 1)
    var worst = 0.0, worstIndex = -1
    for i in 0..<a.count {
        if a[i].isNaN != e[i].isNaN { return "element \(i): \(a[i]) vs \(e[i])" }
        if a[i].isInfinite || e[i].isInfinite {
            if a[i] != e[i] { return "element \(i): \(a[i]) vs \(e[i])" }
            continue
        }
        if a[i].isNaN { continue }
        let d = abs(a[i] - e[i])
        if d > worst { worst = d; worstIndex = i }
    }
    if worst > tolerance * scale {
        return "max abs error \(worst) at element \(worstIndex) (\(a[worstIndex]) vs \(e[worstIndex])) exceeds \(tolerance) x \(scale)"
    }
    return nil
}

/// Runs the project's Python from the repository root; throws with its stderr on failure.
@discardableResult
func runPython(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: pythonExecutable[0])
    process.arguments = Array(pythonExecutable.dropFirst()) + arguments
    process.currentDirectoryURL = repositoryRoot
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw MPQError.io("python3 \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: output, as: UTF8.self)
}

/// Runs the built `mpq` executable; returns its exit status, stdout and stderr.
func mpq(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("mpq")
    let candidates = [binary, repositoryRoot.appendingPathComponent(".build/debug/mpq")]
    guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw MPQError.fileNotFound("mpq executable next to the test bundle")
    }
    return try run(executable.path, arguments)
}

/// Runs an executable; returns its exit status, stdout and stderr.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
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
