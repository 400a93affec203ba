import Foundation
import MPQGraph
import MPQRuntime
import ONNXProto

/// Writes a quantized model as QDQ ONNX: every quantizer becomes a
/// QuantizeLinear / DequantizeLinear pair (weights: integer initializers and a
/// DequantizeLinear), which ONNX Runtime and other runtimes execute natively.
///
/// - int8/uint8 work at any opset; int4/uint4/int16/uint16 and per-group
///   scales need opset 21, fp8 opset 19: the model's opset is raised when
///   needed (attributes that became inputs are converted).
/// - Other integer widths (2, 3, 5-7, 9-15 bits) are stored in the next
///   container (int8/int16); activations get a Clip to the format's range in
///   front of the QuantizeLinear, so the result is the same.
/// - float16 / bfloat16 are Cast pairs.
public struct QDQExport {
    /// The QDQ model, as ONNX.
    public let proto: Onnx_ModelProto
    /// How each format was expressed, for the report.
    public let notes: [String]

    /// Builds the QDQ ONNX of `model`, raising its opset when a format needs a newer one.
    public init(_ model: QuantizedModel) throws {
        var notes: [String] = []
        let needed = model.parameters.values.map { Self.requiredOpset($0) }.max() ?? 0
        var graph = model.original
        if needed > graph.opset {
            try Self.raiseOpset(&graph, to: needed)
            notes.append("opset raised from \(model.original.opset) to \(needed) for the formats used")
        }
        let separated = Self.separateOverflowingBiases(&graph, parameters: model.parameters)
        if !separated.isEmpty {
            notes.append("float bias moved into an Add after \(separated.count) node(s) whose int32 bias would overflow (|bias| / (s_x * s_w) > 2^31 - 1): \(separated.joined(separator: ", "))")
        }
        var extraInitializers: [Onnx_TensorProto] = []
        var nodes: [Node] = []
        var renamed: [String: String] = [:]
        let outputNames = Set(graph.outputs.map(\.name))
        var formatNotes = Set<String>()

        for site in model.placement.sites {
            guard let p = model.parameters[site.value], p.format != .float32 else { continue }
            let v = site.value
            if site.role == .weight, let weight = graph.initializers[v] {
                graph.initializers[v] = nil
                let (stored, storedNote) = try Self.storedWeight(weight, p, name: "\(v)_quantized")
                extraInitializers.append(stored)
                if let storedNote { formatNotes.insert(storedNote) }
                nodes += try Self.dequantize(input: "\(v)_quantized", output: v, p, prefix: v, &extraInitializers)
                continue
            }
            // Activations: consumers read `v_dequantized`; a graph output keeps its name.
            let source = outputNames.contains(v) ? "\(v)_float" : v
            let result = outputNames.contains(v) ? v : "\(v)_dequantized"
            if outputNames.contains(v) { renamed[v] = source } else { renamed[v] = result }
            var input = source
            if p.format.isInteger, let clip = Self.clipBounds(p) {
                extraInitializers += [Tensor(scalar: clip.0).proto(name: "\(v)_clip_min"), Tensor(scalar: clip.1).proto(name: "\(v)_clip_max")]
                nodes.append(Node(name: "\(v)_Clip", opType: "Clip", inputs: [input, "\(v)_clip_min", "\(v)_clip_max"], outputs: ["\(v)_clipped"]))
                input = "\(v)_clipped"
                formatNotes.insert("\(p.format.name) activations: Clip to the \(p.format.bitWidth)-bit range, then QDQ in a wider container")
            }
            nodes += try Self.quantizeDequantize(input: input, output: result, p, prefix: v, &extraInitializers)
        }

        // Rewire: producers of output sites write `v_float`; consumers of other sites read `v_dequantized`.
        var rewired: [Node] = []
        for var node in graph.nodes {
            node.outputs = node.outputs.map { name in outputNames.contains(name) ? (renamed[name] ?? name) : name }
            node.inputs = node.inputs.map { name in
                guard let target = renamed[name], !outputNames.contains(name) else { return name }
                return target
            }
            rewired.append(node)
        }
        graph.nodes = rewired + nodes
        try graph.sortTopologically(constants: Set(extraInitializers.map(\.name)))
        notes += formatNotes.sorted()

        var out = Model(graph: graph, irVersion: Model.irVersion(forOpset: graph.opset), producer: "mpq").proto()
        out.graph.initializer += extraInitializers
        proto = out
        self.notes = notes
    }

