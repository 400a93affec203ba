import Foundation
import MPQGraph
import MPQRuntime

/// Real int8 execution of a quantized model: its `simulationGraph` with every
/// Conv / MatMul / Gemm that oneDNN's u8 x s8 kernels compute exactly
/// replaced by a `QuantizedConv` / `QuantizedMatMul` / `QuantizedGemm` node
/// (`QuantizationOperators`), which reads the float input of the layer's input
/// quantizer and quantizes it itself.
///
/// A layer is lowered when its input quantizer is uint8 per-tensor and its
/// weights are signed, symmetric (zero point 0), per-tensor or per-output-
/// channel, with codes of at most `weightBits` bits (7 on CPUs without VNNI,
/// `CPUFeatures.int8WeightBits`). Each such layer then computes
/// `s_x * s_w[c] * sum((q_x - z_x) * q_w[c]) + bias[c]`, the simulation's
/// float computation on the same codes up to summation order, so outputs
/// match the simulation of the same configuration. Other layers keep running
/// in float32 on quantize-dequantized values; `skipped` says why.
public struct Int8Lowering: Sendable {
    /// A layer left in float32, and why.
    public struct SkippedLayer: Sendable {
        /// Node name.
        public var node: String
        /// Why it was not lowered (format, granularity, weight bits, op attributes...).
        public var reason: String
    }

    /// The graph to run (e.g. with `InferenceSession`).
    public let graph: Graph
    /// Names of the nodes now run by int8 kernels.
    public let loweredNodes: [String]
    /// Conv, MatMul and Gemm nodes (of those `include` accepted) that stayed in float32, with the reason.
    public let skipped: [SkippedLayer]

    /// Lowers every eligible layer of `model` for which `include` returns true.
    ///
    /// With `simulatingTheRest` (the default) the other quantizers stay as
    /// `FakeQuantize` nodes, so the graph computes the simulated configuration;
    /// without, they are dropped and the graph is what a runtime deploys on this
    /// CPU: int8 kernels where they exist, float32 elsewhere (what latency
    /// measurements time), except the quantizers of residual Adds between int8
    /// layers (`integerAddQuantizers`), which fused plans run on uint8 codes
    /// (`Int8Chaining`) as a deployed int8 runtime does.
    public init(_ model: QuantizedModel, weightBits: Int = CPUFeatures.current.int8WeightBits,
                simulatingTheRest: Bool = true, include: (Node) -> Bool = { _ in true }) throws {
        let source = model.simulationGraph
        var producer: [String: Node] = [:]
        for node in source.nodes { for output in node.outputs { producer[output] = node } }
        var graph = source
        var lowered: [String] = [], skipped: [SkippedLayer] = []
        for (index, node) in source.nodes.enumerated()
        where node.domain.isEmpty && ["Conv", "MatMul", "Gemm"].contains(node.opType) && include(node) {
            do {
                graph.nodes[index] = try Self.lowered(node, model: model, weightBits: weightBits,
                                                      inputQuantizer: producer[node.inputs[0]], graph: &graph)
                lowered.append(node.name)
            } catch let reason as Ineligible {
                skipped.append(SkippedLayer(node: node.name, reason: reason.message))
            }
        }
        if !simulatingTheRest { graph.bypassFakeQuantizers(keeping: graph.integerAddQuantizers(lowered: Set(lowered))) }
        graph.removeUnreadNodesAndInitializers()
        self.graph = graph
        loweredNodes = lowered
        self.skipped = skipped
    }

