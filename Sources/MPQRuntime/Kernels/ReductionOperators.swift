import Foundation
import MPQGraph

/// Operators of this family, by op type.
let reductionOperators: [String: OperatorFactory] = [
    "ReduceSum": { node, opset in try ReduceOperator(node: node, opset: opset, kind: .sum) },
    "ReduceMean": { node, opset in try ReduceOperator(node: node, opset: opset, kind: .mean) },
    "ReduceMax": { node, opset in try ReduceOperator(node: node, opset: opset, kind: .max) },
]

/// Element types the reductions compute on, with wrapping integer sums as in ONNX Runtime.
protocol ReducibleElement: TensorElement, Comparable, AdditiveArithmetic {
    /// The result of a maximum over no elements.
    static var emptyMaximum: Self { get }
    func accumulated(with other: Self) -> Self
    /// The mean of `count` elements summing to `self` (0 for no elements, as ONNX Runtime gives).
    func averaged(over count: Int) -> Self
}

extension Float: ReducibleElement {
    static var emptyMaximum: Float { -.infinity }
    @inline(__always) func accumulated(with other: Float) -> Float { self + other }
    func averaged(over count: Int) -> Float { count == 0 ? self : self / Float(count) }
}

extension Double: ReducibleElement {
    static var emptyMaximum: Double { -.infinity }
    @inline(__always) func accumulated(with other: Double) -> Double { self + other }
    func averaged(over count: Int) -> Double { count == 0 ? self : self / Double(count) }
}

extension ReducibleElement where Self: FixedWidthInteger {
    static var emptyMaximum: Self { .min }
    @inline(__always) func accumulated(with other: Self) -> Self { self &+ other }
    func averaged(over count: Int) -> Self { count == 0 ? self : self / Self(truncatingIfNeeded: count) }
}

extension Int64: ReducibleElement {}
extension Int32: ReducibleElement {}

/// ReduceSum, ReduceMean and ReduceMax over a set of axes.
///
/// Axes come from an attribute (ReduceSum before opset 13, the others before
/// 18) or from an input, where an empty list reduces everything unless
/// `noop_with_empty_axes` is set. Runs of adjacent reduced (or kept) axes are
/// merged, so each pass is an [outer, reduced, inner] loop: along contiguous
/// rows when inner is 1, else accumulating whole inner rows.
final class ReduceOperator: Operator {
    enum Kind { case sum, mean, max }

    private let node: Node
    private let kind: Kind
    private let keepDims: Bool
    private let noopWithEmptyAxes: Bool
    private let axes: IntegerListArgument

    init(node: Node, opset: Int, kind: Kind) throws {
        self.node = node
        self.kind = kind
        let inputSince = kind == .sum ? 13 : 18
        keepDims = try node.int("keepdims", default: 1) != 0
        noopWithEmptyAxes = opset >= inputSince ? try node.int("noop_with_empty_axes", default: 0) != 0 : false
        axes = try IntegerListArgument("axes", of: node, opset: opset, inputSince: inputSince, index: 1)
    }

    /// The reduced axes, or nil for the no-op of an empty list with `noop_with_empty_axes`.
    private func reducedAxes(rank: Int, arguments: [Tensor?]) throws -> Set<Int>? {
        let listed = axes.value(arguments) ?? []
        if listed.isEmpty { return noopWithEmptyAxes ? nil : Set(0..<rank) }
        return Set(try listed.map { try existingAxis($0, rank: rank, node: node) })
    }

    private func outputShape(_ shape: [Int], axes: Set<Int>) -> [Int] {
        shape.enumerated().compactMap { axis, size in
            axes.contains(axis) ? (keepDims ? 1 : nil) : size
        }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let arguments = inputs.constantArguments() else {
            return singleOutput(data.dtype, nil)
        }
        let axes = try reducedAxes(rank: shape.count, arguments: arguments)
        return singleOutput(data.dtype, axes.map { outputShape(shape, axes: $0) } ?? shape)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        guard let axes = try reducedAxes(rank: data.rank, arguments: inputs) else { return [data] }
        let result = context.allocate(data.dtype, outputShape(data.shape, axes: axes))
        switch data.dtype {
        case .float32: reduce(Float.self, data, axes: axes, into: result, context: context)
        case .float64: reduce(Double.self, data, axes: axes, into: result, context: context)
        case .int64: reduce(Int64.self, data, axes: axes, into: result, context: context)
        case .int32: reduce(Int32.self, data, axes: axes, into: result, context: context)
        default: throw MPQError.typeMismatch("\(node.opType) node '\(node.name)' does not support \(data.dtype)")
        }
        return [result]
    }

