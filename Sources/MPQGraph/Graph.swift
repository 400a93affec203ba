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
    public var name: String
    public var opType: String
    public var domain: String
    /// Input value names; "" marks an omitted optional input.
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: Attribute]

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

    public func int(_ key: String) throws -> Int? {
        switch attributes[key] {
        case nil: return nil
        case .int(let v): return v
        default: throw invalid("attribute '\(key)' must be an int")
        }
    }

    public func int(_ key: String, default value: Int) throws -> Int { try int(key) ?? value }

    public func float(_ key: String, default value: Float) throws -> Float {
        switch attributes[key] {
        case nil: return value
        case .float(let v): return v
        case .int(let v): return Float(v)
        default: throw invalid("attribute '\(key)' must be a float")
        }
    }

    public func string(_ key: String, default value: String) throws -> String {
        switch attributes[key] {
        case nil: return value
        case .string(let v): return v
        default: throw invalid("attribute '\(key)' must be a string")
        }
    }

    public func ints(_ key: String) throws -> [Int]? {
        switch attributes[key] {
        case nil: return nil
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw invalid("attribute '\(key)' must be a list of ints")
        }
    }

    public func floats(_ key: String) throws -> [Float]? {
        switch attributes[key] {
        case nil: return nil
        case .floats(let v): return v
        case .float(let v): return [v]
        default: throw invalid("attribute '\(key)' must be a list of floats")
        }
    }

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

    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .symbolic(let name): return name
        case .unknown: return "?"
        }
    }

    public var value: Int? { if case .fixed(let n) = self { return n } else { return nil } }
}

/// Declared type and shape of a graph input or output.
public struct ValueInfo: Sendable {
    public var name: String
    public var dtype: DataType
    /// nil when the model declares no shape.
    public var shape: [ShapeDimension]?

    public init(name: String, dtype: DataType, shape: [ShapeDimension]?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// A computation graph: nodes in topological order over named values.
public struct Graph: Sendable {
    public var name: String
    public var nodes: [Node]
    /// Runtime inputs (initializers are not listed here).
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    /// Constant values: initializers and `Constant` nodes, by value name.
    public var initializers: [String: Tensor]
    /// Version of the default ("ai.onnx") operator set.
    public var opset: Int

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
