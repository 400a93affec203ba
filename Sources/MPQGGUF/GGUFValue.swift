import Foundation

/// A metadata value type code as stored in GGUF (`enum gguf_type` in gguf.h).
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5
    case float32 = 6, bool = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value of this type, or nil for strings and arrays (variable size).
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }

    /// The smallest number of bytes a value of this type can occupy (strings and arrays: their length field),
    /// used to reject absurd counts before allocating anything.
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }
}

/// A GGUF string: a byte sequence, normally UTF-8.
///
/// The bytes are kept as read, so that re-writing a file reproduces strings that are not valid
/// UTF-8 (some tokenizer vocabularies contain such tokens) byte for byte.
public struct GGUFString: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The raw bytes, without length prefix or terminator.
    public var bytes: [UInt8]

    /// A string with exactly these bytes (which need not be valid UTF-8).
    public init(bytes: [UInt8]) { self.bytes = bytes }
    /// The UTF-8 encoding of `string`.
    public init(_ string: String) { bytes = Array(string.utf8) }
    /// The UTF-8 encoding of a string literal.
    public init(stringLiteral value: String) { self.init(value) }

    /// The bytes decoded as UTF-8 (invalid sequences become U+FFFD).
    public var string: String { String(decoding: bytes, as: UTF8.self) }
    /// The decoded text (for printing).
    public var description: String { string }
}

/// A typed GGUF array. Nested arrays carry their own element type, as in the file format.
public enum GGUFArray: Equatable, Sendable {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16])
    case uint32([UInt32]), int32([Int32]), uint64([UInt64]), int64([Int64])
    case float32([Float]), float64([Double]), bool([Bool])
    case string([GGUFString])
    case array([GGUFArray])

    /// The element type code written before the count.
    public var elementType: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
    }

    /// Number of elements.
    public var count: Int {
        switch self {
        case .uint8(let a): a.count
        case .int8(let a): a.count
        case .uint16(let a): a.count
        case .int16(let a): a.count
        case .uint32(let a): a.count
        case .int32(let a): a.count
        case .uint64(let a): a.count
        case .int64(let a): a.count
        case .float32(let a): a.count
        case .float64(let a): a.count
        case .bool(let a): a.count
        case .string(let a): a.count
        case .array(let a): a.count
        }
    }
}

/// A GGUF metadata value of any of the thirteen GGUF value types.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool)
    case string(GGUFString)
    case array(GGUFArray)

    /// The type code written before the value.
    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
    }

    /// A string value's text, or nil for other types.
    public var stringValue: String? {
        if case .string(let s) = self { return s.string }
        return nil
    }

    /// An integer value of any integer type that fits in `Int`, or nil.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// A floating-point value (float32 or float64), or nil.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: nil
        }
    }
}

/// Ordered GGUF metadata: key/value pairs in file order, with lookup by key.
///
/// Order is significant for byte-identical re-writing, so new keys are appended and
/// replacing a key's value keeps its position.
public struct GGUFMetadata: Equatable, Sendable, Sequence {
    /// The pairs in file order.
    public private(set) var entries: [(key: String, value: GGUFValue)] = []
    private var index: [String: Int] = [:]

    /// Empty metadata.
    public init() {}

    /// Metadata with these pairs in this order; a repeated key keeps its first position and last value.
    public init(_ pairs: [(String, GGUFValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    /// Number of pairs.
    public var count: Int { entries.count }
    /// The keys in file order.
    public var keys: [String] { entries.map(\.key) }

    /// The value for `key`; setting appends a new key or replaces in place; setting nil removes it.
    public subscript(key: String) -> GGUFValue? {
        get { index[key].map { entries[$0].value } }
        set {
            if let i = index[key] {
                if let newValue {
                    entries[i].value = newValue
                } else {
                    entries.remove(at: i)
                    index = [:]
                    for (j, e) in entries.enumerated() { index[e.key] = j }
                }
            } else if let newValue {
                index[key] = entries.count
                entries.append((key, newValue))
            }
        }
    }

    /// Whether `key` is present.
    public func contains(_ key: String) -> Bool { index[key] != nil }

    /// Iterates over the pairs in file order.
    public func makeIterator() -> IndexingIterator<[(key: String, value: GGUFValue)]> { entries.makeIterator() }

    /// Equal when the same keys hold equal values in the same order.
    public static func == (a: GGUFMetadata, b: GGUFMetadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

/// Well-known metadata keys.
public enum GGUFKey {
    /// Alignment of tensor data (uint32, power of two; 32 when absent).
    public static let alignment = "general.alignment"
    /// Model architecture name, e.g. "llama".
    public static let architecture = "general.architecture"
    /// File type (`enum llama_ftype`).
    public static let fileType = "general.file_type"
    /// Quantisation version of the quantised tensors.
    public static let quantizationVersion = "general.quantization_version"
}
