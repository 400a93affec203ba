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
    // Types mpq stores and copies but cannot (de)quantise; known so that files holding them
    // can still be read, inspected and re-written.
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq3_s = 21, iq2_s = 22
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28
    case iq1_m = 29, tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41, q2_0 = 42

    /// Values per block (`ggml_type_traits[type].blck_size`).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: 32
        case .nvfp4, .q2_0: 64
        case .q1_0: 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_xs, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s,
             .iq1_m, .tq1_0, .tq2_0: 256
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
        case .iq2_xxs: 66
        case .iq2_xs: 74
        case .iq3_xxs: 98
        case .iq1_s: 50
        case .iq3_s: 110
        case .iq2_s: 82
        case .i8: 1
        case .i16: 2
        case .i32: 4
        case .i64, .f64: 8
        case .iq1_m: 56
        case .tq1_0: 54
        case .tq2_0: 66
        case .mxfp4: 17
        case .nvfp4: 36
        case .q1_0: 18
        case .q2_0: 18
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
        case .iq2_xxs: "iq2_xxs"
        case .iq2_xs: "iq2_xs"
        case .iq3_xxs: "iq3_xxs"
        case .iq1_s: "iq1_s"
        case .iq3_s: "iq3_s"
        case .iq2_s: "iq2_s"
        case .i8: "i8"
        case .i16: "i16"
        case .i32: "i32"
        case .i64: "i64"
        case .f64: "f64"
        case .iq1_m: "iq1_m"
        case .tq1_0: "tq1_0"
        case .tq2_0: "tq2_0"
        case .mxfp4: "mxfp4"
        case .nvfp4: "nvfp4"
        case .q1_0: "q1_0"
        case .q2_0: "q2_0"
        }
    }

    /// The type with this ggml name (case-insensitive), or nil.
    public init?(name: String) {
        guard let match = GGMLType.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
        self = match
    }

    /// True for block-quantised types (block size above 1).
    public var isQuantized: Bool { blockSize > 1 }

    /// The types `GGMLQuants` converts to and from float32, bit-exactly as ggml.
    public static let arithmeticTypes: Set<GGMLType> = [
        .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs,
    ]

    /// Whether `GGMLQuants.dequantize` supports this type (see `arithmeticTypes`).
    public var canDequantize: Bool { GGMLType.arithmeticTypes.contains(self) }

    /// Whether `GGMLQuants.quantize` supports this type (see `arithmeticTypes`).
    public var canQuantize: Bool { GGMLType.arithmeticTypes.contains(self) }

    /// Bytes of a row of `count` values, or nil when `count` is negative, not a multiple of the
    /// block size, or the size overflows `Int` (`ggml_row_size`, with overflow checks).
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }
}
