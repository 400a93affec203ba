import MPQGraph
import MPQRuntime

/// Where quantizers go in a graph, by standard practice (as in AIMET, ONNX
/// Runtime's quantizer and NNCF): the weights of Conv / ConvTranspose / Gemm /
/// MatMul, the activations entering those ops, both inputs of residual Adds
/// whose sum stays in the integer domain, and the graph outputs. A value read
/// by several ops has one quantizer.
///
/// A residual Add is quantized only when its sum is itself quantized: read by a
/// quantized op, by another such Add, or a quantized graph output (MobileNetV2's
/// linear bottlenecks, which an int8 runtime adds in integers). A skip
/// connection whose sum goes to a float op, such as a transformer's Add before
/// LayerNormalization, runs in float in every runtime; quantizing its operands
/// would only add error (the attention and FFN projections' outputs carry the
/// outlier channels of Bondarenko et al. 2021, §3): on all-MiniLM-L6-v2 W8A8
/// they cost 0.05 of held-out cosine similarity.
public struct QuantizerPlacement: Sendable {
    /// One place a quantizer acts.
    public struct Site: Hashable, Sendable, Codable {
        /// Whether the site quantizes a weight initializer or an activation computed at run time.
        public enum Role: String, Hashable, Sendable, Codable { case weight, activation }
        /// The quantized value (initializer name for weights).
        public var value: String
        /// Weight or activation.
        public var role: Role
        /// For weights: the output-channel axis (per-channel scales) and the
        /// reduction axis (per-group scales) of the weight tensor.
        public var channelAxis: Int?
        /// For weights: the axis summed over by the consumer (per-group scales split it); nil for activations.
        public var reductionAxis: Int?
        /// Node names that read the value.
        public var consumers: [String]
    }

    /// Which sites to place.
    public struct Options: Sendable {
        /// Ops whose weights and input activations get quantizers; default Conv, ConvTranspose, Gemm, MatMul.
        public var opTypes: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
        /// Quantize both inputs of Adds whose inputs have equal shapes (skip connections); default true.
        public var residualAdds = true
        /// Quantize the graph outputs; default true.
        public var graphOutputs = true
        /// The standard placement: all four op types, residual Adds and graph outputs.
        public init() {}
    }

    /// Every site, weights and activations, in graph order; one per quantized value.
    public private(set) var sites: [Site]

    /// Places quantizers in `graph` by `options`; shape inference (when it succeeds) tells
    /// residual Adds from broadcasting ones such as attention masks.
    public init(graph: Graph, options: Options = Options()) {
        // Shapes tell skip connections (equal shapes) from broadcast adds such as attention masks.
        let shapes = (try? InferenceSession(graph: graph, options: SessionOptions(threads: 1))
            .specialize(inputShapes: ModelSummary.inputShapes(graph)).specs) ?? [:]
        var sites: [Site] = []
        var index: [String: Int] = [:]
        var readers: [String: [String]] = [:]
        for node in graph.nodes { for input in node.inputs where !input.isEmpty { readers[input, default: []].append(node.name) } }
        let integerInputs = Set(graph.inputs.filter { $0.dtype != .float32 }.map(\.name))

        func add(_ value: String, _ role: Site.Role, channelAxis: Int? = nil, reductionAxis: Int? = nil) {
            guard !value.isEmpty, index[value] == nil, !integerInputs.contains(value) else { return }
            if role == .activation {
                // Activations are computed float values or float graph inputs, never constants.
                guard graph.initializers[value] == nil else { return }
            }
            index[value] = sites.count
            sites.append(Site(value: value, role: role, channelAxis: channelAxis, reductionAxis: reductionAxis,
                              consumers: readers[value] ?? []))
        }

        let integerSums = options.residualAdds
            ? Self.integerResidualAdds(graph, shapes: shapes, readers: readers, options: options) : []
        for node in graph.nodes where node.domain.isEmpty {
            if options.opTypes.contains(node.opType), node.inputs.count >= 2 {
                add(node.inputs[0], .activation)
                let b = node.inputs[1]
                if let weight = graph.initializers[b], weight.dtype == .float32, weight.rank >= 2 {
                    let axes = Self.weightAxes(node, rank: weight.rank)
                    add(b, .weight, channelAxis: axes.channel, reductionAxis: axes.reduction)
                } else {
                    add(b, .activation)
                }
            } else if integerSums.contains(node.name) {
                node.inputs.forEach { add($0, .activation) }
            }
        }
        if options.graphOutputs {
            for output in graph.outputs where output.dtype == .float32 { add(output.name, .activation) }
        }
        self.sites = sites
    }

    /// Names of the residual Adds whose operands get quantizers: skip connections (both operands
    /// computed, of one shape; not a bias or mask add) whose sum is read by a quantized op or by
    /// another such Add, or is a quantized graph output.
    private static func integerResidualAdds(_ graph: Graph, shapes: [String: ValueSpec], readers: [String: [String]],
                                            options: Options) -> Set<String> {
        let nodesByName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let skipConnections = graph.nodes.filter { node in
            guard node.domain.isEmpty, node.opType == "Add", node.inputs.count == 2,
                  node.inputs.allSatisfy({ graph.initializers[$0] == nil }),
                  let shape = shapes[node.inputs[0]]?.shape, shape == shapes[node.inputs[1]]?.shape else { return false }
            return shapes[node.inputs[0]]?.constant == nil && shapes[node.inputs[1]]?.constant == nil
        }
        let outputs = options.graphOutputs ? Set(graph.outputs.filter { $0.dtype == .float32 }.map(\.name)) : []
        var integer: Set<String> = []
        // Reverse graph order: a later Add is decided before the Adds that feed it.
        for node in skipConnections.reversed() {
            let sum = node.outputs[0]
            let quantizedReader = (readers[sum] ?? []).contains { name in
                guard let reader = nodesByName[name], reader.domain.isEmpty else { return false }
                if integer.contains(name) { return true }
                return options.opTypes.contains(reader.opType) && reader.inputs.prefix(2).contains(sum)
            }
            if quantizedReader || outputs.contains(sum) { integer.insert(node.name) }
        }
        return integer
    }

    /// Output-channel and reduction axes of an op's weight (input 1).
    static func weightAxes(_ node: Node, rank: Int) -> (channel: Int, reduction: Int) {
        switch node.opType {
        case "Conv": return (0, 1)                 // [O, I/g, k...]
        case "ConvTranspose": return (1, 0)        // [I, O/g, k...]
        case "Gemm":
            let transB = ((try? node.int("transB", default: 0)) ?? 0) != 0
            return transB ? (0, 1) : (1, 0)        // [N, K] or [K, N]
        default: return (rank - 1, rank - 2)       // MatMul [.., K, N]
        }
    }

    /// The weight sites.
    public var weights: [Site] { sites.filter { $0.role == .weight } }
    /// The activation sites.
    public var activations: [Site] { sites.filter { $0.role == .activation } }
}
