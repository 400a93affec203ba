import Foundation
import ONNXProto
import SwiftProtobuf

/// A loaded ONNX model: its graph plus the metadata mpq reports.
public struct Model: Sendable {
    /// The computation graph.
    public var graph: Graph
    /// ONNX IR version (`ModelProto.ir_version`) as read; on export, 0 or less means "derive it from the opset".
    public var irVersion: Int
    /// Name of the tool that wrote the model (`ModelProto.producer_name`).
    public var producer: String
    /// Path the model was read from (external data is resolved beside it).
    public var path: String?

    /// A model around `graph`; `path` is where it was read from, if anywhere.
    public init(graph: Graph, irVersion: Int = 8, producer: String = "mpq", path: String? = nil) {
        self.graph = graph
        self.irVersion = irVersion
        self.producer = producer
        self.path = path
    }

    /// Opsets whose semantics the importer and the runtime implement.
    public static let supportedOpsets = 7...21

    /// Reads an ONNX file. Initializers may be in `raw_data`, typed fields,
    /// `Constant` nodes or external-data files beside the model.
    public init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw MPQError.fileNotFound(path) }
        guard !isDirectory.boolValue else {
            throw MPQError.invalidModel("\(path) is a directory, expected an .onnx file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw MPQError.io("cannot read \(path): \(error.localizedDescription)")
        }
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw MPQError.invalidModel("\(path) is not an ONNX model (protobuf decoding failed: \(error); truncated or wrong file?)")
        }
        guard proto.hasGraph, !proto.graph.node.isEmpty || !proto.graph.output.isEmpty else {
            throw MPQError.invalidModel("\(path) holds no graph (not an ONNX model?)")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try self.init(proto: proto, baseDirectory: directory)
        self.path = path
    }

    /// Converts a decoded `ModelProto`.
    public init(proto: Onnx_ModelProto, baseDirectory: URL? = nil) throws {
        let opsets = proto.opsetImport.filter { $0.domain == "" || $0.domain == "ai.onnx" }
        guard let opset = opsets.map({ Int($0.version) }).max() else {
            throw MPQError.invalidModel("the model imports no ai.onnx opset")
        }
        guard Self.supportedOpsets.contains(opset) else {
            throw MPQError.invalidModel("opset \(opset) is not supported (mpq supports opsets \(Self.supportedOpsets.lowerBound)-\(Self.supportedOpsets.upperBound))")
        }
        let importer = TensorImporter(baseDirectory: baseDirectory)
        let g = proto.graph
        var initializers: [String: Tensor] = [:]
        for tensor in g.initializer {
            guard !tensor.name.isEmpty else { throw MPQError.invalidModel("an initializer has an empty name") }
            guard initializers[tensor.name] == nil else {
                throw MPQError.invalidModel("initializer '\(tensor.name)' is defined twice (each value must have a single writer)")
            }
            initializers[tensor.name] = try importer.tensor(from: tensor)
        }
        // Graph inputs that name initializers (default values) must agree with them in type.
        for input in g.input {
            guard let value = initializers[input.name], case .tensorType(let t)? = input.type.value,
                  t.elemType != 0 else { continue }
            guard t.elemType == Int32(value.dtype.rawValue) else {
                let declared = DataType(rawValue: Int(t.elemType)).map { "\($0)" } ?? "element type \(t.elemType)"
                throw MPQError.invalidModel("graph input '\(input.name)' is declared \(declared), its initializer holds \(value.dtype)")
            }
        }
        var nodes: [Node] = []
        for (index, n) in g.node.enumerated() {
            let name = n.name.isEmpty ? "\(n.opType)_\(index)" : n.name
            var attributes: [String: Attribute] = [:]
            for a in n.attribute {
                if let value = try importer.attribute(from: a, node: name, opType: n.opType) {
                    attributes[a.name] = value
                }
            }
            let node = Node(name: name, opType: n.opType, domain: n.domain, inputs: n.input,
                            outputs: n.output, attributes: attributes)
            if node.opType == "Constant" && (node.domain.isEmpty || node.domain == "ai.onnx"),
               let value = try Self.constantValue(of: node) {
                for output in node.outputs {
                    guard initializers[output] == nil else {
                        throw MPQError.invalidModel("value '\(output)' is written twice: by an initializer or Constant and by Constant node '\(name)' (each value must have a single writer)")
                    }
                    initializers[output] = value
                }
            } else {
                nodes.append(node)
            }
        }
        let initializerNames = Set(initializers.keys)
        let inputs = try g.input.filter { !initializerNames.contains($0.name) }.map(Self.valueInfo)
        let outputs = try g.output.map(Self.valueInfo)
        var graph = Graph(name: g.name, nodes: nodes, inputs: inputs, outputs: outputs,
                          initializers: initializers, opset: opset)
        try graph.validate()
        try graph.sortTopologically()
        self.init(graph: graph, irVersion: Int(proto.irVersion), producer: proto.producerName)
    }

    private static func constantValue(of node: Node) throws -> Tensor? {
        if let tensor = try node.tensor("value") { return tensor }
        switch node.attributes["value_float"] ?? node.attributes["value_floats"]
            ?? node.attributes["value_int"] ?? node.attributes["value_ints"] {
        case .float(let v)?: return Tensor(scalar: v)
        case .floats(let v)?: return Tensor(shape: [v.count], scalars: v)
        case .int(let v)?: return Tensor(scalar: Int64(v))
        case .ints(let v)?: return Tensor(shape: [v.count], scalars: v.map(Int64.init))
        default: break
        }
        if node.attributes["sparse_value"] != nil || node.attributes["value_string"] != nil
            || node.attributes["value_strings"] != nil {
            throw MPQError.unsupportedNodes([UnsupportedNode(
                opType: "Constant", nodeName: node.name, opset: 0,
                reason: "sparse or string constants are not supported")])
        }
        return nil
    }

    private static func valueInfo(_ info: Onnx_ValueInfoProto) throws -> ValueInfo {
        guard case .tensorType(let t)? = info.type.value else {
            throw MPQError.invalidModel("graph value '\(info.name)' is not a tensor (sequences, maps and optionals are not supported)")
        }
        guard let dtype = DataType(rawValue: Int(t.elemType)), dtype != .string else {
            throw MPQError.invalidModel("graph value '\(info.name)' has unsupported element type \(t.elemType)")
        }
        let shape: [ShapeDimension]? = t.hasShape ? t.shape.dim.map { d in
            switch d.value {
            case .dimValue(let v)?: return v >= 0 ? .fixed(Int(v)) : .unknown
            case .dimParam(let p)?: return p.isEmpty ? .unknown : .symbolic(p)
            case nil: return .unknown
            }
        } : nil
        return ValueInfo(name: info.name, dtype: dtype, shape: shape)
    }
}

