import Foundation
import ONNXProto
import SwiftProtobuf

extension Model {
    /// The model as an ONNX `ModelProto` (initializers in `raw_data`).
    public func proto() -> Onnx_ModelProto {
        var model = Onnx_ModelProto()
        model.irVersion = Int64(irVersion > 0 ? irVersion : Self.irVersion(forOpset: graph.opset))
        model.producerName = producer
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Int64(graph.opset)
        model.opsetImport = [opset]
        model.graph = graph.proto()
        return model
    }

    /// Writes the model to an ONNX file (atomically).
    public func write(to path: String) throws {
        let bytes: Data
        do {
            bytes = try proto().serializedBytes()
        } catch {
            throw MPQError.io("cannot encode the model: \(error)")
        }
        try AtomicFile.write(bytes, to: path)
    }

    /// The lowest IR version that carries `opset`, so older runtimes load the file.
    public static func irVersion(forOpset opset: Int) -> Int {
        switch opset {
        case ..<12: return 6
        case 12...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }
}

extension Graph {
    func proto() -> Onnx_GraphProto {
        var g = Onnx_GraphProto()
        g.name = name
        g.node = nodes.map { $0.proto() }
        g.initializer = initializers.keys.sorted().map { initializers[$0]!.proto(name: $0) }
        g.input = inputs.map { $0.proto() }
        g.output = outputs.map { $0.proto() }
        return g
    }
}

extension Node {
    func proto() -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.name = name
        n.opType = opType
        n.domain = domain
        n.input = inputs
        n.output = outputs
        n.attribute = attributes.keys.sorted().map { key in
            var a = Onnx_AttributeProto()
            a.name = key
            switch attributes[key]! {
            case .int(let v): a.type = .int; a.i = Int64(v)
            case .float(let v): a.type = .float; a.f = v
            case .string(let v): a.type = .string; a.s = Data(v.utf8)
            case .ints(let v): a.type = .ints; a.ints = v.map(Int64.init)
            case .floats(let v): a.type = .floats; a.floats = v
            case .strings(let v): a.type = .strings; a.strings = v.map { Data($0.utf8) }
            case .tensor(let v): a.type = .tensor; a.t = v.proto(name: "")
            }
            return a
        }
        return n
    }
}

extension ValueInfo {
    func proto() -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(dtype.rawValue)
        if let shape {
            var s = Onnx_TensorShapeProto()
            s.dim = shape.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                switch d {
                case .fixed(let n): dim.dimValue = Int64(n)
                case .symbolic(let p): dim.dimParam = p
                case .unknown: break
                }
                return dim
            }
            tensor.shape = s
        }
        info.type.tensorType = tensor
        return info
    }
}

extension Tensor {
    /// A `TensorProto` holding the bytes in `raw_data` (little-endian, as ONNX requires).
    public func proto(name: String) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(dtype.rawValue)
        t.dims = shape.map(Int64.init)
        t.rawData = Data(bytes: rawPointer, count: byteCount)
        return t
    }
}
