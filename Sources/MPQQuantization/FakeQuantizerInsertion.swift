import Foundation
import MPQGraph
import MPQRuntime

extension Graph {
    /// This graph with a `FakeQuantize` node after each quantized value: `inputs` are graph
    /// inputs (their readers read `NAME/quantized`), `computed` are node outputs (renamed
    /// `NAME/float`; the quantizer writes `NAME`, so readers and graph outputs are unchanged).
    public func insertingFakeQuantizers(inputs: [String: QuantizationParameters],
                                        computed: [String: QuantizationParameters]) -> Graph {
        var result = self
        result.nodes = []
        var renamed: [String: String] = [:]
        for (name, p) in inputs.sorted(by: { $0.key < $1.key }) {
            renamed[name] = name + "/quantized"
            result.nodes.append(.fakeQuantize(name, output: name + "/quantized", parameters: p))
        }
        for var node in nodes {
            node.inputs = node.inputs.map { renamed[$0] ?? $0 }
            var quantizers: [Node] = []
            for (index, output) in node.outputs.enumerated() {
                guard let p = computed[output] else { continue }
                node.outputs[index] = output + "/float"
                quantizers.append(.fakeQuantize(output + "/float", output: output, parameters: p))
            }
            result.nodes.append(node)
            result.nodes += quantizers
        }
        return result
    }
}
