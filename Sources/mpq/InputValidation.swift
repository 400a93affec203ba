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

    /// A folder the command will replace with its results: not a file, and creatable (its nearest existing
    /// ancestor is a writable folder; the results go to a new folder beside it, renamed into place).
    static func outputFolder(_ path: String, _ option: String = "--out") throws {
        do {
            try OutputFolder.check(path, option: option)
        } catch MPQError.invalidInput(let message) {
            throw ValidationError(message)
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
        guard OutputFolder.canCreateFiles(in: folder) else {
            throw ValidationError("\(option) \(path): folder \(folder) is not writable")
        }
    }

    /// Class labels from a .npy file (`ClassLabels.load`).
    static func labels(_ path: String, graph: Graph, option: String = "--labels") throws -> [Int] {
        try ClassLabels.load(path, graph: graph, option: option)
    }

    /// A weight range estimator: minmax or mse.
    static func weightRange(_ method: RangeMethod?, _ option: String = "--weight-range") throws {
        guard let method, method == .percentile else { return }
        throw ValidationError("\(option) '\(method.rawValue)' is not one of \(RangeMethod.minMax.rawValue), \(RangeMethod.mse.rawValue)")
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
