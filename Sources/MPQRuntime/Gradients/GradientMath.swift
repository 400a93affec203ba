import Foundation
import MPQGraph

/// Tensor arithmetic the vector-Jacobian products share: element-wise maps,
/// broadcasting and its adjoint (summing back to an operand's shape), and
/// scatter-adds through index maps. All on float32 with row-major layouts.
enum GradientMath {
    /// A new float32 tensor with `f` applied to every element of `x`.
    static func map(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
        let result = Tensor(uninitialized: .float32, shape: x.shape)
        let source = x.pointer(as: Float.self), target = result.pointer(as: Float.self)
        for i in 0..<x.count { target[i] = f(source[i]) }
        return result
    }

    /// Element-wise `f(a, b)` of two tensors of equal element count (shape of `a`).
    static func zip(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count)
        let result = Tensor(uninitialized: .float32, shape: a.shape)
        let x = a.pointer(as: Float.self), y = b.pointer(as: Float.self), target = result.pointer(as: Float.self)
        for i in 0..<a.count { target[i] = f(x[i], y[i]) }
        return result
    }

    /// Element-wise `f(a, b, c)` of three tensors of equal element count (shape of `a`).
    static func zip(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count && a.count == c.count)
        let result = Tensor(uninitialized: .float32, shape: a.shape)
        let x = a.pointer(as: Float.self), y = b.pointer(as: Float.self), z = c.pointer(as: Float.self)
        let target = result.pointer(as: Float.self)
        for i in 0..<a.count { target[i] = f(x[i], y[i], z[i]) }
        return result
    }

    /// `a + b` for tensors of equal shape (a new tensor: operands may share storage with live values).
    static func sum(_ a: Tensor, _ b: Tensor) -> Tensor { zip(a, b, +) }

    static func scaled(_ x: Tensor, by factor: Float) -> Tensor { map(x) { $0 * factor } }

    static func zeros(_ shape: [Int]) -> Tensor { Tensor(zeros: .float32, shape: shape) }

    /// `x` broadcast (numpy rules) to `shape`, materialised.
    static func broadcast(_ x: Tensor, to shape: [Int], context: ExecutionContext) -> Tensor {
        if x.shape == shape { return x }
        let padded = [Int](repeating: 1, count: shape.count - x.rank) + x.shape
        let strides = Swift.zip(padded, contiguousStrides(padded)).map { $0.0 == 1 ? 0 : $0.1 }
        return x.gathered(shape: shape, strides: strides, context: context)
    }

    /// The adjoint of broadcasting `shape` to `gradient.shape`: sums `gradient`
    /// over the axes that broadcasting added or stretched.
    static func reduced(_ gradient: Tensor, to shape: [Int]) -> Tensor {
        if gradient.shape == shape { return gradient }
        let rank = gradient.rank
        let padded = [Int](repeating: 1, count: rank - shape.count) + shape
        let targetStrides = Swift.zip(padded, contiguousStrides(padded)).map { $0.0 == 1 ? 0 : $0.1 }
        let result = Tensor(zeros: .float32, shape: shape)
        let count = gradient.count
        guard count > 0 else { return result }
        let source = gradient.pointer(as: Float.self), target = result.pointer(as: Float.self)
        let inner = rank == 0 ? 1 : gradient.shape[rank - 1]
        let innerStride = rank == 0 ? 0 : targetStrides[rank - 1]
        let outerShape = Array(gradient.shape.dropLast())
        let outerStrides = Array(targetStrides.dropLast())
        var index = [Int](repeating: 0, count: outerShape.count)
        var offset = 0
        var position = 0
        while position < count {
            if innerStride == 0 {
                var total: Float = 0
                for j in 0..<inner { total += source[position + j] }
                target[offset] += total
            } else {
                for j in 0..<inner { target[offset + j] += source[position + j] }
            }
            position += inner
            var axis = outerShape.count - 1
            while axis >= 0 {
                index[axis] += 1
                offset += outerStrides[axis]
                if index[axis] < outerShape[axis] { break }
                offset -= outerStrides[axis] * outerShape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    /// A tensor of `shape` whose elements are their own row-major positions
    /// (int64), pushed through a data-movement operator to learn where each
    /// output element came from.
    static func positions(_ shape: [Int], offset: Int = 0) -> Tensor {
        let result = Tensor(uninitialized: .int64, shape: shape)
        let target = result.pointer(as: Int64.self)
        for i in 0..<result.count { target[i] = Int64(offset + i) }
        return result
    }

    /// Adjoint of a data-movement op: a tensor of `shape` where each output
    /// gradient element is added at the position `sources` names (negative:
    /// the element came from no input, e.g. a pad constant).
    static func scatterAdded(_ gradient: Tensor, sources: Tensor, shape: [Int], offset: Int = 0) -> Tensor {
        precondition(gradient.count == sources.count && sources.dtype == .int64)
        let result = Tensor(zeros: .float32, shape: shape)
        let count = result.count
        let g = gradient.pointer(as: Float.self), s = sources.pointer(as: Int64.self), target = result.pointer(as: Float.self)
        for i in 0..<gradient.count {
            let position = Int(s[i]) - offset
            if position >= 0 && position < count { target[position] += g[i] }
        }
        return result
    }

    /// Splits `shape` at `axis` into (outer, length, inner) element counts.
    static func split(_ shape: [Int], axis: Int) -> (outer: Int, length: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }
}
