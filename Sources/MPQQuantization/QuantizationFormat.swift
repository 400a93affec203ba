import Foundation
import MPQGraph
import MPQRuntime

/// A number format a tensor can be stored in.
public enum QuantizationFormat: Hashable, Sendable, CustomStringConvertible, Codable {
    /// N-bit integers (2...16). signed: [-2^(N-1), 2^(N-1)-1]; unsigned: [0, 2^N-1].
    /// `narrowRange` drops the lowest code (signed: [-(2^(N-1)-1), 2^(N-1)-1]; unsigned: [1, 2^N-1],
    /// TensorFlow's `narrow_range`), so the grid is symmetric around the symmetric zero point.
    /// symmetric: zero point 0 (signed) or 2^(N-1) (unsigned); asymmetric: zero point from the range.
    case integer(bits: Int, signed: Bool, symmetric: Bool, narrowRange: Bool = false)
    /// IEEE 754 binary16 (ONNX FLOAT16): overflow rounds to infinity.
    case float16
    /// bfloat16 (ONNX BFLOAT16): float32's exponent with 7 fraction bits; overflow rounds to infinity.
    case bfloat16
    /// OCP FP8 E4M3FN (ONNX FLOAT8E4M3FN): no infinities, largest value 448, casts saturate.
    case float8E4M3FN
    /// OCP FP8 E5M2 (ONNX FLOAT8E5M2): largest finite value 57344, casts saturate (ONNX `saturate=1`).
    case float8E5M2
    /// Unquantized (identity).
    case float32

    /// Float formats by every name `init(parsing:)` accepts for them.
    private static let floatFormatsByName: [String: QuantizationFormat] = [
        "fp16": .float16, "float16": .float16,
        "bf16": .bfloat16, "bfloat16": .bfloat16,
        "fp8e4m3": .float8E4M3FN, "fp8e4m3fn": .float8E4M3FN, "float8e4m3fn": .float8E4M3FN,
        "fp8e5m2": .float8E5M2, "float8e5m2": .float8E5M2,
        "fp32": .float32, "float32": .float32,
    ]

    private static let acceptedNames = "intN or uintN for N in 2...16 (int8 and intN are signed symmetric, "
        + "uintN unsigned asymmetric), optionally followed by -sym or -asym and by -narrow (e.g. int4, uint8, "
        + "int8-asym, int8-narrow, int7); fp16, float16, bf16, bfloat16, fp8e4m3, float8e4m3fn, fp8e5m2, "
        + "float8e5m2, fp32, float32"

    /// Parses names used on the command line and in config JSON (case-insensitive):
    /// "int8" (signed symmetric), "uint8" (unsigned asymmetric), "intN"/"uintN" for N in 2...16,
    /// suffixes "-sym"/"-asym" to override symmetry and "-narrow" for the narrow range (in that order or
    /// the other), "int7" (the 7-bit "reduced range" int8 weights that CPUs without VNNI need is simply
    /// int7 stored in int8), "fp16"/"float16", "bf16"/"bfloat16", "fp8e4m3"/"float8e4m3fn",
    /// "fp8e5m2"/"float8e5m2", "fp32"/"float32".
    /// Throws `MPQError.invalidInput` naming the bad string and listing the accepted forms.
    public init(parsing name: String) throws {
        let lowered = name.lowercased()
        if let format = Self.floatFormatsByName[lowered] {
            self = format
            return
        }
        let invalid = MPQError.invalidInput("unknown quantization format '\(name)' (accepted: \(Self.acceptedNames))")
        let parts = lowered.split(separator: "-", omittingEmptySubsequences: false)
        let base = parts[0]
        let signed = !base.hasPrefix("u")
        let digits = base.dropFirst(signed ? 3 : 4)
        guard base.hasPrefix(signed ? "int" : "uint"), !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let bits = Int(digits), (2...16).contains(bits) else { throw invalid }
        var symmetric: Bool?
        var narrowRange = false
        for suffix in parts.dropFirst() {
            switch suffix {
            case "sym" where symmetric == nil: symmetric = true
            case "asym" where symmetric == nil: symmetric = false
            case "narrow" where !narrowRange: narrowRange = true
            default: throw invalid
            }
        }
        self = .integer(bits: bits, signed: signed, symmetric: symmetric ?? signed, narrowRange: narrowRange)
    }

    /// Canonical name; round-trips through `init(parsing:)`. Suffixes appear only where they differ from
    /// the defaults (intN symmetric, uintN asymmetric, full range).
    public var name: String {
        switch self {
        case let .integer(bits, signed, symmetric, narrowRange):
            var name = (signed ? "int" : "uint") + String(bits)
            if symmetric != signed { name += symmetric ? "-sym" : "-asym" }
            if narrowRange { name += "-narrow" }
            return name
        case .float16: return "fp16"
        case .bfloat16: return "bf16"
        case .float8E4M3FN: return "fp8e4m3"
        case .float8E5M2: return "fp8e5m2"
        case .float32: return "fp32"
        }
    }

    /// The format's short name (`name`), e.g. "int8", "fp8e4m3".
    public var description: String { name }

