import ArgumentParser
import Foundation
import MPQ

/// Checks of command-line values, made before any model is run or calibrated:
/// each failure is one line naming the option (or file) and what would be valid.
enum Check {
    /// `value` in `range`, or an error naming `option` and the range.
    static func range<T: Comparable>(_ value: T?, _ option: String, _ range: ClosedRange<T>, why: String = "") throws {
        guard let value else { return }
        if let double = value as? Double, !double.isFinite {
            throw ValidationError("\(option) \(value) is not a finite number (valid: \(range.lowerBound)...\(range.upperBound))")
        }
        guard range.contains(value) else {
            throw ValidationError("\(option) \(value) is out of range (valid: \(range.lowerBound)...\(range.upperBound)\(why))")
        }
    }

    /// `value` is one of `valid`, or an error listing them.
    static func choice(_ value: String?, _ option: String, _ valid: [String]) throws {
        guard let value else { return }
        guard valid.contains(value) else {
            throw ValidationError("\(option) '\(value)' is not one of \(valid.joined(separator: ", "))")
        }
    }

    /// A folder the command will create or write into: not a file, and writable
    /// (nothing is created here; the command creates it once it has results).
    static func outputFolder(_ path: String, _ option: String = "--out") throws {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard !path.isEmpty else { throw ValidationError("\(option) is empty: give a folder") }
        if manager.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ValidationError("\(option) \(path) is a file, expected a folder") }
            guard canCreateFiles(in: path) else { throw ValidationError("\(option) \(path) is not writable") }
            return
        }
        try creatable(path, option)
    }

    /// Creates the output folder (and missing parents) once results are ready; a failure
    /// (the disk filled, permissions changed since validation) is one line naming it.
    static func createOutputFolder(_ path: String, _ option: String = "--out") throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            let reason = underlying.map { String(cString: strerror(Int32($0.code))) } ?? error.localizedDescription
            throw MPQError.io("cannot create \(option) folder \(path): \(reason)")
        }
    }

    /// A file the command will write (atomically): not a folder, in a writable folder.
    static func outputFile(_ path: String, _ option: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard !isDirectory.boolValue else { throw ValidationError("\(option) \(path) is a folder, expected a file") }
        }
        let parent = (path as NSString).deletingLastPathComponent
        let folder = parent.isEmpty ? "." : parent
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else {
            throw ValidationError("\(option) \(path): folder \(folder) does not exist")
        }
        guard isDirectory.boolValue else { throw ValidationError("\(option) \(path): \(folder) is a file, not a folder") }
        guard canCreateFiles(in: folder) else {
            throw ValidationError("\(option) \(path): folder \(folder) is not writable")
        }
    }

    /// True when a file can be created in `folder`: access(2) says yes to root even on
    /// read-only or pseudo file systems, so a probe file is created there and removed at once.
    static func canCreateFiles(in folder: String) -> Bool {
        guard FileManager.default.isWritableFile(atPath: folder) else { return false }
        let probe = (folder as NSString).appendingPathComponent(".mpq-write-probe-\(getpid())-\(UUID().uuidString)")
        let descriptor = open(probe, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard descriptor >= 0 else { return false }
        close(descriptor)
        unlink(probe)
        return true
    }

    /// The nearest existing ancestor of `path` is a writable folder.
    private static func creatable(_ path: String, _ option: String) throws {
        var ancestor = (path as NSString).deletingLastPathComponent
        while !ancestor.isEmpty && !FileManager.default.fileExists(atPath: ancestor) {
            let parent = (ancestor as NSString).deletingLastPathComponent
            if parent == ancestor { break }
            ancestor = parent
        }
        if ancestor.isEmpty { ancestor = "." }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else {
            throw ValidationError("\(option) \(path): cannot create it, \(ancestor) is a file, not a folder")
        }
        guard canCreateFiles(in: ancestor) else {
            throw ValidationError("\(option) \(path): cannot create it, \(ancestor) is not writable")
        }
    }

    /// Class labels from a .npy file: integers (any integer dtype), one per sample,
    /// in 0..<classes when the model's first output declares a fixed class count.
    static func labels(_ path: String, graph: Graph, option: String = "--labels") throws -> [Int] {
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

    /// Labels, checked also against the number of calibration samples.
    static func labels(_ path: String, graph: Graph, samples: Int, option: String = "--labels") throws -> [Int] {
        let values = try labels(path, graph: graph, option: option)
        guard values.count == samples else {
            throw MPQError.invalidInput("\(option) \(path) holds \(values.count) labels (shape [\(values.count)]) for \(samples) calibration samples (one per sample)")
        }
        return values
    }

    /// A range estimator name for `option` (weights: minmax or mse; activations: all).
    static func rangeMethod(_ text: String?, _ option: String, weights: Bool) throws -> RangeMethod? {
        guard let text else { return nil }
        let valid = weights ? [RangeMethod.minMax, .mse] : RangeMethod.allCases
        guard let method = RangeMethod(rawValue: text), valid.contains(method) else {
            throw ValidationError("\(option) '\(text)' is not one of \(valid.map(\.rawValue).joined(separator: ", "))")
        }
        return method
    }
}

/// `--dim NAME=N` bindings, checked against the symbolic dims the model's inputs declare.
func parseDimensions(_ entries: [String], graph: Graph) throws -> [String: Int] {
    let result = try parseDimensions(entries)
    var symbols: [String] = []
    for input in graph.inputs {
        for case .symbolic(let name) in input.shape ?? [] where !symbols.contains(name) { symbols.append(name) }
    }
    for name in result.keys.sorted() where !symbols.contains(name) {
        let valid = symbols.isEmpty ? "the model's inputs have no symbolic dims" : "symbolic dims: \(symbols.joined(separator: ", "))"
        throw ValidationError("--dim \(name): the model has no dim named '\(name)' (\(valid))")
    }
    return result
}
