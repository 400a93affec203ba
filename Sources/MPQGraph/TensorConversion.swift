import Foundation

/// Scalar conversions used by `Tensor.converted(to:)` and the Cast operator,
/// following ONNX Cast: float to integer truncates toward zero, integers wrap,
/// anything to bool is `x != 0`, float16/bfloat16 round to nearest even.
package protocol ConvertibleElement: TensorElement {
    var doubleValue: Double { get }
    var int64Value: Int64 { get }
    init(doubleValue: Double)
    init(int64Value: Int64)
    static var isInteger: Bool { get }
}

package extension ConvertibleElement where Self: BinaryFloatingPoint {
    var doubleValue: Double { Double(self) }
    var int64Value: Int64 { isFinite ? Int64(exactly: rounded(.towardZero)) ?? (self < 0 ? .min : .max) : 0 }
    init(doubleValue: Double) { self.init(doubleValue) }
    init(int64Value: Int64) { self.init(int64Value) }
    static var isInteger: Bool { false }
}

package extension ConvertibleElement where Self: FixedWidthInteger {
    var doubleValue: Double { Double(self) }
    var int64Value: Int64 { Int64(truncatingIfNeeded: self) }
    init(doubleValue: Double) {
        let truncated = doubleValue.isFinite ? doubleValue.rounded(.towardZero) : 0
        if let exact = Int64(exactly: truncated) {
            self.init(truncatingIfNeeded: exact)
        } else {
            self = truncated < 0 ? .min : .max
        }
    }
    init(int64Value: Int64) { self.init(truncatingIfNeeded: int64Value) }
    static var isInteger: Bool { true }
}

extension Float: ConvertibleElement {}
extension Double: ConvertibleElement {}
extension Float16: ConvertibleElement {}
extension Int64: ConvertibleElement {}
extension Int32: ConvertibleElement {}
extension Int16: ConvertibleElement {}
extension Int8: ConvertibleElement {}
extension UInt8: ConvertibleElement {}
extension UInt16: ConvertibleElement {}
extension UInt32: ConvertibleElement {}
extension UInt64: ConvertibleElement {}
extension Bool: ConvertibleElement {
    package var doubleValue: Double { self ? 1 : 0 }
    package var int64Value: Int64 { self ? 1 : 0 }
    package init(doubleValue: Double) { self = doubleValue != 0 }
    package init(int64Value: Int64) { self = int64Value != 0 }
    package static var isInteger: Bool { true }
}

/// bfloat16 bit patterns, held as UInt16 in tensors of type `.bfloat16`.
enum BFloat16 {
    static func bits(from value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let bits = value.bitPattern
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    static func float(from bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
}

private func convertElements<S: ConvertibleElement, D: ConvertibleElement>(
    _ source: UnsafePointer<S>, _ destination: UnsafeMutablePointer<D>, _ count: Int
) {
    if S.isInteger && D.isInteger {
        for i in 0..<count { destination[i] = D(int64Value: source[i].int64Value) }
    } else if S.self == Float.self && D.self == Float16.self {
        let s = UnsafeRawPointer(source).assumingMemoryBound(to: Float.self)
        let d = UnsafeMutableRawPointer(destination).assumingMemoryBound(to: Float16.self)
        for i in 0..<count { d[i] = Float16(s[i]) }
    } else if S.self == Float16.self && D.self == Float.self {
        let s = UnsafeRawPointer(source).assumingMemoryBound(to: Float16.self)
        let d = UnsafeMutableRawPointer(destination).assumingMemoryBound(to: Float.self)
        for i in 0..<count { d[i] = Float(s[i]) }
    } else {
        for i in 0..<count { destination[i] = D(doubleValue: source[i].doubleValue) }
    }
}

private func elementType(_ dtype: DataType) -> (any ConvertibleElement.Type)? {
    switch dtype {
    case .float32: return Float.self
    case .float64: return Double.self
    case .float16: return Float16.self
    case .int64: return Int64.self
    case .int32: return Int32.self
    case .int16: return Int16.self
    case .int8: return Int8.self
    case .uint8: return UInt8.self
    case .uint16: return UInt16.self
    case .uint32: return UInt32.self
    case .uint64: return UInt64.self
    case .bool: return Bool.self
    case .bfloat16, .string: return nil
    }
}

private func convert<S: ConvertibleElement>(
    _ source: UnsafePointer<S>, into destination: UnsafeMutableRawPointer,
    as target: any ConvertibleElement.Type, count: Int
) {
    func open<D: ConvertibleElement>(_ type: D.Type) {
        convertElements(source, destination.assumingMemoryBound(to: D.self), count)
    }
    open(target)
}

extension Tensor {
    /// The elements converted to another type with ONNX Cast semantics.
    public func converted(to target: DataType) -> Tensor {
        if target == dtype { return self }
        precondition(dtype != .string && target != .string, "string tensors are not supported")
        let result = Tensor(uninitialized: target, shape: shape)
        let n = count
        if dtype == .bfloat16 {
            let widened = Tensor(uninitialized: .float32, shape: shape)
            let s = rawPointer.assumingMemoryBound(to: UInt16.self)
            let d = widened.pointer(as: Float.self)
            for i in 0..<n { d[i] = BFloat16.float(from: s[i]) }
            return widened.converted(to: target)
        }
        if target == .bfloat16 {
            let narrow = converted(to: .float32)
            let s = narrow.pointer(as: Float.self)
            let d = result.rawPointer.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { d[i] = BFloat16.bits(from: s[i]) }
            return result
        }
        let sourceType = elementType(dtype)!
        let targetType = elementType(target)!
        func open<S: ConvertibleElement>(_ type: S.Type) {
            convert(rawPointer.assumingMemoryBound(to: S.self), into: result.rawPointer, as: targetType, count: n)
        }
        open(sourceType)
        return result
    }
}
