import Foundation
import MPQGraph

// Operators that select, join or pad parts of tensors (registered in `shapeOperators`).

/// Concat: joins tensors along an axis.
final class ConcatOperator: Operator {
    private let node: Node
    private let axis: Int

    init(node: Node) throws {
        self.node = node
        guard let axis = try node.int("axis") else { throw unsupported(node, "attribute 'axis' is required") }
        self.axis = axis
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let first = try inputs.required(0, node)
        let shapes = try inputs.indices.map { try inputs.required($0, node).shape }
        guard let firstShape = first.shape, !firstShape.isEmpty, shapes.allSatisfy({ $0 != nil }) else {
            return singleOutput(first.dtype, nil)
        }
        let axis = try existingAxis(self.axis, rank: firstShape.count, node: node)
        var shape = firstShape
        shape[axis] = 0
        for case let part? in shapes {
            guard part.count == shape.count,
                  (0..<shape.count).allSatisfy({ $0 == axis || part[$0] == shape[$0] }) else {
                throw MPQError.shapeMismatch("Concat node '\(node.name)': cannot join \(firstShape) with \(part) on axis \(axis)")
            }
            shape[axis] += part[axis]
        }
        return singleOutput(first.dtype, shape)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let parts = try inputs.indices.map { try inputs.required($0, node) }
        guard let first = parts.first, first.rank > 0 else {
            throw MPQError.shapeMismatch("Concat node '\(node.name)' needs inputs of rank 1 or more")
        }
        return [try Tensor.concatenate(parts, axis: axis)]
    }
}

/// Split: cuts a tensor into parts along an axis, by the `split` sizes
/// (attribute before opset 13, input after), into `num_outputs` parts
/// (opset 18, the last one smaller) or into equal parts.
final class SplitOperator: Operator {
    private let node: Node
    private let axis: Int
    private let sizes: IntegerListArgument
    private let outputCount: Int
    private let evenly: Bool

    init(node: Node, opset: Int) throws {
        self.node = node
        axis = try node.int("axis", default: 0)
        sizes = try IntegerListArgument("split", of: node, opset: opset, inputSince: 13, index: 1)
        outputCount = node.outputs.count
        let parts = opset >= 18 ? try node.int("num_outputs") : nil
        if let parts, parts != outputCount {
            throw unsupported(node, "num_outputs \(parts) differs from the \(outputCount) outputs")
        }
        evenly = parts == nil
    }

    private func partSizes(_ length: Int, arguments: [Tensor?]) throws -> [Int] {
        if let sizes = sizes.value(arguments), !sizes.isEmpty {
            guard sizes.count == outputCount, sizes.allSatisfy({ (0...max(length, 0)).contains($0) }), sizes.reduce(0, +) == length else {
                throw MPQError.shapeMismatch("Split node '\(node.name)': sizes \(sizes) do not split \(length) into \(outputCount) parts")
            }
            return sizes
        }
        if evenly {
            guard length % outputCount == 0 else {
                throw MPQError.shapeMismatch("Split node '\(node.name)': \(length) does not split evenly into \(outputCount) parts")
            }
            return [Int](repeating: length / outputCount, count: outputCount)
        }
        let size = (length + outputCount - 1) / outputCount
        let last = length - size * (outputCount - 1)
        guard last >= 0 else {
            throw MPQError.shapeMismatch("Split node '\(node.name)': \(length) cannot be split into \(outputCount) parts")
        }
        return [Int](repeating: size, count: outputCount - 1) + [last]
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let arguments = inputs.constantArguments() else {
            return [ValueSpec](repeating: ValueSpec(dtype: data.dtype, shape: nil), count: outputCount)
        }
        let axis = try existingAxis(self.axis, rank: shape.count, node: node)
        return try partSizes(shape[axis], arguments: arguments).map { size in
            var part = shape
            part[axis] = size
            return ValueSpec(dtype: data.dtype, shape: part)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let axis = try existingAxis(self.axis, rank: data.rank, node: node)
        let length = data.shape[axis]
        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        var start = 0
        return try partSizes(length, arguments: inputs).map { size in
            var shape = data.shape
            shape[axis] = size
            let part = data.gathered(shape: [outer, size * inner], strides: [length * inner, 1],
                                     offset: start * inner, context: context)
            start += size
            return part.reshaped(shape)
        }
    }
}

/// Slice (opset 10+): starts/ends/axes/steps inputs with ONNX clamping;
/// negative steps walk backwards.
final class SliceOperator: Operator {
    private let node: Node

    init(node: Node, opset: Int) throws {
        self.node = node
        guard opset >= 10 else { throw unsupported(node, "Slice before opset 10 (attributes) is not supported") }
    }

