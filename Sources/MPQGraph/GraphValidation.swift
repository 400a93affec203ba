import Foundation

/// Structural checks of an imported graph, as ONNX's checker makes them
/// (`onnx.checker.check_model`), so that a malformed file is rejected with a
/// message naming the value or node at fault instead of being run anyway.
///
/// Run by `Model(contentsOf:)` / `Model(proto:)` on import; graphs built in
/// code are trusted. Topological order is not required: the importer sorts
/// the nodes afterwards, as ONNX Runtime does.
extension Graph {
    /// Throws `MPQError.invalidModel` naming the first value or node that breaks ONNX's structural rules.
    public func validate() throws {
        func fail(_ message: String) -> MPQError { .invalidModel(message) }
        guard !outputs.isEmpty else {
            throw fail("the graph declares no outputs (an ONNX graph needs at least one)")
        }
        var seenOutputs: Set<String> = []
        for output in outputs {
            guard !output.name.isEmpty else { throw fail("a graph output has an empty name") }
            guard seenOutputs.insert(output.name).inserted else {
                throw fail("graph output '\(output.name)' is declared twice (output names must be unique)")
            }
        }
        var seenInputs: Set<String> = []
        for input in inputs {
            guard !input.name.isEmpty else { throw fail("a graph input has an empty name") }
            guard seenInputs.insert(input.name).inserted else {
                throw fail("graph input '\(input.name)' is declared twice (input names must be unique)")
            }
        }
        // Static single assignment: every value has exactly one writer.
        var writer: [String: String] = [:]
        for input in inputs { writer[input.name] = "graph input" }
        for name in initializers.keys where writer[name] == nil { writer[name] = "initializer" }
        for node in nodes {
            var ownOutputs: Set<String> = []
            for output in node.outputs where !output.isEmpty {
                guard ownOutputs.insert(output).inserted else {
                    throw fail("\(node.opType) node '\(node.name)' lists output '\(output)' twice")
                }
                if let previous = writer[output] {
                    throw fail("value '\(output)' is written twice: by \(previous) and by \(node.opType) node '\(node.name)' (each value must have a single writer)")
                }
                writer[output] = "\(node.opType) node '\(node.name)'"
            }
        }
        for output in outputs where writer[output.name] == nil {
            throw fail("graph output '\(output.name)' is not produced by any node, input or initializer")
        }
    }
}

/// Where external tensor data may be read from: a regular file inside the
/// model's folder, named by a relative path without `..`, not a link out.
enum ExternalDataLocation {
    /// The file `location` names under `base`, or an error naming the tensor.
    static func resolve(_ location: String, base: URL, tensor: String) throws -> URL {
        func fail(_ why: String) -> MPQError {
            .invalidModel("external data of tensor '\(tensor)': location '\(location)' \(why)")
        }
        guard !location.isEmpty else { throw fail("is empty") }
        guard !location.hasPrefix("/"), !location.hasPrefix("~"), !location.contains("\\") else {
            throw fail("must be a path relative to the model's folder")
        }
        let components = location.split(separator: "/", omittingEmptySubsequences: true)
        guard !components.contains("..") else { throw fail("escapes the model's folder ('..' is not allowed)") }
        guard !location.utf8.contains(0) else { throw fail("contains a NUL byte") }
        let url = base.appendingPathComponent(location).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw MPQError.fileNotFound("\(url.path) (external data of tensor '\(tensor)')")
        }
        guard !isDirectory.boolValue else { throw fail("is a folder, not a file") }
        // Symbolic links are followed only while they stay inside the model's folder.
        let folder = base.standardizedFileURL.resolvingSymlinksInPath().path
        let resolved = url.resolvingSymlinksInPath().path
        let prefix = folder.hasSuffix("/") ? folder : folder + "/"
        guard resolved.hasPrefix(prefix) else { throw fail("resolves to \(resolved), outside the model's folder \(folder)") }
        return url
    }

    /// `offset` and `length` fields, checked against the file's size and the bytes the shape needs.
    static func range(offset: String?, length: String?, expectedBytes: Int, fileSize: Int,
                      location: String, tensor: String, shape: [Int]) throws -> Range<Int> {
        func fail(_ why: String) -> MPQError {
            .invalidModel("external data of tensor '\(tensor)' in \(location): \(why)")
        }
        let start: Int
        if let offset {
            guard let value = Int(offset), value >= 0 else { throw fail("offset '\(offset)' is not a non-negative integer") }
            start = value
        } else {
            start = 0
        }
        let count: Int
        if let length {
            guard let value = Int(length), value >= 0 else { throw fail("length '\(length)' is not a non-negative integer") }
            count = value
        } else {
            count = expectedBytes
        }
        guard count == expectedBytes else {
            throw fail("length \(count) does not match shape \(shape), which needs \(expectedBytes) bytes")
        }
        guard let end = SizeLimits.add(start, count), end <= fileSize else {
            throw fail("offset \(start) + length \(count) is past the end of the file (\(fileSize) bytes)")
        }
        return start..<end
    }
}
