import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Class labels read from a .npy file: integers (any integer dtype), one per sample, in
/// 0..<classes when the model's first output declares a fixed class count.
public enum ClassLabels {
    /// Reads labels from the .npy at `path`: integers of shape [N] or [N, 1], none negative, and
    /// each below the first output's class count when it declares one; `option` names the flag in errors.
    public static func load(_ path: String, graph: Graph, option: String = "--labels") throws -> [Int] {
        let tensor = try NPY.read(contentsOf: path)
        guard !tensor.dtype.isFloatingPoint, tensor.dtype != .bool else {
            throw MPQError.invalidInput("\(option) \(path) holds \(tensor.dtype) values; labels must be integer class indices (e.g. int64)")
        }
        guard tensor.rank == 1 || (tensor.rank == 2 && tensor.shape[1] == 1) else {
            throw MPQError.invalidInput("\(option) \(path) has shape \(tensor.shape); labels are one integer per sample, shape [N]")
        }
        let values = tensor.dtype == .uint64
            ? tensor.scalars(as: UInt64.self).map { $0 > UInt64(Int.max) ? -1 : Int($0) }
            : tensor.integers()
        if let index = values.firstIndex(where: { $0 < 0 }) {
            throw MPQError.invalidInput("\(option) \(path): label \(values[index]) of sample \(index) is negative (labels are class indices >= 0)")
        }
        if let output = graph.outputs.first, let shape = output.shape, shape.count == 2, let classes = shape[1].value, classes > 0,
           let index = values.firstIndex(where: { $0 >= classes }) {
            throw MPQError.invalidInput("\(option) \(path): label \(values[index]) of sample \(index) is out of range for output '\(output.name)' with \(classes) classes (valid: 0...\(classes - 1))")
        }
        return values
    }

    /// Labels, checked also against the number of samples they label (`what`: "calibration", "--eval").
    public static func load(_ path: String, graph: Graph, samples: Int, what: String = "calibration",
                            option: String = "--labels") throws -> [Int] {
        let values = try load(path, graph: graph, option: option)
        guard values.count == samples else {
            throw MPQError.invalidInput("\(option) \(path) holds \(values.count) labels (shape [\(values.count)]) for \(samples) \(what) samples (one per sample)")
        }
        return values
    }
}
