import Foundation
import MPQGraph

/// Operators of this family, by op type.
let shapeOperators: [String: OperatorFactory] = [
    "Reshape": { node, opset in try ReshapeOperator(node: node, opset: opset) },
    "Flatten": { node, _ in try FlattenOperator(node: node) },
    "Squeeze": { node, opset in try AxesViewOperator(node: node, opset: opset, inserts: false) },
    "Unsqueeze": { node, opset in try AxesViewOperator(node: node, opset: opset, inserts: true) },
    "Shape": { node, opset in try ShapeOperator(node: node, opset: opset) },
    "Size": { _, _ in SizeOperator() },
    "Transpose": { node, _ in try TransposeOperator(node: node) },
    "Expand": { node, _ in ExpandOperator(node: node) },
    "Tile": { node, _ in TileOperator(node: node) },
    "Range": { node, _ in RangeOperator(node: node) },
    "ConstantOfShape": { node, _ in try ConstantOfShapeOperator(node: node) },
    "Concat": { node, _ in try ConcatOperator(node: node) },
    "Split": { node, opset in try SplitOperator(node: node, opset: opset) },
    "Slice": { node, opset in try SliceOperator(node: node, opset: opset) },
    "Gather": { node, _ in try GatherOperator(node: node) },
    "Pad": { node, opset in try PadOperator(node: node, opset: opset) },
]

// MARK: - Shared helpers

extension Array where Element == ValueSpec? {
    /// The inputs from `first` on as constants (omitted ones nil), or nil when
    /// one of them is present but not constant: the argument inputs (shape,
    /// axes, pads, ...) that an output shape depends on.
    func constantArguments(from first: Int = 1) -> [Tensor?]? {
        var values = [Tensor?](repeating: nil, count: count)
        for index in first..<Swift.max(first, count) {
            guard let spec = self[index] else { continue }
            guard let constant = spec.constant else { return nil }
            values[index] = constant
        }
        return values
    }
}

/// An optional integer list (axes, split sizes, pads) that older opsets take
/// as an attribute and newer ones as an input.
struct IntegerListArgument {
    private let attribute: [Int]?
    private let input: Int?

    /// Reads attribute `name` when `opset < inputSince`, else input `index`.
    init(_ name: String, of node: Node, opset: Int, inputSince: Int, index: Int) throws {
        if opset < inputSince {
            attribute = try node.ints(name)
            input = nil
        } else {
            attribute = nil
            input = index
        }
    }

    /// The list, or nil when it is not given.
    func value(_ inputs: [Tensor?]) -> [Int]? {
        if let input { return inputs.optional(input)?.integers() }
        return attribute
    }
}

/// `axis` (negative counts from the end) as an index of an existing axis of a
/// tensor of `rank`; unlike `normalizedAxis`, a scalar has none.
func existingAxis(_ axis: Int, rank: Int, node: Node) throws -> Int {
    guard axis >= -rank && axis < rank else {
        throw MPQError.shapeMismatch("\(node.opType) node '\(node.name)': axis \(axis) is out of range for rank \(rank)")
    }
    return axis < 0 ? axis + rank : axis
}

/// `axes` normalised for `rank`, rejecting duplicates.
func normalizedAxes(_ axes: [Int], rank: Int, node: Node) throws -> [Int] {
    let result = try axes.map { try existingAxis($0, rank: rank, node: node) }
    guard Set(result).count == result.count else {
        throw MPQError.invalidInput("\(node.opType) node '\(node.name)' repeats an axis in \(axes)")
    }
    return result
}

/// The specs of a single output of `dtype` (shape nil when unknown).
func singleOutput(_ dtype: DataType, _ shape: [Int]?) -> [ValueSpec] {
    [ValueSpec(dtype: dtype, shape: shape)]
}

/// Element count of a shape, throwing on negative dimensions.
private func elementCount(_ shape: [Int], node: Node) throws -> Int {
    guard shape.allSatisfy({ $0 >= 0 }) else {
        throw MPQError.invalidInput("\(node.opType) node '\(node.name)': negative dimension in shape \(shape)")
    }
    return shape.reduce(1, *)
}

// MARK: - Views

/// Reshape: a view with a new shape; 0 copies the input dimension (unless
/// `allowzero`), -1 is inferred from the element count.
final class ReshapeOperator: Operator {
    private let node: Node
    private let allowZero: Bool

    init(node: Node, opset: Int) throws {
        self.node = node
        allowZero = opset >= 14 ? try node.int("allowzero", default: 0) != 0 : false
    }