    /// Writes the QDQ model atomically.
    public func write(to path: String) throws {
        let bytes: Data
        do { bytes = try proto.serializedBytes() } catch { throw MPQError.io("cannot encode the QDQ model: \(error)") }
        try AtomicFile.write(bytes, to: path)
    }

    // MARK: - Formats

    /// ONNX element type and whether the format's range is narrower than the container's.
    static func container(_ format: QuantizationFormat, opset: Int) -> (type: Onnx_TensorProto.DataType, narrower: Bool) {
        switch format {
        case .integer(let bits, let signed, _, let narrow):
            if bits == 4 { return (signed ? .int4 : .uint4, narrow) }
            if bits <= 8 { return (signed ? .int8 : .uint8, bits < 8 || narrow) }
            return (signed ? .int16 : .uint16, bits < 16 || narrow)
        case .float8E4M3FN: return (.float8E4M3Fn, false)
        case .float8E5M2: return (.float8E5M2, false)
        case .float16: return (.float16, false)
        case .bfloat16: return (.bfloat16, false)
        case .float32: return (.float, false)
        }
    }

    static func requiredOpset(_ p: QuantizationParameters) -> Int {
        if case .perGroup = p.granularity { return 21 }
        switch p.format {
        case .integer(let bits, _, _, _): return bits <= 8 && bits != 4 ? 13 : 21
        case .float8E4M3FN, .float8E5M2: return 19
        default: return 0
        }
    }

    /// The float bounds of an integer format narrower than its container.
    static func clipBounds(_ p: QuantizationParameters) -> (Float, Float)? {
        guard container(p.format, opset: 21).narrower, case .perTensor = p.granularity else { return nil }
        let scale = p.scales[0], zero = Float(p.zeroPoints[0])
        return ((Float(p.format.qmin) - zero) * scale, (Float(p.format.qmax) - zero) * scale)
    }

    /// Scale and zero-point initializers (shaped for the granularity) for a Q/DQ pair.
    static func scaleAndZeroPoint(_ p: QuantizationParameters, prefix: String, weightShape: [Int]?,
                                  _ initializers: inout [Onnx_TensorProto]) -> (scale: String, zeroPoint: String?, attributes: [String: Attribute]) {
        var scaleShape: [Int] = []
        var attributes: [String: Attribute] = [:]
        switch p.granularity {
        case .perTensor: break
        case .perChannel(let axis):
            scaleShape = [p.scales.count]
            attributes["axis"] = .int(axis)
        case .perGroup(let axis, let size):
            var shape = weightShape ?? []
            if axis < shape.count { shape[axis] /= size }
            scaleShape = shape
            attributes["axis"] = .int(axis)
            attributes["block_size"] = .int(size)
        }
        initializers.append(Tensor(shape: scaleShape, scalars: p.scales).proto(name: "\(prefix)_scale"))
        let (type, _) = container(p.format, opset: 21)
        guard p.format.isInteger || p.format == .float8E4M3FN || p.format == .float8E5M2 else { return ("\(prefix)_scale", nil, attributes) }
        var zero = Onnx_TensorProto()
        zero.name = "\(prefix)_zero_point"
        zero.dataType = Int32(type.rawValue)
        zero.dims = scaleShape.map(Int64.init)
        zero.rawData = packed(p.format.isInteger ? p.zeroPoints : Array(repeating: 0, count: p.scales.count), type: type)
        initializers.append(zero)
        return ("\(prefix)_scale", "\(prefix)_zero_point", attributes)
    }

