/// Element types of tensors, numbered as ONNX's `TensorProto.DataType`.
public enum DataType: Int, Sendable, CaseIterable, CustomStringConvertible {
    case float32 = 1
    case uint8 = 2
    case int8 = 3
    case uint16 = 4
    case int16 = 5
    case int32 = 6
    case int64 = 7
    case string = 8
    case bool = 9
    case float16 = 10
    case float64 = 11
    case uint32 = 12
    case uint64 = 13
    case bfloat16 = 16

    /// Bytes per element (0 for strings, which tensors here cannot hold).
    public var byteSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64: return 8
        case .string: return 0
        }
    }

    /// numpy's name for the type (`float32`, `int64`, ...).
    public var description: String {
        switch self {
        case .float32: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .string: return "string"
        case .bool: return "bool"
        case .float16: return "float16"
        case .float64: return "float64"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .bfloat16: return "bfloat16"
        }
    }

    /// Whether the type is a floating-point one (float16, bfloat16, float32, float64).
    public var isFloatingPoint: Bool {
        self == .float32 || self == .float16 || self == .float64 || self == .bfloat16
    }
}

/// A Swift scalar type that a `Tensor` can hold.
public protocol TensorElement: Sendable {
    static var dataType: DataType { get }
}

extension Float: TensorElement { public static var dataType: DataType { .float32 } }
extension Double: TensorElement { public static var dataType: DataType { .float64 } }
extension Float16: TensorElement { public static var dataType: DataType { .float16 } }
extension Int64: TensorElement { public static var dataType: DataType { .int64 } }
extension Int32: TensorElement { public static var dataType: DataType { .int32 } }
extension Int16: TensorElement { public static var dataType: DataType { .int16 } }
extension Int8: TensorElement { public static var dataType: DataType { .int8 } }
extension UInt8: TensorElement { public static var dataType: DataType { .uint8 } }
extension UInt16: TensorElement { public static var dataType: DataType { .uint16 } }
extension UInt32: TensorElement { public static var dataType: DataType { .uint32 } }
extension UInt64: TensorElement { public static var dataType: DataType { .uint64 } }
extension Bool: TensorElement { public static var dataType: DataType { .bool } }
