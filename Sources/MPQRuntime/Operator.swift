import Foundation
import MPQGraph

/// What shape inference knows about a value before it runs.
public struct ValueSpec: Sendable {
    /// Element type.
    public var dtype: DataType
    /// nil when the shape depends on values not known until run time.
    public var shape: [Int]?
    /// The value itself, when it is a constant (initializer or folded).
    public var constant: Tensor?

    /// A spec from its parts.
    public init(dtype: DataType, shape: [Int]?, constant: Tensor? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.constant = constant
    }

    /// The spec of a known constant: its type, shape and value.
    public init(_ tensor: Tensor) {
        self.init(dtype: tensor.dtype, shape: tensor.shape, constant: tensor)
    }
}

/// An executable ONNX operator bound to one node.
///
/// Instances are created once per node (validating attributes up front) and
/// may cache prepared kernels, e.g. oneDNN primitives for a given input shape.
public protocol Operator: AnyObject {
    /// Output types and shapes from input specs (nil for omitted optional inputs).
    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec]
    /// Computes the outputs (nil entries are omitted optional inputs).
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor]
    /// Tells the operator which inputs are constants in this plan (nil where
    /// the input varies), so it can prepare them once (e.g. reorder weights).
    func bindConstants(_ constants: [Tensor?])
    /// True when `run` accepts tensors in a kernel library's opaque layout;
    /// other operators always receive row-major tensors.
    var acceptsOpaqueLayouts: Bool { get }
}

extension Operator {
    /// Default: nothing to prepare.
    public func bindConstants(_ constants: [Tensor?]) {}
    /// Default: row-major inputs only.
    public var acceptsOpaqueLayouts: Bool { false }
}

/// Builds an operator for a node at the model's opset; throws for attribute
/// values the implementation does not support.
public typealias OperatorFactory = @Sendable (_ node: Node, _ opset: Int) throws -> Operator

/// Per-run services for kernels: output buffers and thread count.
public final class ExecutionContext: @unchecked Sendable {
    /// Worker threads kernels may use (at least 1).
    public let threads: Int

    /// A context for `threads` workers (clamped to at least 1).
    public init(threads: Int) {
        self.threads = max(1, threads)
    }

    /// An uninitialised output buffer (the kernel writes every element).
    @inline(__always)
    public func allocate(_ dtype: DataType, _ shape: [Int]) -> Tensor {
        Tensor(uninitialized: dtype, shape: shape)
    }

    /// Runs `body` over `0..<count` split into contiguous chunks on all threads,
    /// when the work is large enough to pay for the hand-off.
    @inline(__always)
    public func parallelFor(_ count: Int, minimumChunk: Int = 32_768, _ body: (Range<Int>) -> Void) {
        let chunks = min(threads, max(1, count / minimumChunk))
        if chunks <= 1 {
            body(0..<count)
            return
        }
        let size = (count + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = chunk * size
            let end = min(count, start + size)
            if start < end { body(start..<end) }
        }
    }
}

/// Throws an attribute error for `node` (used by operator factories).
package func unsupported(_ node: Node, _ message: String) -> MPQError {
    .invalidAttribute(node: node.name, opType: node.opType, message: message)
}

/// Numpy-style broadcast of two shapes.
public func broadcastShapes(_ a: [Int], _ b: [Int]) throws -> [Int] {
    let rank = max(a.count, b.count)
    var result = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        guard da == db || da == 1 || db == 1 else {
            throw MPQError.shapeMismatch("cannot broadcast \(a) with \(b)")
        }
        result[i] = da == 1 ? db : da
    }
    return result
}

/// Normalises a possibly negative axis for a tensor of `rank`.
func normalizedAxis(_ axis: Int, rank: Int, node: Node? = nil) throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0 && a < max(rank, 1) else {
        let place = node.map { " in \($0.opType) node '\($0.name)'" } ?? ""
        throw MPQError.shapeMismatch("axis \(axis) is out of range for rank \(rank)\(place)")
    }
    return a
}

extension Array where Element == ValueSpec? {
    /// The spec at `index`, or an error naming the missing input.
    package func required(_ index: Int, _ node: Node) throws -> ValueSpec {
        guard index < count, let spec = self[index] else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)' is missing input \(index)")
        }
        return spec
    }
}

extension Array where Element == Tensor? {
    /// The tensor at `index`, or an error naming the missing input.
    package func required(_ index: Int, _ node: Node) throws -> Tensor {
        guard index < count, let tensor = self[index] else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)' is missing input \(index)")
        }
        return tensor
    }

    package func optional(_ index: Int) -> Tensor? { index < count ? self[index] : nil }
}