    /// Bits per element: N for integers, 16 for fp16/bf16, 8 for fp8, 32 for float32.
    public var bitWidth: Int {
        switch self {
        case .integer(let bits, _, _, _): return bits
        case .float16, .bfloat16: return 16
        case .float8E4M3FN, .float8E5M2: return 8
        case .float32: return 32
        }
    }

    /// Grid size a range estimator optimises for: qmax - qmin + 1 for integers,
    /// 256 for float formats (whose range only sets the scale).
    public var levels: Int { isInteger ? qmax - qmin + 1 : 256 }

    /// Whether ranges are symmetric around 0 (always for float formats).
    public var isSymmetric: Bool {
        if case .integer(_, _, let symmetric, _) = self { return symmetric }
        return true
    }

    /// Whether the format is an integer grid (as opposed to fp16, bf16, fp8 or fp32).
    public var isInteger: Bool {
        if case .integer = self { return true }
        return false
    }

    /// Smallest integer code (integer formats only; 0 otherwise).
    public var qmin: Int {
        guard case let .integer(bits, signed, _, narrowRange) = self else { return 0 }
        return (signed ? -(1 << (bits - 1)) : 0) + (narrowRange ? 1 : 0)
    }

    /// Largest integer code (integer formats only; 0 otherwise).
    public var qmax: Int {
        guard case let .integer(bits, signed, _, _) = self else { return 0 }
        return signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1
    }

    /// The element type `Tensor.quantized(_:)` stores codes in: the narrowest of int8/int16 (signed) or
    /// uint8/uint16 (unsigned) that holds the range; float16, bfloat16 (bit patterns), uint8 (fp8 bit
    /// patterns), float32.
    public var storageType: DataType {
        switch self {
        case let .integer(bits, signed, _, _):
            return bits <= 8 ? (signed ? .int8 : .uint8) : (signed ? .int16 : .uint16)
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        case .float8E4M3FN, .float8E5M2: return .uint8
        case .float32: return .float32
        }
    }

    /// Largest finite value of a float format (integer formats: nil).
    var largestFiniteValue: Float? {
        switch self {
        case .integer: return nil
        case .float16: return Float(Float16.greatestFiniteMagnitude)
        case .bfloat16: return Float(bitPattern: 0x7F7F_0000)
        case .float8E4M3FN: return 448
        case .float8E5M2: return 57344
        case .float32: return .greatestFiniteMagnitude
        }
    }

    /// Throws for integer widths outside 2...16 (the enum case itself cannot rule them out).
    func validate() throws {
        if case .integer(let bits, _, _, _) = self, !(2...16).contains(bits) {
            throw MPQError.invalidInput("integer quantization formats have 2...16 bits, not \(bits)")
        }
    }

    /// Encoded as its canonical name, e.g. `"int8"` or `"fp8e4m3"`.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }

    /// Decoded from any name `init(parsing:)` accepts.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        do {
            try self.init(parsing: name)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "\(error)")
        }
    }
}

/// How many scales a quantizer has.
public enum QuantizationGranularity: Hashable, Sendable, Codable, CustomStringConvertible {
    case perTensor
    /// One scale per index of `axis` (ONNX QuantizeLinear `axis`; negative counts from the back).
    case perChannel(axis: Int)
    /// Groups of `size` consecutive elements along `axis` (the reduction dim), for each index of the other
    /// dims (ONNX DequantizeLinear `block_size` semantics, opset 21); `size` must divide the dim.
    case perGroup(axis: Int, size: Int)

    /// "per-tensor", "per-channel (axis A)" or "per-group (axis A, size S)".
    public var description: String {
        switch self {
        case .perTensor: return "per-tensor"
        case .perChannel(let axis): return "per-channel (axis \(axis))"
        case let .perGroup(axis, size): return "per-group (axis \(axis), size \(size))"
        }
    }

    /// The shape of the scale and zero point tensors for a tensor of `shape`, as ONNX lays them out:
    /// per-tensor `[]`, per-channel `[C]`, per-group `shape` with dim `axis` divided by `size`.
    /// Throws `MPQError.shapeMismatch` for an axis out of range or a group size that does not divide the dim.
    public func parameterShape(for shape: [Int]) throws -> [Int] {
        switch self {
        case .perTensor:
            return []
        case .perChannel(let axis):
            return [shape[try normalizedAxis(axis, shape)]]
        case let .perGroup(axis, size):
            let a = try normalizedAxis(axis, shape)
            guard size > 0, shape[a] % size == 0 else {
                throw MPQError.shapeMismatch("\(self): group size \(size) does not divide dim \(a) of shape \(shape)")
            }
            var result = shape
            result[a] /= size
            return result
        }
    }

    /// `axis` in 0..<rank (ONNX allows -rank..<rank).
    func normalizedAxis(_ axis: Int, _ shape: [Int]) throws -> Int {
        guard (-shape.count..<shape.count).contains(axis) else {
            throw MPQError.shapeMismatch("\(self): axis \(axis) is out of range for a tensor of shape \(shape)")
        }
        return axis < 0 ? axis + shape.count : axis
    }
}
