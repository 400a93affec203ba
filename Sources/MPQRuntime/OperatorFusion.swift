import MPQGraph

/// Graph rewrites for plans without value hooks (the values they remove no
/// longer exist, so hooked plans run the graph as written):
///
/// - post-op fusion: a residual `Add` of a Conv output and another tensor of
///   the same shape, a bias `Add` after a MatMul with constant weights, the
///   exact GELU subgraph x * (1 + erf(x / sqrt 2)) * 0.5 of BERT exports, and a
///   Relu or Clip with constant bounds (MobileNet's ReLU6) run inside the
///   Conv / ConvTranspose / Gemm / MatMul primitive (float32 or int8) as oneDNN post-ops,
///   saving a memory pass each;
/// - layout propagation: a Conv whose every consumer is a Conv hands over its
///   output in oneDNN's blocked layout (int8 convolutions: channels-last), so
///   chains of convolutions skip the reorders to and from row-major;
/// - the plan rewrites higher layers register with `OperatorRegistry` (e.g.
///   int8 chaining in MPQQuantization: int8 layers hand over uint8 codes).
///
/// Which operators take post-ops or hand over their own layout is their
/// capability (`PostOpFusing`, `OpaqueLayoutEmitting`, `OpaqueLayoutReading`).
enum OperatorFusion {
    static func fuse(_ graph: SpecializedGraph, outputs: Set<String>) throws -> SpecializedGraph {
        var consumers: [String: Int] = [:]
        var readersOf: [String: [Int]] = [:]
        for (index, entry) in graph.nodes.enumerated() {
            for name in entry.node.inputs {
                consumers[name, default: 0] += 1
                readersOf[name, default: []].append(index)
            }
        }
        /// The constant scalar value of `name`, if it is one.
        func scalar(_ name: String) -> Float? {
            guard let c = graph.constants[name], c.count == 1, c.dtype == .float32 else { return nil }
            return c.floats()[0]
        }
        /// The single node reading `value`.
        func onlyReader(_ value: String) -> Int? {
            guard let readers = readersOf[value], readers.count == 1, !outputs.contains(value) else { return nil }
            return readers[0]
        }
        var nodes: [(node: Node, op: Operator)?] = graph.nodes
        var producer: [String: Int] = [:]
        for (index, entry) in graph.nodes.enumerated() {
            for name in entry.node.outputs { producer[name] = index }
        }
        /// The fusable producer of `value`: an operator taking post-ops whose only reader is the node being fused.
        func fusableProducer(of value: String, readersCount: Int = 1) -> Int? {
            guard consumers[value] == 1 || readersCount == consumers[value], !outputs.contains(value),
                  let index = producer[value], let entry = nodes[index], entry.node.outputs.count == 1,
                  let fusing = entry.op as? PostOpFusing,
                  fusing.hasConstantWeights(in: graph.constants, node: entry.node) else { return nil }
            return index
        }
        /// The float op computed by the operator at `index`.
        func fusedOpType(_ index: Int) -> String? { (nodes[index]?.op as? PostOpFusing)?.fusedOpType }

        for (index, entry) in graph.nodes.enumerated() {
            let node = entry.node
            guard node.domain.isEmpty, node.outputs.count == 1 else { continue }
            var target: Int?
            var postOp: PostOp?
            var residual: String?
            if node.opType == "Add", node.inputs.count == 2 {
                let shapes = node.inputs.map { graph.specs[$0]?.shape }
                for (mine, other) in [(0, 1), (1, 0)] where shapes[0] != nil && shapes[0] == shapes[1] {
                    if let candidate = fusableProducer(of: node.inputs[mine]),
                       ["Conv", "ConvTranspose"].contains(fusedOpType(candidate)),
                       // The residual must exist when the Conv runs.
                       producer[node.inputs[other]].map({ $0 < candidate }) ?? true {
                        target = candidate
                        residual = node.inputs[other]
                        postOp = .sum
                        break
                    }
                }
                if target == nil, let constantSide = node.inputs.firstIndex(where: { graph.constants[$0] != nil }),
                   let candidate = fusableProducer(of: node.inputs[1 - constantSide]),
                   fusedOpType(candidate) == "MatMul", nodes[candidate]!.node.inputs.count == 2,
                   let bias = graph.constants[node.inputs[constantSide]], bias.dtype == .float32,
                   let width = graph.specs[node.inputs[1 - constantSide]]?.shape?.last, bias.count == width,
                   bias.shape.dropLast().allSatisfy({ $0 == 1 }),
                   let fused = try withBias(nodes[candidate]!, bias: node.inputs[constantSide], outputs: node.outputs) {
                    // MatMul + bias: oneDNN's bias argument.
                    nodes[candidate] = fused
                    nodes[index] = nil
                    producer[node.outputs[0]] = candidate
                    continue
                }
            } else if node.opType == "Div", let divisor = scalar(node.inputs[1]), abs(divisor - Float(2).squareRoot()) < 1e-4,
                      let erf = onlyReader(node.outputs[0]), graph.nodes[erf].node.opType == "Erf",
                      let plusOne = onlyReader(graph.nodes[erf].node.outputs[0]), graph.nodes[plusOne].node.opType == "Add",
                      graph.nodes[plusOne].node.inputs.contains(where: { scalar($0) == 1 }),
                      let times = onlyReader(graph.nodes[plusOne].node.outputs[0]), graph.nodes[times].node.opType == "Mul",
                      graph.nodes[times].node.inputs.contains(node.inputs[0]),
                      let half = onlyReader(graph.nodes[times].node.outputs[0]), graph.nodes[half].node.opType == "Mul",
                      graph.nodes[half].node.inputs.contains(where: { scalar($0) == 0.5 }),
                      readersOf[node.inputs[0]]?.sorted() == [index, times].sorted(),
                      let candidate = fusableProducer(of: node.inputs[0], readersCount: 2),
                      let fused = try withPostOp(nodes[candidate]!, adding: .gelu, residual: nil,
                                                 output: graph.nodes[half].node.outputs[0]) {
                // GELU(x) = x * (1 + erf(x / sqrt 2)) * 0.5 spelled out in five nodes.
                nodes[candidate] = fused
                for removed in [index, erf, plusOne, times, half] { nodes[removed] = nil }
                producer[graph.nodes[half].node.outputs[0]] = candidate
                continue
            } else if let activation = try activation(node, graph.constants), let input = node.inputs.first {
                target = fusableProducer(of: input)
                postOp = activation
            }
            guard let target, let postOp, let fused = try withPostOp(nodes[target]!, adding: postOp, residual: residual,
                                                                   output: node.outputs[0]) else { continue }
            nodes[target] = fused
            nodes[index] = nil
            producer[node.outputs[0]] = target
        }

        var kept = nodes.compactMap { $0 }
        for rewrite in OperatorRegistry.planRewrites {
            kept = try rewrite(kept, outputs, graph.specs)
        }
        // Layout propagation: outputs read only by operators that take the producer's layout stay in it.
        var readers: [String: [(op: Operator, slot: Int)]] = [:]
        for entry in kept {
            for (slot, name) in entry.node.inputs.enumerated() { readers[name, default: []].append((entry.op, slot)) }
        }
        for entry in kept {
            guard let emitter = entry.op as? OpaqueLayoutEmitting, let value = entry.node.outputs.first,
                  !outputs.contains(value), let uses = readers[value], !uses.isEmpty,
                  uses.allSatisfy({ ($0.op as? OpaqueLayoutReading)?.readsOpaqueLayout(at: $0.slot, from: entry.op) ?? false })
            else { continue }
            emitter.emitsOpaqueOutput = true
        }
        var result = graph
        result.nodes = kept
        return result
    }