    /// The output shape, nil when it needs the input shape and that is unknown.
    private func outputShape(input: [Int]?, requested: [Int]) throws -> [Int]? {
        var shape = requested
        var inferred: Int?
        for (axis, size) in requested.enumerated() {
            switch size {
            case 0 where !allowZero:
                guard let input else { return nil }
                guard axis < input.count else {
                    throw MPQError.shapeMismatch("Reshape node '\(node.name)': dimension \(axis) of \(requested) copies a dimension the input \(input) does not have")
                }
                shape[axis] = input[axis]
            case -1:
                guard inferred == nil else {
                    throw MPQError.shapeMismatch("Reshape node '\(node.name)': more than one -1 in \(requested)")
                }
                inferred = axis
            case ..<0:
                throw MPQError.shapeMismatch("Reshape node '\(node.name)': invalid dimension \(size) in \(requested)")
            default:
                break
            }
        }
        guard let input else { return inferred == nil ? shape : nil }
        let total = input.reduce(1, *)
        if let inferred {
            let known = SizeLimits.product(shape.enumerated().map { $0.offset == inferred ? 1 : $0.element })
            guard let known, known != 0, total % known == 0 else {
                throw MPQError.shapeMismatch("Reshape node '\(node.name)': cannot reshape \(input) to \(requested)")
            }
            shape[inferred] = total / known
        }
        guard SizeLimits.product(shape) == total else {
            throw MPQError.shapeMismatch("Reshape node '\(node.name)': cannot reshape \(input) to \(requested)")
        }
        return shape
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let requested = try inputs.required(1, node).constant?.integers() else {
            return singleOutput(data.dtype, nil)
        }
        return singleOutput(data.dtype, try outputShape(input: data.shape, requested: requested))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let requested = try inputs.required(1, node).integers()
        guard let shape = try outputShape(input: data.shape, requested: requested) else {
            throw MPQError.shapeMismatch("Reshape node '\(node.name)': cannot reshape \(data.shape) to \(requested)")
        }
        return [data.reshaped(shape)]
    }
}

/// Flatten: a view as a matrix [product of dims before axis, product of the rest].
final class FlattenOperator: Operator {
    private let node: Node
    private let axis: Int

    init(node: Node) throws {
        self.node = node
        axis = try node.int("axis", default: 1)
    }

    private func outputShape(_ input: [Int]) throws -> [Int] {
        let split = axis < 0 ? axis + input.count : axis
        guard split >= 0 && split <= input.count else {
            throw MPQError.shapeMismatch("Flatten node '\(node.name)': axis \(axis) is out of range for rank \(input.count)")
        }
        return [input[..<split].reduce(1, *), input[split...].reduce(1, *)]
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        return singleOutput(data.dtype, try data.shape.map(outputShape))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        return [data.reshaped(try outputShape(data.shape))]
    }
}

/// Squeeze and Unsqueeze: a view of the input's bytes under a shape computed from the input
/// shape and the axes (attribute before opset 13, input 1 since). Squeeze removes the listed
/// size-1 axes (all size-1 axes by default); Unsqueeze inserts size-1 axes at the listed output
/// positions.
final class AxesViewOperator: Operator {
    let node: Node
    /// Unsqueeze (insert axes) rather than Squeeze (remove them).
    let inserts: Bool
    private let axes: IntegerListArgument

    init(node: Node, opset: Int, inserts: Bool) throws {
        self.node = node
        self.inserts = inserts
        axes = try IntegerListArgument("axes", of: node, opset: opset, inputSince: 13, index: 1)
    }

    func outputShape(_ input: [Int], arguments: [Tensor?]) throws -> [Int] {
        let listed = axes.value(arguments)
        if inserts {
            guard let listed else { throw MPQError.invalidModel("Unsqueeze node '\(node.name)' has no axes") }
            let rank = input.count + listed.count
            let inserted = Set(try normalizedAxes(listed, rank: rank, node: node))
            var rest = input.makeIterator()
            return (0..<rank).map { inserted.contains($0) ? 1 : rest.next() ?? 1 }
        }
        guard let listed, !listed.isEmpty else { return input.filter { $0 != 1 } }
        let removed = Set(try normalizedAxes(listed, rank: input.count, node: node))
        for axis in removed where input[axis] != 1 {
            throw MPQError.shapeMismatch("Squeeze node '\(node.name)': axis \(axis) of \(input) is not 1")
        }
        return input.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let arguments = inputs.constantArguments() else {
            return singleOutput(data.dtype, nil)
        }
        return singleOutput(data.dtype, try outputShape(shape, arguments: arguments))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        return [data.reshaped(try outputShape(data.shape, arguments: inputs))]
    }
}

