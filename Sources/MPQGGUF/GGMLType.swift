/// A ggml tensor type as stored in GGUF tensor infos (`enum ggml_type` in ggml.h).
///
/// Quantized types store a row as blocks of `blockSize` values in `bytesPerBlock` bytes;
/// a row's length (ne0) must be a multiple of the block size.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q8_1 = 9
    case q2_K = 10
    case q3_K = 11
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case q8_K = 15
    case iq4_nl = 20
    case iq4_xs = 23
    case bf16 = 30

    /// Values per block (`ggml_type_traits[type].blck_size`).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl: 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_xs: 256
        }
    }

    /// Bytes per block (`ggml_type_traits[type].type_size`).
    public var bytesPerBlock: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q8_1: 36
        case .q2_K: 84
        case .q3_K: 110
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        case .q8_K: 292
        case .iq4_nl: 18
        case .iq4_xs: 136
        }
    }
}

extension GGMLType {
    /// ggml's lower-case type name (`ggml_type_name`), e.g. "q4_K", used in messages and file names.
    public var name: String {
        switch self {
        case .f32: "f32"
        case .f16: "f16"
        case .bf16: "bf16"
        case .q4_0: "q4_0"
        case .q4_1: "q4_1"
        case .q5_0: "q5_0"
        case .q5_1: "q5_1"
        case .q8_0: "q8_0"
        case .q8_1: "q8_1"
        case .q2_K: "q2_K"
        case .q3_K: "q3_K"
        case .q4_K: "q4_K"
        case .q5_K: "q5_K"
        case .q6_K: "q6_K"
        case .q8_K: "q8_K"
        case .iq4_nl: "iq4_nl"
        case .iq4_xs: "iq4_xs"
        }
    }

    /// The type with this ggml name (case-insensitive), or nil.
    public init?(name: String) {
        guard let match = GGMLType.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
        self = match
    }

    /// True for block-quantised types (anything but F32, F16 and BF16).
    public var isQuantized: Bool { blockSize > 1 }

    /// Whether `GGMLQuants.dequantize` supports this type (all but the intermediate Q8_1 and Q8_K types).
    public var canDequantize: Bool { self != .q8_1 && self != .q8_K }

    /// Whether `GGMLQuants.quantize` supports this type (all but the intermediate Q8_1 and Q8_K types).
    public var canQuantize: Bool { self != .q8_1 && self != .q8_K }

    /// Bytes of a row of `count` values, or nil when `count` is negative, not a multiple of the
    /// block size, or the size overflows `Int` (`ggml_row_size`, with overflow checks).
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }
}