    /// A new operator for the MatMul `entry` with `bias` as its bias argument, writing `outputs`; nil if it cannot take one.
    private static func withBias(_ entry: (node: Node, op: Operator), bias: String,
                                 outputs: [String]) throws -> (node: Node, op: Operator)? {
        var node = entry.node
        node.outputs = outputs
        node.inputs.append(bias)
        return try (entry.op as? PostOpFusing)?.addingBias(node: node).map { (node, $0) }
    }

    /// A new operator for `entry` with one more post-op (and the residual as input 3), or nil if it cannot take it.
    private static func withPostOp(_ entry: (node: Node, op: Operator), adding postOp: PostOp, residual: String?,
                                output: String) throws -> (node: Node, op: Operator)? {
        var node = entry.node
        node.outputs = [output]
        if let residual {
            while node.inputs.count < 3 { node.inputs.append("") }
            node.inputs.append(residual)
        }
        return try (entry.op as? PostOpFusing)?.fusing(postOp, node: node).map { (node, $0) }
    }

    /// The activation a Relu or Clip node applies, when its bounds are constants.
    private static func activation(_ node: Node, _ constants: [String: Tensor]) throws -> PostOp? {
        switch node.opType {
        case "Relu":
            return .relu
        case "Clip":
            func bound(_ index: Int, attribute: String, default value: Float) throws -> Float? {
                if let name = node.input(index) {
                    guard let tensor = constants[name], tensor.count == 1, tensor.dtype == .float32 else { return nil }
                    return tensor.floats()[0]
                }
                return try node.float(attribute, default: value)
            }
            guard let low = try bound(1, attribute: "min", default: -.greatestFiniteMagnitude),
                  let high = try bound(2, attribute: "max", default: .greatestFiniteMagnitude) else { return nil }
            return .clip(min: low, max: high)
        default:
            return nil
        }
    }
}
