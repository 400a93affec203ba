/// One node the runtime cannot execute, with what the user needs to find it.
public struct UnsupportedNode: Sendable, Equatable, CustomStringConvertible {
    /// Operator type of the node.
    public var opType: String
    /// Node name as in the model.
    public var nodeName: String
    /// The model's default (ai.onnx) operator-set version.
    public var opset: Int
    /// Why the node is unsupported, when it is more than the op type (an attribute value, a data type).
    public var reason: String?

    /// Describes one unsupported node.
    public init(opType: String, nodeName: String, opset: Int, reason: String? = nil) {
        self.opType = opType
        self.nodeName = nodeName
        self.opset = opset
        self.reason = reason
    }

    /// "OpType (node 'name', opset N)", followed by the reason when there is one.
    public var description: String {
        let base = "\(opType) (node '\(nodeName)', opset \(opset))"
        return reason.map { "\(base): \($0)" } ?? base
    }
}

/// Errors mpq reports to users: each says what is wrong and where, on one line.
public enum MPQError: Error, Sendable, CustomStringConvertible, Equatable {
    case fileNotFound(String)
    case invalidModel(String)
    case unsupportedNodes([UnsupportedNode])
    case invalidAttribute(node: String, opType: String, message: String)
    case shapeMismatch(String)
    case typeMismatch(String)
    case invalidInput(String)
    case invalidTensorFile(String)
    case io(String)
    case kernelFailure(String)
    /// A size or number beyond what mpq accepts (overflow, more than the machine's memory).
    case limitExceeded(String)

    /// A one-line message for the user, prefixed with the kind of failure.
    public var description: String {
        switch self {
        case .fileNotFound(let path): return "file not found: \(path)"
        case .invalidModel(let message): return "invalid model: \(message)"
        case .unsupportedNodes(let nodes):
            // One entry per (op, opset, reason), naming every node.
            var groups: [(key: String, nodes: [String])] = []
            for node in nodes {
                let reason = node.reason.map { ": \($0)" } ?? ""
                let key = "\(node.opType) (opset \(node.opset))\(reason)"
                if let index = groups.firstIndex(where: { $0.key == key }) {
                    groups[index].nodes.append(node.nodeName)
                } else {
                    groups.append((key, [node.nodeName]))
                }
            }
            return "unsupported operators in \(nodes.count) node\(nodes.count == 1 ? "" : "s"): " + groups.map { group in
                "\(group.key) in node\(group.nodes.count == 1 ? "" : "s") " + group.nodes.map { "'\($0)'" }.joined(separator: ", ")
            }.joined(separator: "; ")
        case .invalidAttribute(let node, let opType, let message):
            return "\(opType) node '\(node)': \(message)"
        case .shapeMismatch(let message): return "shape mismatch: \(message)"
        case .typeMismatch(let message): return "type mismatch: \(message)"
        case .invalidInput(let message): return "invalid input: \(message)"
        case .invalidTensorFile(let message): return "invalid tensor file: \(message)"
        case .io(let message): return "I/O error: \(message)"
        case .kernelFailure(let message): return "kernel failure: \(message)"
        case .limitExceeded(let message): return "too large: \(message)"
        }
    }
}

extension MPQError {
    /// The error with the node that raised it named, if it does not say already.
    package func located(at node: Node) -> MPQError {
        let place = "\(node.opType) node '\(node.name)'"
        switch self {
        case .shapeMismatch(let m) where !m.contains(node.name): return .shapeMismatch("\(place): \(m)")
        case .typeMismatch(let m) where !m.contains(node.name): return .typeMismatch("\(place): \(m)")
        case .invalidInput(let m) where !m.contains(node.name): return .invalidInput("\(place): \(m)")
        default: return self
        }
    }
}