/// Decodes `TensorProto`s and attributes, resolving external data.
struct TensorImporter {
    var baseDirectory: URL?

    func tensor(from proto: Onnx_TensorProto) throws -> Tensor {
        let name = proto.name
        guard let dtype = DataType(rawValue: Int(proto.dataType)), dtype != .string else {
            throw MPQError.invalidModel("tensor '\(name)' has unsupported element type \(proto.dataType)")
        }
        let shape = proto.dims.map { Int($0) }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw MPQError.invalidModel("tensor '\(name)' has negative dimensions \(shape)")
        }
        let count = try SizeLimits.checkedCount(shape, dtype: dtype, what: "tensor '\(name)'")
        let expectedBytes = count * dtype.byteSize

        if proto.dataLocation == .external {
            return try externalTensor(proto, dtype: dtype, shape: shape, expectedBytes: expectedBytes)
        }
        if !proto.rawData.isEmpty || count == 0 {
            guard proto.rawData.count == expectedBytes else {
                throw MPQError.invalidModel("tensor '\(name)' has \(proto.rawData.count) bytes of raw data, its shape \(shape) needs \(expectedBytes)")
            }
            if count > 0, let storage = TensorStorage(borrowing: proto.rawData) {
                return Tensor(dtype: dtype, shape: shape, storage: storage)
            }
            return proto.rawData.withUnsafeBytes { Tensor(dtype: dtype, shape: shape, bytes: $0) }
        }
        func check(_ n: Int) throws {
            guard n == count else {
                throw MPQError.invalidModel("tensor '\(name)' holds \(n) values, its shape \(shape) needs \(count)")
            }
        }
        switch dtype {
        case .float32:
            try check(proto.floatData.count)
            return Tensor(shape: shape, scalars: proto.floatData)
        case .float64:
            try check(proto.doubleData.count)
            return Tensor(shape: shape, scalars: proto.doubleData)
        case .int64:
            try check(proto.int64Data.count)
            return Tensor(shape: shape, scalars: proto.int64Data)
        case .uint32, .uint64:
            try check(proto.uint64Data.count)
            return Tensor(shape: shape, scalars: proto.uint64Data).converted(to: dtype)
        case .int32, .int16, .int8, .uint8, .uint16, .bool:
            try check(proto.int32Data.count)
            return Tensor(shape: shape, scalars: proto.int32Data).converted(to: dtype)
        case .float16, .bfloat16:
            // Stored as the 16-bit patterns in int32_data.
            try check(proto.int32Data.count)
            let bits = proto.int32Data.map { UInt16(truncatingIfNeeded: $0) }
            return bits.withUnsafeBytes { Tensor(dtype: dtype, shape: shape, bytes: $0) }
        case .string:
            throw MPQError.invalidModel("string tensors are not supported")
        }
    }

    private func externalTensor(_ proto: Onnx_TensorProto, dtype: DataType, shape: [Int],
                                expectedBytes: Int) throws -> Tensor {
        var fields: [String: String] = [:]
        for entry in proto.externalData { fields[entry.key] = entry.value }
        guard let location = fields["location"] else {
            throw MPQError.invalidModel("tensor '\(proto.name)' is external but names no location")
        }
        guard let base = baseDirectory else {
            throw MPQError.invalidModel("tensor '\(proto.name)' is external, but the model was not read from a file")
        }
        let url = try ExternalDataLocation.resolve(location, base: base, tensor: proto.name)
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw MPQError.io("cannot read \(url.path) (external data of tensor '\(proto.name)'): \(error.localizedDescription)")
        }
        let range = try ExternalDataLocation.range(offset: fields["offset"], length: fields["length"],
                                                   expectedBytes: expectedBytes, fileSize: data.count,
                                                   location: location, tensor: proto.name, shape: shape)
        let offset = range.lowerBound, length = range.count
        return data.withUnsafeBytes { bytes in
            Tensor(dtype: dtype, shape: shape, bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)]))
        }
    }

    func attribute(from a: Onnx_AttributeProto, node: String, opType: String) throws -> Attribute? {
        switch a.type {
        case .int: return .int(Int(a.i))
        case .float: return .float(a.f)
        case .string: return .string(String(decoding: a.s, as: UTF8.self))
        case .ints: return .ints(a.ints.map { Int($0) })
        case .floats: return .floats(a.floats)
        case .strings: return .strings(a.strings.map { String(decoding: $0, as: UTF8.self) })
        case .tensor: return .tensor(try tensor(from: a.t))
        case .undefined:
            return nil
        default:
            throw MPQError.unsupportedNodes([UnsupportedNode(
                opType: opType, nodeName: node, opset: 0,
                reason: "attribute '\(a.name)' of type \(a.type) (sub-graphs, sparse tensors) is not supported")])
        }
    }
}
