import Foundation

/// Recycles large tensor buffers by size class.
///
/// A model run frees each value after its last use and the next run repeats
/// the same allocations, so parking freed blocks in free lists (sizes rounded
/// up to 1/8 of their power of two) lets every run after the first reuse
/// memory without page faults, with bounded waste. Left to malloc, the same
/// pattern fragmented glibc's heap: resident memory grew by ~10 MiB per
/// MiniLM run while the bytes in use stayed flat.
public final class BufferPool: @unchecked Sendable {
    /// The pool all tensors use.
    public static let shared = BufferPool()
    /// Blocks below this size go to malloc directly.
    static let minimumPooledBytes = 64 << 10

    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private let lock = NSLock()
    /// Bytes parked in free lists.
    public private(set) var idleBytes = 0

    /// The block size used for a request of `byteCount` bytes.
    static func sizeClass(_ byteCount: Int) -> Int {
        guard byteCount >= minimumPooledBytes else { return byteCount }
        let step = 1 << (Int.bitWidth - byteCount.leadingZeroBitCount - 4)
        return (byteCount + step - 1) / step * step
    }

    func take(_ size: Int) -> UnsafeMutableRawPointer {
        lock.lock()
        if let block = free[size]?.popLast() {
            idleBytes -= size
            lock.unlock()
            return block
        }
        lock.unlock()
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, size) == 0, let raw else {
            fatalError("mpq: out of memory allocating \(size) bytes")
        }
        return raw
    }

    func give(_ pointer: UnsafeMutableRawPointer, size: Int) {
        lock.lock(); defer { lock.unlock() }
        free[size, default: []].append(pointer)
        idleBytes += size
    }

    /// Returns every idle block to the system.
    public func trim() {
        lock.lock(); defer { lock.unlock() }
        for blocks in free.values { blocks.forEach { Foundation.free($0) } }
        free = [:]
        idleBytes = 0
    }
}

/// 64-byte aligned memory owned by one or more `Tensor`s (reshapes share it).
public final class TensorStorage: @unchecked Sendable {
    /// Start of the bytes; 64-byte aligned when the storage allocated them.
    public let pointer: UnsafeMutableRawPointer
    /// Size of the block in bytes.
    public let byteCount: Int
    /// Bytes owned by someone else (e.g. a decoded protobuf), kept alive here.
    private let borrowed: Data?

    /// Storage that uses `data`'s bytes in place when they are 16-byte aligned
    /// (nil otherwise): model weights are not copied a second time at load.
    init?(borrowing data: Data) {
        // Small Data is stored inline and its bytes have no stable address: copy those.
        guard data.count >= 256, let base = data.withUnsafeBytes({ $0.baseAddress }),
              Int(bitPattern: base) % 16 == 0 else { return nil }
        pointer = UnsafeMutableRawPointer(mutating: base)
        byteCount = data.count
        borrowed = data
    }

    package init(byteCount: Int) {
        borrowed = nil
        self.byteCount = max(byteCount, 1)
        pointer = BufferPool.shared.take(BufferPool.sizeClass(self.byteCount))
    }

    deinit {
        guard borrowed == nil else { return }
        let size = BufferPool.sizeClass(byteCount)
        if size >= BufferPool.minimumPooledBytes {
            BufferPool.shared.give(pointer, size: size)
        } else {
            free(pointer)
        }
    }
}