    private func reduce<T: ReducibleElement>(
        _ type: T.Type, _ data: Tensor, axes: Set<Int>, into result: Tensor, context: ExecutionContext
    ) {
        var groups: [(size: Int, reduced: Bool)] = []
        for (axis, size) in data.shape.enumerated() where size != 1 {
            let reduced = axes.contains(axis)
            if let last = groups.last, last.reduced == reduced {
                groups[groups.count - 1].size *= size
            } else {
                groups.append((size, reduced))
            }
        }
        let isMax = kind == .max
        var source = data
        if !groups.contains(where: \.reduced), result.count > 0 {
            memcpy(result.rawPointer, data.rawPointer, result.byteCount)
        }
        // Innermost reduced group first; partial results go to pooled buffers.
        while let group = groups.lastIndex(where: \.reduced) {
            let outer = groups[..<group].reduce(1) { $0 * $1.size }
            let length = groups[group].size
            let inner = groups[(group + 1)...].reduce(1) { $0 * $1.size }
            groups.remove(at: group)
            if group > 0, group < groups.count {
                groups[group - 1].size *= groups[group].size
                groups.remove(at: group)
            }
            let target = groups.contains(where: \.reduced) ? context.allocate(T.dataType, [outer * inner]) : result
            reducePass(source.pointer(as: T.self), into: target.pointer(as: T.self), outer: outer, length: length,
                       inner: inner, isMax: isMax, context: context)
            source = target
        }
        if kind == .mean {
            let count = axes.reduce(1) { $0 * data.shape[$1] }
            let output = result.pointer(as: T.self)
            for i in 0..<result.count { output[i] = output[i].averaged(over: count) }
        }
    }
}

/// Block of the inner axis one work item accumulates.
private let innerBlock = 1024

/// Piece of a single long row that one work item reduces.
private let rowPiece = 65_536

/// Reduces [outer, length, inner] (contiguous) to [outer, inner].
private func reducePass<T: ReducibleElement>(
    _ src: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>, outer: Int, length: Int, inner: Int,
    isMax: Bool, context: ExecutionContext
) {
    let elementSize = MemoryLayout<T>.stride
    if inner == 1 {
        if outer == 1 && length > 2 * rowPiece {
            // One long row: partial results of fixed-size pieces, then theirs.
            let pieces = (length + rowPiece - 1) / rowPiece
            var partials = [T](repeating: .zero, count: pieces)
            partials.withUnsafeMutableBufferPointer { partials in
                context.parallelFor(pieces, minimumChunk: 1) { range in
                    for p in range {
                        let start = p * rowPiece
                        partials[p] = reduceRow(src + start, count: min(rowPiece, length - start), isMax: isMax)
                    }
                }
            }
            dst[0] = partials.dropFirst().reduce(partials[0]) { isMax ? max($0, $1) : $0.accumulated(with: $1) }
            return
        }
        context.parallelFor(outer, minimumChunk: minimumChunk(bytesPerItem: length * elementSize)) { range in
            for o in range { dst[o] = reduceRow(src + o * length, count: length, isMax: isMax) }
        }
        return
    }
    let blocks = (inner + innerBlock - 1) / innerBlock
    let itemBytes = length * min(inner, innerBlock) * elementSize
    context.parallelFor(outer * blocks, minimumChunk: minimumChunk(bytesPerItem: itemBytes)) { range in
        for item in range {
            let o = item / blocks
            let start = (item % blocks) * innerBlock
            let end = min(inner, start + innerBlock)
            let output = dst + o * inner
            let base = src + o * length * inner
            guard length > 0 else {
                for i in start..<end { output[i] = isMax ? .emptyMaximum : .zero }
                continue
            }
            for i in start..<end { output[i] = base[i] }
            for r in 1..<length {
                let row = base + r * inner
                if isMax {
                    for i in start..<end where row[i] > output[i] { output[i] = row[i] }
                } else {
                    for i in start..<end { output[i] = output[i].accumulated(with: row[i]) }
                }
            }
        }
    }
}

/// The sum (four interleaved partial sums) or maximum of `count` contiguous elements.
@inline(__always)
private func reduceRow<T: ReducibleElement>(_ row: UnsafePointer<T>, count: Int, isMax: Bool) -> T {
    guard count > 0 else { return isMax ? .emptyMaximum : .zero }
    if isMax {
        var best = row[0]
        for i in 1..<count where row[i] > best { best = row[i] }
        return best
    }
    var s0 = T.zero, s1 = T.zero, s2 = T.zero, s3 = T.zero
    var i = 0
    while i + 4 <= count {
        s0 = s0.accumulated(with: row[i])
        s1 = s1.accumulated(with: row[i + 1])
        s2 = s2.accumulated(with: row[i + 2])
        s3 = s3.accumulated(with: row[i + 3])
        i += 4
    }
    while i < count {
        s0 = s0.accumulated(with: row[i])
        i += 1
    }
    return s0.accumulated(with: s1).accumulated(with: s2.accumulated(with: s3))
}
