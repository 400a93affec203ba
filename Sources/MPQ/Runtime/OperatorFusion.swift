/// Fuses an activation into the kernel that produces its input, as oneDNN
/// post-ops: Conv / ConvTranspose / Gemm followed by Relu or Clip with constant
/// bounds (MobileNet's ReLU6) run as one primitive and skip a memory pass.
///
/// Applied only to plans without value hooks, since the fused-away
/// intermediate value no longer exists.
enum OperatorFusion {
    static func fuse(_ graph: SpecializedGraph, outputs: Set<String>) throws -> SpecializedGraph {
        var consumers: [String: Int] = [:]
        for entry in graph.nodes { for name in entry.node.inputs { consumers[name, default: 0] += 1 } }
        var producerIndex: [String: Int] = [:]
        for (index, entry) in graph.nodes.enumerated() {
            for name in entry.node.outputs { producerIndex[name] = index }
        }
        var nodes = graph.nodes
        var removed = Set<Int>()
        for (index, entry) in graph.nodes.enumerated() {
            guard let activation = try self.activation(entry.node, graph.constants),
                  let input = entry.node.inputs.first, consumers[input] == 1, !outputs.contains(input),
                  let producer = producerIndex[input], !removed.contains(producer) else { continue }
            var fusedNode = nodes[producer].node
            guard fusedNode.outputs.count == 1 else { continue }
            fusedNode.outputs = [entry.node.outputs[0]]
            let op: Operator
            switch fusedNode.opType {
            case "Conv", "ConvTranspose":
                let conv = try ConvolutionOperator(node: fusedNode, transposed: fusedNode.opType == "ConvTranspose")
                conv.postOps = [activation]
                op = conv
            case "Gemm":
                let gemm = try GemmOperator(node: fusedNode)
                guard gemm.alpha == 1 else { continue }
                gemm.postOps = [activation]
                op = gemm
            default:
                continue
            }
            nodes[producer] = (fusedNode, op)
            removed.insert(index)
        }
        var result = graph
        result.nodes = nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        return result
    }

    /// The activation a Relu or Clip node applies, when its bounds are constants.
    private static func activation(_ node: Node, _ constants: [String: Tensor]) throws -> PostOp? {
        guard node.domain.isEmpty, node.outputs.count == 1 else { return nil }
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