/// A dense, row-major n-dimensional array of one element type.
///
/// Value semantics for shape and type; the bytes live in a shared `TensorStorage`
/// so that reshapes and graph-level aliasing (Identity, Reshape) are free.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    /// Element type.
    public let dtype: DataType
    /// Dimensions, outermost first; `[]` is a scalar.
    public let shape: [Int]
    /// The bytes, possibly shared with other tensors (reshapes, Identity outputs).
    public let storage: TensorStorage
    /// Set when the bytes are in a kernel library's blocked layout rather than
    /// row-major (only between kernels that understand it; see `OpaqueLayout`).
    package let opaqueLayout: OpaqueLayout?

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Size of the elements in bytes (`count × dtype.byteSize`).
    public var byteCount: Int { count * dtype.byteSize }
    /// Start of the element bytes, for kernels and C APIs.
    public var rawPointer: UnsafeMutableRawPointer { storage.pointer }

    /// An uninitialised tensor (kernels fill every element).
    public init(uninitialized dtype: DataType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
        // Sizes from files and options are checked (SizeLimits) before anything is
        // allocated; reaching either failure here is a bug in that checking.
        guard let count = SizeLimits.product(shape), let bytes = SizeLimits.multiply(count, dtype.byteSize) else {
            fatalError("mpq: tensor shape \(shape) of \(dtype) has a negative dimension or a size that overflows (unchecked size: a bug)")
        }
        guard bytes <= SizeLimits.maximumTensorBytes else {
            fatalError("mpq: a tensor of shape \(shape) of \(dtype) needs \(SizeLimits.describe(bytes: bytes)), more than this machine's memory (unchecked size: a bug)")
        }
        self.storage = TensorStorage(byteCount: bytes)
        self.opaqueLayout = nil
    }

    /// A tensor of zeros.
    public init(zeros dtype: DataType, shape: [Int]) {
        self.init(uninitialized: dtype, shape: shape)
        memset(storage.pointer, 0, byteCount)
    }

    /// A tensor holding `scalars` in row-major order; their count must equal the shape's product.
    public init<T: TensorElement>(shape: [Int], scalars: [T]) {
        precondition(shape.reduce(1, *) == scalars.count, "shape \(shape) does not hold \(scalars.count) elements")
        self.init(uninitialized: T.dataType, shape: shape)
        scalars.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// A rank-0 tensor.
    public init<T: TensorElement>(scalar: T) { self.init(shape: [], scalars: [scalar]) }

    /// A tensor copied from raw little-endian bytes.
    public init(dtype: DataType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        self.init(uninitialized: dtype, shape: shape)
        precondition(bytes.count == byteCount)
        if byteCount > 0 { storage.pointer.copyMemory(from: bytes.baseAddress!, byteCount: byteCount) }
    }

    package init(dtype: DataType, shape: [Int], storage: TensorStorage, opaqueLayout: OpaqueLayout? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.opaqueLayout = opaqueLayout
    }

    /// The same bytes seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count && opaqueLayout == nil)
        return Tensor(dtype: dtype, shape: newShape, storage: storage)
    }

    /// Calls `body` with the elements typed as `T`, which must match `dtype`; no copy.
    public func withUnsafeBufferPointer<T: TensorElement, R>(
        as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(T.dataType == dtype, "tensor holds \(dtype), not \(T.dataType)")
        return try body(UnsafeBufferPointer(start: storage.pointer.assumingMemoryBound(to: T.self), count: count))
    }

    /// Calls `body` with writable elements typed as `T`, which must match `dtype`; no copy, and
    /// writes are seen by every tensor sharing the storage.
    public func withUnsafeMutableBufferPointer<T: TensorElement, R>(
        as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(T.dataType == dtype, "tensor holds \(dtype), not \(T.dataType)")
        return try body(UnsafeMutableBufferPointer(start: storage.pointer.assumingMemoryBound(to: T.self), count: count))
    }

    /// Typed pointer to the first element (the caller keeps `self` alive).
    public func pointer<T: TensorElement>(as type: T.Type) -> UnsafeMutablePointer<T> {
        precondition(T.dataType == dtype, "tensor holds \(dtype), not \(T.dataType)")
        return storage.pointer.assumingMemoryBound(to: T.self)
    }

    /// A copy of the elements.
    public func scalars<T: TensorElement>(as type: T.Type) -> [T] {
        withUnsafeBufferPointer(as: T.self) { Array($0) }
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let result = Tensor(uninitialized: dtype, shape: shape)
        if byteCount > 0 { result.storage.pointer.copyMemory(from: storage.pointer, byteCount: byteCount) }
        return result
    }

    /// Elements widened to Int (for integer tensors holding shapes, axes, indices).
    public func integers() -> [Int] {
        switch dtype {
        case .int64: return scalars(as: Int64.self).map { Int($0) }
        case .int32: return scalars(as: Int32.self).map { Int($0) }
        case .int16: return scalars(as: Int16.self).map { Int($0) }
        case .int8: return scalars(as: Int8.self).map { Int($0) }
        case .uint8: return scalars(as: UInt8.self).map { Int($0) }
        case .uint16: return scalars(as: UInt16.self).map { Int($0) }
        case .uint32: return scalars(as: UInt32.self).map { Int($0) }
        case .uint64: return scalars(as: UInt64.self).map { Int(truncatingIfNeeded: $0) }
        case .bool: return scalars(as: Bool.self).map { $0 ? 1 : 0 }
        default:
            // Floats where integers belong (a malformed model): truncated, NaN as 0, saturated at
            // ±2^62 so the value never traps and later range checks name it.
            return converted(to: .float64).scalars(as: Double.self).map {
                $0.isNaN ? 0 : Int(max(-0x1p62, min(0x1p62, $0.rounded(.towardZero))))
            }
        }
    }

    /// Elements as Double (any numeric type), for summaries and tests.
    public func doubles() -> [Double] { converted(to: .float64).scalars(as: Double.self) }

    /// Elements as Float (any numeric type).
    public func floats() -> [Float] { converted(to: .float32).scalars(as: Float.self) }

    /// Type and shape, e.g. `Tensor<float32>[1, 3, 224, 224]`.
    public var description: String { "Tensor<\(dtype)>\(shape)" }
}

/// A non-row-major memory layout chosen by a kernel library (oneDNN's blocked
/// formats). Tensors carrying one flow only between kernels that accept it;
/// the executor converts them to row-major for everyone else.
package protocol OpaqueLayout: AnyObject {}

/// Row-major strides of a shape.
@inlinable
public func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[axis] = running
        running *= shape[axis]
    }
    return strides
}