    /// The output shape, the source strides and the element offset of the first output element.
    private func layout(_ shape: [Int], arguments: [Tensor?]) throws -> (shape: [Int], strides: [Int], offset: Int) {
        let starts = try arguments.required(1, node).integers()
        let ends = try arguments.required(2, node).integers()
        let rank = shape.count
        let axes = try normalizedAxes(arguments.optional(3)?.integers() ?? Array(0..<starts.count), rank: rank, node: node)
        let steps = arguments.optional(4)?.integers() ?? [Int](repeating: 1, count: starts.count)
        guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else {
            throw MPQError.invalidInput("Slice node '\(node.name)': starts, ends, axes and steps differ in length")
        }
        let strides = contiguousStrides(shape)
        var output = shape
        var outputStrides = strides
        var offset = 0
        for (((axis, start), end), step) in zip(zip(zip(axes, starts), ends), steps) {
            guard step != 0 else { throw MPQError.invalidInput("Slice node '\(node.name)': step is 0") }
            let dim = shape[axis]
            let first = start < 0 ? start + dim : start
            let last = end < 0 ? end + dim : end
            let count: Int
            let begin: Int
            if step > 0 {
                begin = min(max(first, 0), dim)
                let stop = min(max(last, 0), dim)
                count = stop > begin ? 1 + (stop - begin - 1) / step : 0
            } else {
                begin = min(max(first, 0), dim - 1)
                let stop = min(max(last, -1), dim - 1)
                count = begin > stop ? 1 + Int(UInt(begin - stop - 1) / step.magnitude) : 0
            }
            output[axis] = count
            outputStrides[axis] = count > 1 ? strides[axis] * step : 0
            if count > 0 { offset += begin * strides[axis] }
        }
        return (output, outputStrides, offset)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let arguments = inputs.constantArguments() else {
            return singleOutput(data.dtype, nil)
        }
        return singleOutput(data.dtype, try layout(shape, arguments: arguments).shape)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let view = try layout(data.shape, arguments: inputs)
        return [data.gathered(shape: view.shape, strides: view.strides, offset: view.offset, context: context)]
    }
}

/// Gather: picks entries along an axis by int32/int64 indices (negative ones
/// count from the end), copying each selected slice with memcpy.
final class GatherOperator: Operator {
    private let node: Node
    private let axis: Int

    init(node: Node) throws {
        self.node = node
        axis = try node.int("axis", default: 0)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let indices = try inputs.required(1, node).shape else {
            return singleOutput(data.dtype, nil)
        }
        let axis = try existingAxis(self.axis, rank: shape.count, node: node)
        return singleOutput(data.dtype, Array(shape[..<axis]) + indices + shape[(axis + 1)...])
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let indices = try inputs.required(1, node)
        guard indices.dtype == .int64 || indices.dtype == .int32 else {
            throw MPQError.typeMismatch("Gather node '\(node.name)': indices must be int64 or int32, not \(indices.dtype)")
        }
        let axis = try existingAxis(self.axis, rank: data.rank, node: node)
        let length = data.shape[axis]
        let positions = try indices.integers().map { index in
            let position = index < 0 ? index + length : index
            guard position >= 0 && position < length else {
                throw MPQError.invalidInput("Gather node '\(node.name)': index \(index) is out of range for dimension \(length)")
            }
            return position
        }
        let result = context.allocate(data.dtype, Array(data.shape[..<axis]) + indices.shape + data.shape[(axis + 1)...])
        guard result.count > 0 else { return [result] }
        RowGather(data: data, positions: positions, axis: axis, result: result, context: context).run(for: data.dtype)
        return [result]
    }
}

/// Gather's copy: output row `(outer, index)` is source row `(outer, positions[index])`
/// of the [outer, length, inner] view of the data.
private struct RowGather: ElementMover {
    let data: Tensor
    let positions: [Int]
    let axis: Int
    let result: Tensor
    let context: ExecutionContext

    func move<Word: FixedWidthInteger>(_ word: Word.Type) {
        let length = data.shape[axis]
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        let rowBytes = inner * MemoryLayout<Word>.stride
        let count = positions.count
        let src = data.rawPointer.assumingMemoryBound(to: Word.self)
        let dst = result.rawPointer.assumingMemoryBound(to: Word.self)
        positions.withUnsafeBufferPointer { positions in
            let rows = result.count / inner
            context.parallelFor(rows, minimumChunk: minimumChunk(bytesPerItem: rowBytes)) { range in
                var outer = range.lowerBound / count
                var index = range.lowerBound % count
                for row in range {
                    let from = src + (outer * length + positions[index]) * inner
                    if inner == 1 {
                        dst[row] = from[0]
                    } else {
                        memcpy(dst + row * inner, from, rowBytes)
                    }
                    index += 1
                    if index == count {
                        index = 0
                        outer += 1
                    }
                }
            }
        }
    }
}

/// Pad: constant, reflect, edge and (opset 19) wrap padding; negative pads
/// crop. Pads come from an attribute before opset 11, from inputs after
/// (with optional constant_value and, from opset 18, axes).
final class PadOperator: Operator {
    private enum Mode: String {
        case constant, reflect, edge, wrap
    }

