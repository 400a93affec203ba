import Foundation
import MPQGraph
import MPQRuntime

/// Model inputs for calibration and evaluation: every input holds the
/// samples along its leading axis. Read from a `.npy` (one-input models), a
/// `.npz` (arrays named as the inputs) or a folder of such files (joined
/// along the sample axis, in file-name order).
public struct CalibrationData: Sendable {
    /// One array per model input, samples along axis 0 (extra arrays dropped).
    public let inputs: [String: Tensor]
    /// Number of samples (the common leading dimension).
    public let count: Int

    /// Checks `inputs` against `graph`: an array for every input, of its type and rank, the same
    /// sample count in each, all finite; throws naming the first input that is not.
    public init(inputs: [String: Tensor], graph: Graph) throws {
        for input in graph.inputs {
            guard let tensor = inputs[input.name] else {
                throw MPQError.invalidInput("calibration data has no array for model input '\(input.name)' (found: \(inputs.keys.sorted().joined(separator: ", ")))")
            }
            guard tensor.dtype == input.dtype else {
                throw MPQError.typeMismatch("calibration input '\(input.name)' is \(tensor.dtype), the model takes \(input.dtype)")
            }
            if let declared = input.shape, declared.count != tensor.rank {
                throw MPQError.shapeMismatch("calibration input '\(input.name)' has shape \(tensor.shape), the model declares rank \(declared.count) (samples go along axis 0)")
            }
        }
        let counts = Set(graph.inputs.map { inputs[$0.name]!.shape.first ?? 0 })
        guard counts.count == 1, let count = counts.first else {
            throw MPQError.shapeMismatch("calibration inputs hold different numbers of samples: \(graph.inputs.map { "\($0.name) \(inputs[$0.name]!.shape)" }.joined(separator: ", "))")
        }
        guard count > 0 else { throw MPQError.invalidInput("the calibration set is empty") }
        for (name, tensor) in inputs where tensor.dtype.isFloatingPoint {
            let values = tensor.floats()
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                let perSample = values.count / count
                throw MPQError.invalidInput("calibration input '\(name)' holds \(values[bad]) in sample \(bad / perSample) (element \(bad % perSample))")
            }
        }
        self.inputs = inputs.filter { name, _ in graph.inputs.contains { $0.name == name } }
        self.count = count
    }

    /// Loads `path` for `graph`.
    public init(contentsOf path: String, graph: Graph) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw MPQError.fileNotFound(path) }
        var files = [path]
        if isFolder.boolValue {
            files = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
                .filter { $0.hasSuffix(".npy") || $0.hasSuffix(".npz") }
                .map { (path as NSString).appendingPathComponent($0) }
            guard !files.isEmpty else { throw MPQError.invalidInput("\(path) holds no .npy or .npz files") }
        }
        var parts: [String: [Tensor]] = [:]
        for file in files {
            if file.hasSuffix(".npz") {
                for (name, tensor) in try NPZ.read(contentsOf: file) { parts[name, default: []].append(tensor) }
            } else {
                guard graph.inputs.count == 1 else {
                    throw MPQError.invalidInput("\(file): a .npy file can only feed a one-input model; this one has inputs \(graph.inputs.map(\.name).joined(separator: ", ")) (use .npz)")
                }
                parts[graph.inputs[0].name, default: []].append(try NPY.read(contentsOf: file))
            }
            for (name, tensors) in parts {
                if let scalar = tensors.first(where: { $0.rank == 0 }) {
                    throw MPQError.invalidInput("\(file): array '\(name)' is 0-d (shape \(scalar.shape)); calibration arrays hold samples along axis 0, e.g. shape [N, ...]")
                }
            }
        }
        try self.init(inputs: parts.mapValues { try Tensor.concatenate($0, axis: 0) }, graph: graph)
    }

    /// Consecutive batches of at most `size` samples.
    public func batches(of size: Int) -> [[String: Tensor]] {
        stride(from: 0, to: count, by: max(size, 1)).map { start in
            inputs.mapValues { $0.rows(start..<min(start + size, count)) }
        }
    }
}