    private struct Ineligible: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// The int8 node for `node`; adds its weight codes to `graph`'s initializers.
    private static func lowered(_ node: Node, model: QuantizedModel, weightBits: Int, inputQuantizer: Node?,
                                graph: inout Graph) throws -> Node {
        guard let quantizer = inputQuantizer, quantizer.opType == "FakeQuantize",
              quantizer.domain == QuantizationOperators.domain else {
            throw Ineligible("its input is not quantized")
        }
        let input = try QuantizationParameters(fakeQuantizeNode: quantizer)
        guard case .integer(8, false, _, false) = input.format, input.granularity == .perTensor else {
            throw Ineligible("int8 kernels take uint8 per-tensor inputs, the input is \(input.format) \(input.granularity)")
        }
        guard node.inputs.count >= 2, let weight = model.original.initializers[node.inputs[1]], weight.rank == 2 || node.opType == "Conv",
              let p = model.parameters[node.inputs[1]] else {
            throw Ineligible("its weights are not a quantized constant matrix or kernel")
        }
        guard case let .integer(bits, true, _, _) = p.format, bits <= weightBits, p.zeroPoints.allSatisfy({ $0 == 0 }) else {
            throw Ineligible("int8 kernels here take signed symmetric weights of at most \(weightBits) bits, the weights are \(p.format)")
        }
        if node.opType == "Gemm", try node.int("transA", default: 0) != 0 { throw Ineligible("Gemm with transA") }
        let axes = QuantizerPlacement.weightAxes(node, rank: weight.rank)
        let channels = weight.shape[axes.channel]
        let scales: [Float]
        switch p.granularity {
        case .perTensor: scales = Array(repeating: p.scales[0], count: channels)
        case .perChannel(let axis) where (axis + weight.rank) % weight.rank == axes.channel: scales = p.scales
        default: throw Ineligible("int8 kernels take per-tensor or per-output-channel weight scales, not \(p.granularity)")
        }
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard let bias = graph.initializers[node.inputs[2]], bias.count == channels else {
                throw Ineligible("its bias is not a constant with one value per output channel")
            }
        }
        let codes = node.inputs[1] + "/int8"
        graph.initializers[codes] = try weight.quantized(p)
        var result = node
        result.opType = "Quantized" + node.opType
        result.domain = QuantizationOperators.domain
        result.inputs[0] = quantizer.inputs[0]
        result.inputs[1] = codes
        result.attributes["input_scale"] = .float(input.scales[0])
        result.attributes["input_zero_point"] = .int(input.zeroPoints[0])
        result.attributes["weight_scales"] = .floats(scales)
        return result
    }
}

extension Graph {
    /// Names of the uint8 per-tensor `FakeQuantize` nodes around residual Adds
    /// whose operands are quantized outputs of `lowered` int8 layers or of other
    /// such Adds: the ones `Int8Chaining` turns into integer Adds on codes.
    func integerAddQuantizers(lowered: Set<String>) -> Set<String> {
        var producer: [String: Node] = [:]
        for node in nodes { for output in node.outputs { producer[output] = node } }
        var readers: [String: [Node]] = [:]
        for node in nodes { for input in node.inputs { readers[input, default: []].append(node) } }
        func uint8Quantizer(_ node: Node?) -> Node? {
            guard let node, node.domain == QuantizationOperators.domain, node.opType == "FakeQuantize",
                  let p = try? QuantizationParameters(fakeQuantizeNode: node),
                  case .integer(8, false, _, false) = p.format, p.granularity == .perTensor else { return nil }
            return node
        }
        var integerAdds: Set<String> = []
        var kept: Set<String> = []
        for node in nodes where node.domain.isEmpty && node.opType == "Add" && node.inputs.count == 2 {
            let quantizers = node.inputs.map { uint8Quantizer(producer[$0]) }
            guard quantizers.allSatisfy({ quantizer in
                guard let quantizer, let source = producer[quantizer.inputs[0]] else { return false }
                return lowered.contains(source.name) || integerAdds.contains(source.name)
            }) else { continue }
            integerAdds.insert(node.name)
            kept.formUnion(quantizers.compactMap { $0?.name })
            for reader in readers[node.outputs[0]] ?? [] { if let q = uint8Quantizer(reader) { kept.insert(q.name) } }
        }
        return kept
    }

    /// Removes every `FakeQuantize` node but those named in `keeping`, its
    /// readers reading its input instead (a graph output keeps its name: its
    /// producer writes it directly).
    mutating func bypassFakeQuantizers(keeping: Set<String> = []) {
        let outputNames = Set(outputs.map(\.name))
        var source: [String: String] = [:]
        var renamedOutput: [String: String] = [:]
        func bypassed(_ node: Node) -> Bool {
            node.domain == QuantizationOperators.domain && node.opType == "FakeQuantize" && !keeping.contains(node.name)
        }
        for node in nodes where bypassed(node) {
            if outputNames.contains(node.outputs[0]) {
                renamedOutput[node.inputs[0]] = node.outputs[0]
            } else {
                source[node.outputs[0]] = node.inputs[0]
            }
        }
        nodes = nodes.compactMap { node in
            if bypassed(node) { return nil }
            var node = node
            node.inputs = node.inputs.map { source[$0] ?? $0 }.map { renamedOutput[$0] ?? $0 }
            node.outputs = node.outputs.map { renamedOutput[$0] ?? $0 }
            return node
        }
    }

    /// Drops nodes whose outputs nobody reads (graph outputs excepted), repeatedly, then unread initializers.
    mutating func removeUnreadNodesAndInitializers() {
        while true {
            var read = Set(outputs.map(\.name))
            for node in nodes { read.formUnion(node.inputs) }
            let kept = nodes.filter { node in node.outputs.contains { read.contains($0) } }
            if kept.count == nodes.count {
                initializers = initializers.filter { read.contains($0.key) }
                return
            }
            nodes = kept
        }
    }
}