    static func quantizeDequantize(input: String, output: String, _ p: QuantizationParameters, prefix: String,
                                   _ initializers: inout [Onnx_TensorProto]) throws -> [Node] {
        if p.format == .float16 || p.format == .bfloat16 {
            let to = p.format == .float16 ? DataType.float16 : .bfloat16
            return [Node(name: "\(prefix)_Cast", opType: "Cast", inputs: [input], outputs: ["\(prefix)_narrow"], attributes: ["to": .int(to.rawValue)]),
                    Node(name: "\(prefix)_CastBack", opType: "Cast", inputs: ["\(prefix)_narrow"], outputs: [output], attributes: ["to": .int(DataType.float32.rawValue)])]
        }
        let (scale, zero, attributes) = scaleAndZeroPoint(p, prefix: prefix, weightShape: nil, &initializers)
        let qInputs = [input, scale] + (zero.map { [$0] } ?? [])
        return [Node(name: "\(prefix)_QuantizeLinear", opType: "QuantizeLinear", inputs: qInputs, outputs: ["\(prefix)_quantized"], attributes: attributes),
                Node(name: "\(prefix)_DequantizeLinear", opType: "DequantizeLinear", inputs: ["\(prefix)_quantized"] + Array(qInputs.dropFirst()),
                     outputs: [output], attributes: attributes)]
    }

    static func dequantize(input: String, output: String, _ p: QuantizationParameters, prefix: String,
                           _ initializers: inout [Onnx_TensorProto]) throws -> [Node] {
        if p.format == .float16 || p.format == .bfloat16 {
            return [Node(name: "\(prefix)_Cast", opType: "Cast", inputs: [input], outputs: [output], attributes: ["to": .int(DataType.float32.rawValue)])]
        }
        let shape = initializers.first { $0.name == input }.map { $0.dims.map { Int($0) } }
        let (scale, zero, attributes) = scaleAndZeroPoint(p, prefix: prefix, weightShape: shape, &initializers)
        return [Node(name: "\(prefix)_DequantizeLinear", opType: "DequantizeLinear",
                     inputs: [input, scale] + (zero.map { [$0] } ?? []), outputs: [output], attributes: attributes)]
    }

    /// The weight's integer codes or narrow-float bits as an initializer.
    static func storedWeight(_ weight: Tensor, _ p: QuantizationParameters, name: String) throws -> (Onnx_TensorProto, String?) {
        let codes = try weight.quantized(p)
        let (type, narrower) = container(p.format, opset: 21)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(type.rawValue)
        t.dims = weight.shape.map(Int64.init)
        if p.format.isInteger {
            t.rawData = packed(codes.integers(), type: type)
        } else {
            t.rawData = Data(bytes: codes.rawPointer, count: codes.byteCount)
        }
        return (t, narrower ? "\(p.format.name) weights: codes stored in \(type) (values stay within the format's range)" : nil)
    }

    /// Little-endian bytes of integer values in an ONNX container type (4-bit types packed two per byte, low nibble first).
    static func packed(_ values: [Int], type: Onnx_TensorProto.DataType) -> Data {
        switch type {
        case .int4, .uint4:
            var bytes = [UInt8](repeating: 0, count: (values.count + 1) / 2)
            for (i, v) in values.enumerated() {
                let nibble = UInt8(truncatingIfNeeded: v) & 0x0F
                bytes[i / 2] |= i % 2 == 0 ? nibble : nibble << 4
            }
            return Data(bytes)
        case .int16, .uint16:
            var data = Data(capacity: values.count * 2)
            for v in values { let u = UInt16(truncatingIfNeeded: v); data.append(UInt8(u & 0xFF)); data.append(UInt8(u >> 8)) }
            return data
        default:
            return Data(values.map { UInt8(truncatingIfNeeded: $0) })
        }
    }

    // MARK: - Opset