// MARK: - Shape queries

/// Shape: the input's dimensions `start..<end` (opset 15) as int64; a constant
/// whenever the input shape is known.
final class ShapeOperator: Operator {
    private let node: Node
    private let start: Int
    private let end: Int?

    init(node: Node, opset: Int) throws {
        self.node = node
        start = opset >= 15 ? try node.int("start", default: 0) : 0
        end = opset >= 15 ? try node.int("end") : nil
    }

    private func value(_ shape: [Int]) -> Tensor {
        let rank = shape.count
        func clamped(_ index: Int) -> Int { min(max(index < 0 ? index + rank : index, 0), rank) }
        let from = clamped(start)
        let to = max(from, clamped(end ?? rank))
        return Tensor(shape: [to - from], scalars: shape[from..<to].map { Int64($0) })
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        guard let shape = try inputs.required(0, node).shape else { return singleOutput(.int64, nil) }
        return [ValueSpec(value(shape))]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        [value(try inputs.required(0, node).shape)]
    }
}

/// Size: the input's element count as an int64 scalar; a constant whenever
/// the input shape is known.
final class SizeOperator: Operator {
    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        guard let shape = inputs.first??.shape else { return singleOutput(.int64, []) }
        return [ValueSpec(Tensor(scalar: Int64(shape.reduce(1, *))))]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        guard let data = inputs.first ?? nil else { throw MPQError.invalidModel("Size node is missing its input") }
        return [Tensor(scalar: Int64(data.count))]
    }
}

// MARK: - Data movement

/// Transpose: permutes axes (reverses them by default). Copies contiguous runs
/// with memcpy and swaps tiles when the innermost axis moves.
final class TransposeOperator: Operator {
    private let node: Node
    private let permutation: [Int]?

    init(node: Node) throws {
        self.node = node
        permutation = try node.ints("perm")
        if let permutation, permutation.sorted() != Array(0..<permutation.count) {
            throw unsupported(node, "perm \(permutation) is not a permutation")
        }
    }

    private func axes(rank: Int) throws -> [Int] {
        guard let permutation else { return Array((0..<rank).reversed()) }
        guard permutation.count == rank else {
            throw MPQError.shapeMismatch("Transpose node '\(node.name)': perm \(permutation) does not fit rank \(rank)")
        }
        return permutation
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape else { return singleOutput(data.dtype, nil) }
        return singleOutput(data.dtype, try axes(rank: shape.count).map { shape[$0] })
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let order = try axes(rank: data.rank)
        let strides = contiguousStrides(data.shape)
        return [data.gathered(shape: order.map { data.shape[$0] }, strides: order.map { strides[$0] }, context: context)]
    }
}

/// Strides that read `input` broadcast to `shape` (0 on broadcast axes).
private func broadcastStrides(_ input: [Int], to shape: [Int]) -> [Int] {
    let strides = contiguousStrides(input)
    let lead = shape.count - input.count
    return (0..<shape.count).map { axis in
        axis < lead || input[axis - lead] == 1 ? 0 : strides[axis - lead]
    }
}

/// Expand: broadcasts the input to a shape (numpy rules in both directions).
final class ExpandOperator: Operator {
    private let node: Node

    init(node: Node) { self.node = node }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let requested = try inputs.required(1, node).constant else {
            return singleOutput(data.dtype, nil)
        }
        return singleOutput(data.dtype, try broadcastShapes(shape, requested.integers()))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let requested = try inputs.required(1, node).integers()
        _ = try elementCount(requested, node: node)
        let shape = try broadcastShapes(data.shape, requested)
        return [data.gathered(shape: shape, strides: broadcastStrides(data.shape, to: shape), context: context)]
    }
}

/// Tile: repeats the input along each axis.
final class TileOperator: Operator {
    private let node: Node

    init(node: Node) { self.node = node }

    private func repeats(_ tensor: Tensor, rank: Int) throws -> [Int] {
        let repeats = tensor.integers()
        guard repeats.count == rank, repeats.allSatisfy({ $0 >= 0 }) else {
            throw MPQError.invalidInput("Tile node '\(node.name)': repeats \(repeats) do not fit rank \(rank)")
        }
        return repeats
    }

