import Foundation

/// Overflow-checked sizes of tensors and the limits mpq accepts for them.
///
/// Shapes come from files written by others (ONNX dims, .npy headers, Conv
/// pads) and from command-line numbers; their products must be computed with
/// overflow checks and compared with what the machine can hold before
/// anything is allocated, so that a hostile or careless value is an error
/// naming it rather than a trap in a kernel or in the allocator.
public enum SizeLimits {
    /// Largest single tensor, in bytes: the machine's physical memory (a
    /// tensor larger than that cannot be computed without swapping to death).
    public static let maximumTensorBytes: Int = {
        let physical = ProcessInfo.processInfo.physicalMemory
        return physical == 0 || physical > UInt64(Int.max) ? Int.max : Int(physical)
    }()

    /// Largest pad, stride, dilation or kernel size a window op may declare.
    public static let maximumWindowAttribute = 1 << 20

    /// Largest worker-thread count: 4x the cores (more only adds contention; OpenMP
    /// runtimes allocate per-thread state and fail or crash far beyond that).
    public static var maximumThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) * 4 }

    /// `a * b`, or nil on overflow.
    @inline(__always)
    public static func multiply(_ a: Int, _ b: Int) -> Int? {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : product
    }

    /// `a + b`, or nil on overflow.
    @inline(__always)
    public static func add(_ a: Int, _ b: Int) -> Int? {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : sum
    }

    /// Product of `values`, or nil on overflow or a negative factor.
    public static func product<S: Sequence>(_ values: S) -> Int? where S.Element == Int {
        var result = 1
        for v in values {
            guard v >= 0, let next = multiply(result, v) else { return nil }
            result = next
        }
        return result
    }

    /// Number of elements of `shape`; throws naming `what` for negative dims,
    /// overflow or more bytes (of `dtype`) than `maximumTensorBytes`.
    @discardableResult
    public static func checkedCount(_ shape: [Int], dtype: DataType, what: @autoclosure () -> String) throws -> Int {
        if let negative = shape.first(where: { $0 < 0 }) {
            throw MPQError.shapeMismatch("\(what()) has a negative dimension \(negative) in shape \(shape)")
        }
        guard let count = product(shape), let bytes = multiply(count, max(dtype.byteSize, 1)) else {
            throw MPQError.limitExceeded("\(what()) has shape \(shape), whose size overflows a 64-bit integer")
        }
        guard bytes <= maximumTensorBytes else {
            throw MPQError.limitExceeded("\(what()) has shape \(shape) of \(dtype): \(describe(bytes: bytes)), more than this machine's memory (\(describe(bytes: maximumTensorBytes)))")
        }
        return count
    }

    /// Bytes in human units.
    public static func describe(bytes: Int) -> String {
        let value = Double(bytes)
        if value >= 1_099_511_627_776 { return String(format: "%.1f TiB", value / 1_099_511_627_776) }
        if value >= 1_073_741_824 { return String(format: "%.2f GiB", value / 1_073_741_824) }
        if value >= 1_048_576 { return String(format: "%.2f MiB", value / 1_048_576) }
        return "\(bytes) bytes"
    }
}