    /// Raises the graph's opset, converting what changed meaning on the way: attributes that became
    /// inputs (axes, Split's split) and the 2-D coercion of Softmax / LogSoftmax / Hardmax before opset 13.
    static func raiseOpset(_ graph: inout Graph, to opset: Int) throws {
        let from = graph.opset
        let coercing: Set<String> = ["Softmax", "LogSoftmax", "Hardmax"]
        let needsRanks = from < 13 && opset >= 13 && graph.nodes.contains { coercing.contains($0.opType) }
        let ranks = needsRanks ? Self.ranks(of: graph) : [:]
        var nodes: [Node] = []
        for var node in graph.nodes {
            let axesBecameInput: Int? = {
                switch node.opType {
                case "Squeeze", "Unsqueeze", "ReduceSum": return 13
                case "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
                     "ReduceLogSumExp", "ReduceSumSquare": return 18
                default: return nil
                }
            }()
            if let version = axesBecameInput, from < version, opset >= version, let axes = try node.ints("axes") {
                let name = "\(node.name)_axes"
                graph.initializers[name] = Tensor(shape: [axes.count], scalars: axes.map(Int64.init))
                node.attributes["axes"] = nil
                node.inputs = [node.inputs[0], name]
            } else if node.opType == "Split", from < 13, opset >= 13, let split = try node.ints("split") {
                let name = "\(node.name.isEmpty ? node.outputs[0] : node.name)_split"
                graph.initializers[name] = Tensor(shape: [split.count], scalars: split.map(Int64.init))
                node.attributes["split"] = nil
                node.inputs = [node.inputs[0], name]
            } else if coercing.contains(node.opType), from < 13, opset >= 13 {
                nodes += try Self.singleAxis(node, rank: ranks[node.inputs[0]], graph: &graph)
                continue
            }
            nodes.append(node)
        }
        graph.nodes = nodes
        graph.opset = opset
    }

    /// A Softmax / LogSoftmax / Hardmax of opset < 13 (the input coerced to 2-D [prod(d[..<axis]), prod(d[axis...])],
    /// the op along the second dim) as opset-13 nodes: the same node along the last axis when `axis` is the last one
    /// (exact), else Flatten at `axis`, the op along axis 1 of the 2-D result, and a Reshape back to the input's shape.
    static func singleAxis(_ node: Node, rank: Int?, graph: inout Graph) throws -> [Node] {
        var converted = node
        let axis = try node.int("axis", default: 1)
        converted.attributes["axis"] = .int(-1)
        if axis == -1 || rank.map({ (axis < 0 ? axis + $0 : axis) == $0 - 1 }) == true { return [converted] }
        let base = node.name.isEmpty ? node.outputs[0] : node.name
        let input = node.inputs[0], output = node.outputs[0]
        converted.inputs = ["\(base)_2d_input"]
        converted.outputs = ["\(base)_2d_output"]
        converted.attributes["axis"] = .int(1)
        return [
            Node(name: "\(base)_flatten", opType: "Flatten", inputs: [input], outputs: ["\(base)_2d_input"],
                 attributes: ["axis": .int(axis)]),
            converted,
            Node(name: "\(base)_shape", opType: "Shape", inputs: [input], outputs: ["\(base)_input_shape"]),
            Node(name: "\(base)_reshape", opType: "Reshape", inputs: ["\(base)_2d_output", "\(base)_input_shape"],
                 outputs: [output]),
        ]
    }

    /// The rank of every value shape inference can tell (input dims bound as `ModelSummary` binds them); empty on failure.
    static func ranks(of graph: Graph) -> [String: Int] {
        guard let session = try? InferenceSession(graph: graph, options: SessionOptions(threads: 1)),
              let specialized = try? session.specialize(inputShapes: ModelSummary.inputShapes(graph)) else { return [:] }
        return specialized.specs.compactMapValues { $0.shape?.count }
    }

    /// A dry run of the export before any calibration: the opset `formats` need (per-group scales: 21), and the
    /// conversion of `graph` to it, which throws what a real export of such a model would throw.
    public static func checkExportable(_ graph: Graph, formats: [QuantizationFormat],
                                       granularity: QuantizationConfig.WeightGranularity) throws -> Int {
        var needed = formats.map { requiredOpset(QuantizationParameters(format: $0, granularity: .perTensor, scales: [1], zeroPoints: [0])) }.max() ?? 0
        if case .perGroup = granularity, formats.contains(where: \.isInteger) { needed = 21 }
        guard needed > graph.opset else { return graph.opset }
        var copy = graph
        try raiseOpset(&copy, to: needed)
        return needed
    }
}