    /// Each dimension times its repeat count, overflow-checked.
    private func outputShape(_ shape: [Int], _ repeats: [Int]) throws -> [Int] {
        let output = zip(shape, repeats).compactMap { SizeLimits.multiply($0, $1) }
        guard output.count == shape.count else {
            throw MPQError.limitExceeded("Tile node '\(node.name)': repeats \(repeats) of shape \(shape) overflow a 64-bit integer")
        }
        return output
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let repeats = try inputs.required(1, node).constant else {
            return singleOutput(data.dtype, nil)
        }
        return singleOutput(data.dtype, try outputShape(shape, try self.repeats(repeats, rank: shape.count)))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let repeats = try self.repeats(try inputs.required(1, node), rank: data.rank)
        let output = try outputShape(data.shape, repeats)
        // Output axis k of size r*d is the row-major pair (repeat r, index d):
        // copy with shape [r0, d0, r1, d1, ...] and strides [0, s0, 0, s1, ...].
        let strides = contiguousStrides(data.shape)
        let result = data.gathered(
            shape: zip(repeats, data.shape).flatMap { [$0, $1] },
            strides: strides.flatMap { [0, $0] }, context: context)
        return [result.reshaped(output)]
    }
}

/// Range: `start, start + delta, ...` up to `limit` (exclusive), counting in
/// float64 and accumulating `delta` in the element type, as ONNX Runtime does.
final class RangeOperator: Operator {
    private let node: Node

    init(node: Node) { self.node = node }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        singleOutput(try inputs.required(0, node).dtype, nil)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let start = try inputs.required(0, node)
        let limit = try inputs.required(1, node)
        let delta = try inputs.required(2, node)
        guard limit.dtype == start.dtype, delta.dtype == start.dtype else {
            throw MPQError.typeMismatch("Range node '\(node.name)': start, limit and delta must share one type")
        }
        guard start.count == 1, limit.count == 1, delta.count == 1 else {
            throw MPQError.shapeMismatch("Range node '\(node.name)': start, limit and delta must be scalars")
        }
        switch start.dtype {
        case .float32: return [try range(Float.self, start, limit, delta, context: context)]
        case .float64: return [try range(Double.self, start, limit, delta, context: context)]
        case .int64: return [try range(Int64.self, start, limit, delta, context: context)]
        case .int32: return [try range(Int32.self, start, limit, delta, context: context)]
        case .int16: return [try range(Int16.self, start, limit, delta, context: context)]
        default: throw MPQError.typeMismatch("Range node '\(node.name)' does not support \(start.dtype)")
        }
    }

    private func range<T: ConvertibleElement & Numeric>(
        _ type: T.Type, _ start: Tensor, _ limit: Tensor, _ delta: Tensor, context: ExecutionContext
    ) throws -> Tensor {
        let first = start.pointer(as: T.self)[0]
        let step = delta.pointer(as: T.self)[0]
        guard step != 0 else { throw MPQError.invalidInput("Range node '\(node.name)': delta is 0") }
        let steps = ceil((limit.pointer(as: T.self)[0].doubleValue - first.doubleValue) / step.doubleValue)
        guard steps.isFinite, steps < Double(Int32.max) else {
            throw MPQError.invalidInput("Range node '\(node.name)': cannot produce \(steps) elements")
        }
        let count = max(0, Int(steps))
        let result = context.allocate(T.dataType, [count])
        let output = result.pointer(as: T.self)
        var value = first
        for i in 0..<count {
            output[i] = value
            value += step
        }
        return result
    }
}

/// ConstantOfShape: a tensor of the given shape filled with the `value`
/// attribute (float32 0 by default).
final class ConstantOfShapeOperator: Operator {
    private let node: Node
    private let value: Tensor

    init(node: Node) throws {
        self.node = node
        value = try node.tensor("value") ?? Tensor(scalar: Float(0))
        guard value.count == 1 else { throw unsupported(node, "value must hold exactly one element") }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let shape = try inputs.required(0, node).constant?.integers()
        return singleOutput(value.dtype, shape)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let shape = try inputs.required(0, node).integers()
        let count = try elementCount(shape, node: node)
        let result = context.allocate(value.dtype, shape)
        guard count > 0 else { return [result] }
        // Write the value once, then keep doubling the filled prefix.
        let size = value.dtype.byteSize
        memcpy(result.rawPointer, value.rawPointer, size)
        var filled = 1
        while filled < count {
            let next = min(filled, count - filled)
            memcpy(result.rawPointer + filled * size, result.rawPointer, next * size)
            filled += next
        }
        return [result]
    }
}