    private let node: Node
    private let opset: Int
    private let mode: Mode
    private let pads: IntegerListArgument
    private let value: Float

    init(node: Node, opset: Int) throws {
        self.node = node
        self.opset = opset
        let name = try node.string("mode", default: "constant")
        guard let mode = Mode(rawValue: name), mode != .wrap || opset >= 19 else {
            throw unsupported(node, "mode '\(name)' is not supported")
        }
        self.mode = mode
        pads = try IntegerListArgument("pads", of: node, opset: opset, inputSince: 11, index: 1)
        value = opset < 11 ? try node.float("value", default: 0) : 0
    }

    /// Pads before and after each axis.
    private func padding(rank: Int, arguments: [Tensor?]) throws -> (begin: [Int], end: [Int]) {
        guard let pads = pads.value(arguments) else {
            throw MPQError.invalidModel("Pad node '\(node.name)' has no pads")
        }
        let axes = opset >= 18 ? arguments.optional(3)?.integers() : nil
        let listed = try normalizedAxes(axes ?? Array(0..<rank), rank: rank, node: node)
        guard pads.count == 2 * listed.count else {
            throw MPQError.invalidInput("Pad node '\(node.name)': \(pads.count) pads do not fit \(listed.count) axes")
        }
        var begin = [Int](repeating: 0, count: rank)
        var end = begin
        for (i, axis) in listed.enumerated() {
            begin[axis] = pads[i]
            end[axis] = pads[i + listed.count]
        }
        return (begin, end)
    }

    private func outputShape(_ shape: [Int], begin: [Int], end: [Int]) throws -> [Int] {
        try shape.indices.map { axis in
            guard let padded = SizeLimits.add(shape[axis], begin[axis]).flatMap({ SizeLimits.add($0, end[axis]) }) else {
                throw MPQError.limitExceeded("Pad node '\(node.name)': pads \(begin[axis]), \(end[axis]) on axis \(axis) overflow a 64-bit size")
            }
            guard padded >= 0 else { throw MPQError.shapeMismatch("Pad node '\(node.name)': pads crop \(shape) below zero") }
            return padded
        }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let arguments = inputs.constantArguments() else {
            return singleOutput(data.dtype, nil)
        }
        let (begin, end) = try padding(rank: shape.count, arguments: arguments)
        return singleOutput(data.dtype, try outputShape(shape, begin: begin, end: end))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let (begin, end) = try padding(rank: data.rank, arguments: inputs)
        let shape = try outputShape(data.shape, begin: begin, end: end)
        let maps = try (0..<data.rank).map { axis in
            try sourceIndices(length: data.shape[axis], begin: begin[axis], end: end[axis], output: shape[axis])
        }
        let result = context.allocate(data.dtype, shape)
        gatherAlongAxes(from: data, maps: maps, fill: fillValue(data.dtype, inputs), into: result, context: context)
        return [result]
    }

    /// The constant to pad with, as a one-element tensor of `dtype`.
    private func fillValue(_ dtype: DataType, _ inputs: [Tensor?]) -> Tensor {
        if opset >= 11, let given = inputs.optional(2), given.count > 0 {
            return given.converted(to: dtype)
        }
        return Tensor(scalar: value).converted(to: dtype)
    }

    /// For each output index along one axis, the source index (-1: the constant).
    /// Negative pads crop first; the positive ones then pad the cropped range.
    private func sourceIndices(length: Int, begin: Int, end: Int, output: Int) throws -> [Int] {
        let first = max(0, -begin)
        let kept = length - first - max(0, -end)
        let before = max(0, begin)
        let after = max(0, end)
        if mode != .constant, before > 0 || after > 0 {
            guard kept > 0, mode != .reflect || (before < kept && after < kept) else {
                throw MPQError.invalidInput("Pad node '\(node.name)': cannot \(mode.rawValue)-pad \(before) and \(after) around \(max(kept, 0)) elements")
            }
        }
        return (0..<output).map { position in
            let i = position - before
            if i >= 0 && i < kept { return first + i }
            switch mode {
            case .constant: return -1
            case .edge: return first + min(max(i, 0), kept - 1)
            case .reflect: return first + (i < 0 ? -i : 2 * (kept - 1) - i)
            case .wrap: return first + ((i % kept) + kept) % kept
            }
        }
    }
}
