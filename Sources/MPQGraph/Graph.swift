/// A node attribute, as ONNX defines them (sub-graphs are not supported).
public enum Attribute: Sendable {
    case int(Int)
    case float(Float)
    case string(String)
    case ints([Int])
    case floats([Float])
    case strings([String])
    case tensor(Tensor)
}

/// One operator application.
public struct Node: Sendable {
    /// Node name from the model (may be empty in ONNX); used in error messages and reports.
    public var name: String
    /// Operator type, e.g. "Conv", "MatMul", "QuantizeLinear".
    public var opType: String
    /// Operator domain; "" (or "ai.onnx") is the default ONNX operator set.
    public var domain: String
    /// Input value names; "" marks an omitted optional input.
    public var inputs: [String]
    /// Output value names, in the operator's output order.
    public var outputs: [String]
    /// Attributes by name, as in ONNX `NodeProto.attribute`.
    public var attributes: [String: Attribute]

    /// A node with the given type, wiring and attributes; `domain` defaults to the ONNX operator set.
    public init(name: String, opType: String, domain: String = "", inputs: [String], outputs: [String],
                attributes: [String: Attribute] = [:]) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    private func invalid(_ message: String) -> MPQError {
        .invalidAttribute(node: name, opType: opType, message: message)
    }

    /// The integer attribute `key`, or nil when absent; throws when it has another type.
    public func int(_ key: String) throws -> Int? {
        switch attributes[key] {
        case nil: return nil
        case .int(let v): return v
        default: throw invalid("attribute '\(key)' must be an int")
        }
    }

    /// The integer attribute `key`, or `value` when absent.
    public func int(_ key: String, default value: Int) throws -> Int { try int(key) ?? value }

    /// The float attribute `key` (an int attribute is accepted and converted), or `value` when absent.
    public func float(_ key: String, default value: Float) throws -> Float {
        switch attributes[key] {
        case nil: return value
        case .float(let v): return v
        case .int(let v): return Float(v)
        default: throw invalid("attribute '\(key)' must be a float")
        }
    }

    /// The string attribute `key`, or `value` when absent.
    public func string(_ key: String, default value: String) throws -> String {
        switch attributes[key] {
        case nil: return value
        case .string(let v): return v
        default: throw invalid("attribute '\(key)' must be a string")
        }
    }

    /// The int-list attribute `key` (a single int reads as a one-element list), or nil when absent.
    public func ints(_ key: String) throws -> [Int]? {
        switch attributes[key] {
        case nil: return nil
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw invalid("attribute '\(key)' must be a list of ints")
        }
    }

    /// The float-list attribute `key` (a single float reads as a one-element list), or nil when absent.
    public func floats(_ key: String) throws -> [Float]? {
        switch attributes[key] {
        case nil: return nil
        case .floats(let v): return v
        case .float(let v): return [v]
        default: throw invalid("attribute '\(key)' must be a list of floats")
        }
    }

    /// The tensor attribute `key` (e.g. `Constant.value`), or nil when absent.
    public func tensor(_ key: String) throws -> Tensor? {
        switch attributes[key] {
        case nil: return nil
        case .tensor(let v): return v
        default: throw invalid("attribute '\(key)' must be a tensor")
        }
    }

    /// The input at `index`, or nil when it is absent or omitted ("").
    public func input(_ index: Int) -> String? {
        index < inputs.count && !inputs[index].isEmpty ? inputs[index] : nil
    }
}

/// One dimension of a declared shape.
public enum ShapeDimension: Hashable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case symbolic(String)
    case unknown

    /// The size, the symbol's name, or "?" for an unknown dimension.
    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .symbolic(let name): return name
        case .unknown: return "?"
        }
    }

    /// The size when the dimension is fixed; nil for symbolic or unknown ones.
    public var value: Int? { if case .fixed(let n) = self { return n } else { return nil } }
}

/// Declared type and shape of a graph input or output.
public struct ValueInfo: Sendable {
    /// Value name, as nodes refer to it.
    public var name: String
    /// Element type.
    public var dtype: DataType
    /// nil when the model declares no shape.
    public var shape: [ShapeDimension]?

    /// A declared value; pass nil `shape` when the model declares none.
    public init(name: String, dtype: DataType, shape: [ShapeDimension]?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// A computation graph: nodes in topological order over named values.
public struct Graph: Sendable {
    /// Graph name from the model (ONNX `GraphProto.name`).
    public var name: String
    /// Nodes in topological order: every input is produced by an earlier node, an input or an initializer.
    public var nodes: [Node]
    /// Runtime inputs (initializers are not listed here).
    public var inputs: [ValueInfo]
    /// Values the graph returns, in declaration order.
    public var outputs: [ValueInfo]
    /// Constant values: initializers and `Constant` nodes, by value name.
    public var initializers: [String: Tensor]
    /// Version of the default ("ai.onnx") operator set.
    public var opset: Int

    /// A graph from its parts; nodes must already be in topological order.
    public init(name: String, nodes: [Node], inputs: [ValueInfo], outputs: [ValueInfo],
                initializers: [String: Tensor], opset: Int) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.opset = opset
    }

    /// Number of weight elements: floating-point initializers that are not
    /// scalars (scalars are operator settings such as Clip bounds).
    public var parameterCount: Int {
        initializers.values.filter { $0.dtype.isFloatingPoint && $0.rank > 0 }.reduce(0) { $0 + $1.count }
    }

    /// Sorts nodes so that every value is produced before it is used
    /// (`constants` names values provided outside `initializers`).
    /// Throws when a node reads a value nothing produces or the graph has a cycle.
    public mutating func sortTopologically(constants: Set<String> = []) throws {
        var available = Set(inputs.map(\.name)).union(initializers.keys).union(constants)
        available.insert("")
        var pending = nodes
        var sorted: [Node] = []
        sorted.reserveCapacity(nodes.count)
        while !pending.isEmpty {
            var next: [Node] = []
            for node in pending {
                if node.inputs.allSatisfy(available.contains) {
                    sorted.append(node)
                    available.formUnion(node.outputs)
                } else {
                    next.append(node)
                }
            }
            if next.count == pending.count {
                let node = next[0]
                let missing = node.inputs.first { !available.contains($0) } ?? "?"
                throw MPQError.invalidModel(
                    "node '\(node.name)' (\(node.opType)) reads '\(missing)', which no node, input or initializer produces (or the graph has a cycle)")
            }
            pending = next
        }
        nodes = sorted
    }
}
