import Foundation
import MPQGraph
import MPQRuntime

extension QDQExport {
    /// The largest bias magnitude, in units of s_x * s_w, that a runtime's int32 bias can hold.
    static let int32BiasLimit = Double(Int32.max)

    /// Moves float biases out of Conv / ConvTranspose / Gemm nodes into a following `Add` where the
    /// integer form a runtime derives would overflow int32.
    ///
    /// ONNX Runtime's default graph optimisations (`WeightBiasQuantization`, then the QDQ fusions)
    /// quantize a float bias to int32 with scale s_x * s_w when the node's input and weight come from
    /// DequantizeLinear. With 16-bit activations and 16-bit weights s_x * s_w can be so small that
    /// |bias| / (s_x * s_w) exceeds 2^31 - 1: the integer bias wraps and the model's output is garbage
    /// under the default session while the unoptimised session is right (issue 11's demo model:
    /// ratios up to 1.6e10). A bias added after the node stays float in every session; the node then
    /// runs on dequantized values, exactly as the QDQ semantics say.
    ///
    /// - Returns: the names of the nodes whose bias was moved.
    static func separateOverflowingBiases(_ graph: inout Graph, parameters: [String: QuantizationParameters])
        -> [String] {
        var moved: [String] = []
        var movedBiases: Set<String> = []
        var nodes: [Node] = []
        for var node in graph.nodes {
            guard ["Conv", "ConvTranspose", "Gemm"].contains(node.opType), node.inputs.count > 2,
                  let input = parameters[node.inputs[0]], input.format.isInteger,
                  let weight = parameters[node.inputs[1]], weight.format.isInteger,
                  let bias = graph.initializers[node.inputs[2]],
                  Self.integerBiasOverflows(bias, inputScales: input.scales, weightScales: weight.scales)
            else {
                nodes.append(node)
                continue
            }
            let output = node.outputs[0]
            let withoutBias = "\(output)_without_bias"
            var addend = bias
            if node.opType == "Gemm" {
                let beta = (try? node.float("beta", default: 1)) ?? 1
                addend = Tensor(shape: bias.shape, scalars: bias.floats().map { $0 * beta })
                node.attributes["beta"] = nil
            } else if let kernel = graph.initializers[node.inputs[1]] {
                // [C] -> [C, 1, ..., 1] to broadcast over the spatial dims of an NC... output.
                addend = bias.reshaped([bias.count] + Array(repeating: 1, count: max(kernel.rank - 2, 0)))
            }
            movedBiases.insert(node.inputs[2])
            let addendName = "\(node.inputs[2])_separated"
            graph.initializers[addendName] = addend
            node.inputs = Array(node.inputs.prefix(2))
            node.outputs[0] = withoutBias
            nodes.append(node)
            nodes.append(Node(name: "\(node.name)_bias_add", opType: "Add", inputs: [withoutBias, addendName],
                              outputs: [output]))
            moved.append(node.name)
        }
        graph.nodes = nodes
        // A moved bias that no other node reads leaves the model (its broadcastable copy replaces it).
        for name in movedBiases.subtracting(nodes.flatMap(\.inputs)) { graph.initializers[name] = nil }
        return moved
    }

    /// Whether max |bias| / (s_x * s_w) exceeds int32 for the smallest input and weight scales
    /// (conservative for per-channel scales).
    static func integerBiasOverflows(_ bias: Tensor, inputScales: [Float], weightScales: [Float]) -> Bool {
        guard let sx = inputScales.min(), let sw = weightScales.min() else { return false }
        let largest = bias.floats().reduce(Float(0)) { max($0, abs($1)) }
        let product = Double(sx) * Double(sw)
        guard product > 0 else { return largest > 0 }
        return Double(largest) / product > int32BiasLimit
    }
}
