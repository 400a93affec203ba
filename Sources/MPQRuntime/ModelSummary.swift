import MPQGraph

/// Static facts about a model at given input shapes: what `mpq inspect` prints.
public struct ModelSummary: Sendable {
    /// Multiply-accumulates of one Conv / ConvTranspose / Gemm / MatMul node.
    public struct Layer: Sendable {
        /// Node name.
        public var name: String
        /// Operator type ("Conv", "ConvTranspose", "Gemm" or "MatMul").
        public var opType: String
        /// Shape of the node's first output at the analysed input shapes.
        public var outputShape: [Int]
        /// Multiply-accumulates of one run at the analysed input shapes.
        public var macs: Int
    }

    /// The graph's declared inputs.
    public var inputs: [ValueInfo]
    /// The graph's declared outputs.
    public var outputs: [ValueInfo]
    /// Concrete shapes used for the analysis (symbolic dims bound).
    public var inputShapes: [String: [Int]]
    /// Inferred output shapes by output name; nil where inference could not tell.
    public var outputShapes: [String: [Int]?]
    /// Node count per operator type, most frequent first (ties by name).
    public var opHistogram: [(opType: String, count: Int)]
    /// Number of weight elements (`Graph.parameterCount`).
    public var parameterCount: Int
    /// Bytes of all initializers as stored.
    public var weightBytes: Int
    /// The MAC-carrying nodes, in graph order.
    public var layers: [Layer]
    /// Multiply-accumulates of one run of the whole model (sum over `layers`).
    public var totalMACs: Int { layers.reduce(0) { $0 + $1.macs } }
    /// Nodes left after constant folding at these shapes.
    public var nodesAfterFolding: Int

    /// Analyses `graph`, binding symbolic input dims from `dimensions` (by name);
    /// unbound ones default to 1 for the leading axis and 128 elsewhere.
    public init(graph: Graph, dimensions: [String: Int] = [:]) throws {
        inputs = graph.inputs
        outputs = graph.outputs
        let shapes = Self.inputShapes(graph, dimensions: dimensions)
        inputShapes = shapes
        var counts: [String: Int] = [:]
        for node in graph.nodes { counts[node.opType, default: 0] += 1 }
        opHistogram = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { ($0.key, $0.value) }
        parameterCount = graph.parameterCount
        weightBytes = graph.initializers.values.reduce(0) { $0 + $1.byteCount }

        let session = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
        let specialized = try session.specialize(inputShapes: shapes)
        nodesAfterFolding = specialized.nodes.count
        outputShapes = Dictionary(graph.outputs.map { ($0.name, specialized.specs[$0.name]?.shape) }) { first, _ in first }
        layers = try graph.nodes.compactMap { node in
            let shape = { (name: String) in specialized.specs[name]?.shape }
            guard let out = node.outputs.first.flatMap(shape), let macs = try Self.macs(node, shape) else { return nil }
            return Layer(name: node.name, opType: node.opType, outputShape: out, macs: macs)
        }
        guard layers.reduce(Optional(0), { total, layer in total.flatMap { SizeLimits.add($0, layer.macs) } }) != nil else {
            throw MPQError.limitExceeded("the model's total MACs overflow a 64-bit integer")
        }
    }

    /// Concrete input shapes: fixed dims as declared, symbolic ones from
    /// `dimensions` or 1 for the leading axis and 128 elsewhere.
    public static func inputShapes(_ graph: Graph, dimensions: [String: Int] = [:]) -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        for input in graph.inputs {
            shapes[input.name] = (input.shape ?? []).enumerated().map { axis, dim in
                switch dim {
                case .fixed(let n): return n
                case .symbolic(let name): return dimensions[name] ?? (axis == 0 ? 1 : 128)
                case .unknown: return axis == 0 ? 1 : 128
                }
            }
        }
        return shapes
    }

    /// MACs of `node` (overflow-checked: an error naming the node when they do not fit 64 bits).
    private static func macs(_ node: Node, _ shape: (String) -> [Int]?) throws -> Int? {
        guard node.inputs.count >= 2, let a = shape(node.inputs[0]), let b = shape(node.inputs[1]),
              let y = shape(node.outputs[0]), !a.isEmpty, !b.isEmpty else { return nil }
        func product(_ factors: [Int]) throws -> Int {
            guard let value = SizeLimits.product(factors) else {
                throw MPQError.limitExceeded("the MACs of \(node.opType) node '\(node.name)' overflow a 64-bit integer")
            }
            return value
        }
        switch node.opType {
        case "Conv":
            // Each output element sums over (C_in / group) x kernel.
            return try product(y + Array(b.dropFirst()))
        case "ConvTranspose":
            // Each input element scatters into (C_out / group) x kernel outputs.
            return try product(a + Array(b.dropFirst()))
        case "Gemm":
            let transA = ((try? node.int("transA", default: 0)) ?? 0) != 0
            return try product(y + [transA ? a[0] : a[a.count - 1]])
        case "MatMul":
            return try product(y + [a[a.count - 1]])
        default:
            return nil
        }
    }
}
