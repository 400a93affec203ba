/// Graph rewrites for plans without value hooks (the values they remove no
/// longer exist, so hooked plans run the graph as written):
///
/// - post-op fusion: a residual `Add` of a Conv output and another tensor of
///   the same shape, then a Relu or Clip with constant bounds (MobileNet's
///   ReLU6), run inside the Conv / ConvTranspose / Gemm primitive as oneDNN
///   post-ops, saving a memory pass each;
/// - layout propagation: a Conv whose every consumer is a Conv hands over its
///   output in oneDNN's blocked layout, so chains of convolutions skip the
///   reorders to and from row-major.
enum OperatorFusion {
    static func fuse(_ graph: SpecializedGraph, outputs: Set<String>) throws -> SpecializedGraph {
        var consumers: [String: Int] = [:]
        for entry in graph.nodes { for name in entry.node.inputs { consumers[name, default: 0] += 1 } }
        var nodes: [(node: Node, op: Operator)?] = graph.nodes
        var producer: [String: Int] = [:]
        for (index, entry) in graph.nodes.enumerated() {
            for name in entry.node.outputs { producer[name] = index }
        }
        /// The fusable producer of `value`: a Conv/Gemm whose only reader is the node being fused.
        func fusableProducer(of value: String) -> Int? {
            guard consumers[value] == 1, !outputs.contains(value), let index = producer[value],
                  let entry = nodes[index], entry.node.outputs.count == 1,
                  ["Conv", "ConvTranspose", "Gemm"].contains(entry.node.opType) else { return nil }
            return index
        }

        for (index, entry) in graph.nodes.enumerated() {
            let node = entry.node
            guard node.domain.isEmpty, node.outputs.count == 1 else { continue }
            var target: Int?
            var postOp: PostOp?
            var residual: String?
            if node.opType == "Add", node.inputs.count == 2 {
                let shapes = node.inputs.map { graph.specs[$0]?.shape }
                guard shapes[0] != nil, shapes[0] == shapes[1] else { continue }
                for (mine, other) in [(0, 1), (1, 0)] {
                    if let candidate = fusableProducer(of: node.inputs[mine]),
                       nodes[candidate]!.node.opType.hasPrefix("Conv"),
                       // The residual must exist when the Conv runs.
                       producer[node.inputs[other]].map({ $0 < candidate }) ?? true {
                        target = candidate
                        residual = node.inputs[other]
                        postOp = .sum
                        break
                    }
                }
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

        let kept = nodes.compactMap { $0 }
        // Layout propagation: Conv outputs read only by Convs (as data or residual) stay blocked.
        var readers: [String: [(op: Operator, slot: Int)]] = [:]
        for entry in kept {
            for (slot, name) in entry.node.inputs.enumerated() { readers[name, default: []].append((entry.op, slot)) }
        }
        for entry in kept {
            guard let conv = entry.op as? ConvolutionOperator, let value = entry.node.outputs.first,
                  !outputs.contains(value), let uses = readers[value], !uses.isEmpty,
                  uses.allSatisfy({ $0.op is ConvolutionOperator && ($0.slot == 0 || $0.slot == 3) }) else { continue }
            conv.emitsOpaqueOutput = true
        }
        var result = graph
        result.nodes = kept
        return result
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
        switch entry.op {
        case let conv as ConvolutionOperator:
            let fused = try ConvolutionOperator(node: node, transposed: conv.transposed)
            fused.postOps = conv.postOps + [postOp]
            return (node, fused)
        case let gemm as GemmOperator where gemm.alpha == 1 && postOp != .sum:
            let fused = try GemmOperator(node: node)
            fused.postOps = gemm.postOps + [postOp]
            return (node, fused)
        default:
            return nil
        }
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
