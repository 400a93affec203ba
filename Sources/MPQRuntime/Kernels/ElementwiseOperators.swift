import Foundation
import MPQGraph

/// Operators of this family, by op type.
let elementwiseOperators: [String: OperatorFactory] = [
    "Sqrt": unary(.float(.squareRoot)),
    "Reciprocal": unary(.float(.reciprocal)),
    "Neg": unary(.signed(.negation)),
    "Abs": unary(.signed(.absoluteValue)),
    "Exp": unary(.float(.exponential)),
    "Log": unary(.float(.logarithm)),
    "Relu": unary(.signed(.relu)),
    "LeakyRelu": { node, _ in
        UnaryOperator(node: node, function: .float(.leakyRelu(alpha: try node.float("alpha", default: 0.01))))
    },
    "Sigmoid": unary(.float(.sigmoid)),
    "HardSigmoid": { node, _ in
        UnaryOperator(node: node, function: .float(.hardSigmoid(
            alpha: try node.float("alpha", default: 0.2), beta: try node.float("beta", default: 0.5))))
    },
    "HardSwish": unary(.float(.hardSwish)),
    "Tanh": unary(.float(.hyperbolicTangent)),
    "Erf": unary(.float(.errorFunction)),
    "Gelu": { node, _ in
        switch try node.string("approximate", default: "none") {
        case "none": return UnaryOperator(node: node, function: .float(.gelu(tanhApproximation: false)))
        case "tanh": return UnaryOperator(node: node, function: .float(.gelu(tanhApproximation: true)))
        case let other: throw unsupported(node, "approximate '\(other)' is not supported (only 'none' and 'tanh')")
        }
    },
    "Not": unary(.not),
    "IsNaN": unary(.isNaN),
    "Clip": { node, opset in try ClipOperator(node: node, opset: opset) },
    "Identity": { node, _ in IdentityOperator(node: node) },
    "Dropout": { node, opset in DropoutOperator(node: node, opset: opset) },
    "Cast": { node, _ in try CastOperator(node: node) },
    "CastLike": { node, _ in CastOperator(likeNode: node) },
    "Add": binary(.arithmetic(.add)),
    "Sub": binary(.arithmetic(.subtract)),
    "Mul": binary(.arithmetic(.multiply)),
    "Div": binary(.arithmetic(.divide)),
    "Pow": binary(.power),
    "Equal": binary(.comparison(.equal)),
    "Less": binary(.comparison(.less)),
    "Greater": binary(.comparison(.greater)),
    "LessOrEqual": binary(.comparison(.lessOrEqual)),
    "GreaterOrEqual": binary(.comparison(.greaterOrEqual)),
    "And": binary(.logic(.and)),
    "Or": binary(.logic(.or)),
    "Xor": binary(.logic(.xor)),
    "PRelu": binary(.parametricRelu),
    "Min": variadic(.minimum),
    "Max": variadic(.maximum),
    "Sum": variadic(.sum),
    "Where": { node, _ in WhereOperator(node: node) },
]

private func unary(_ function: UnaryFunction) -> OperatorFactory {
    { node, _ in UnaryOperator(node: node, function: function) }
}

private func binary(_ function: BinaryFunction) -> OperatorFactory {
    { node, _ in BinaryOperator(node: node, function: function) }
}

private func variadic(_ function: VariadicFunction) -> OperatorFactory {
    { node, _ in VariadicOperator(node: node, function: function) }
}

// MARK: - Element types

/// Numeric element types the kernels compute on natively, with ONNX Runtime's
/// arithmetic: IEEE for floats, two's-complement wrap-around and truncating
/// division for integers (never trapping).
protocol NumericElement: ConvertibleElement, Comparable {
    static var zero: Self { get }
    static func sum(_ a: Self, _ b: Self) -> Self
    static func difference(_ a: Self, _ b: Self) -> Self
    static func product(_ a: Self, _ b: Self) -> Self
    static func quotient(_ a: Self, _ b: Self) -> Self
    /// The smaller operand; NaN when either float operand is NaN.
    static func minimum(_ a: Self, _ b: Self) -> Self
    /// The larger operand; NaN when either float operand is NaN.
    static func maximum(_ a: Self, _ b: Self) -> Self
    /// The type's finite extremes (ONNX Runtime's `numeric_limits` lowest and max).
    static var lowest: Self { get }
    static var highest: Self { get }
    var negated: Self { get }
    var absolute: Self { get }
}

extension NumericElement where Self: BinaryFloatingPoint {
    @inline(__always) static func sum(_ a: Self, _ b: Self) -> Self { a + b }
    @inline(__always) static func difference(_ a: Self, _ b: Self) -> Self { a - b }
    @inline(__always) static func product(_ a: Self, _ b: Self) -> Self { a * b }
    @inline(__always) static func quotient(_ a: Self, _ b: Self) -> Self { a / b }
    @inline(__always) static func minimum(_ a: Self, _ b: Self) -> Self { b < a || b.isNaN ? b : a }
    @inline(__always) static func maximum(_ a: Self, _ b: Self) -> Self { b > a || b.isNaN ? b : a }
    static var lowest: Self { -greatestFiniteMagnitude }
    static var highest: Self { greatestFiniteMagnitude }
    @inline(__always) var negated: Self { -self }
    @inline(__always) var absolute: Self { Swift.abs(self) }
}

extension NumericElement where Self: FixedWidthInteger & SignedInteger {
    @inline(__always) static func sum(_ a: Self, _ b: Self) -> Self { a &+ b }
    @inline(__always) static func difference(_ a: Self, _ b: Self) -> Self { a &- b }
    @inline(__always) static func product(_ a: Self, _ b: Self) -> Self { a &* b }
    /// Truncating division; the caller rules out zero divisors, and `min / -1` wraps.
    @inline(__always) static func quotient(_ a: Self, _ b: Self) -> Self { a.dividedReportingOverflow(by: b).partialValue }
    @inline(__always) static func minimum(_ a: Self, _ b: Self) -> Self { Swift.min(a, b) }
    @inline(__always) static func maximum(_ a: Self, _ b: Self) -> Self { Swift.max(a, b) }
    static var lowest: Self { min }
    static var highest: Self { max }
    @inline(__always) var negated: Self { 0 &- self }
    @inline(__always) var absolute: Self { self < 0 ? 0 &- self : self }
}

extension Float: NumericElement {}
extension Double: NumericElement {}
extension Int64: NumericElement {}
extension Int32: NumericElement {}

/// The type numeric kernels compute `dtype` in: float32, float64, int64 and
/// int32 natively; float16 and bfloat16 through float32; the narrower integer
/// types (and uint32) through int64, which wraps back identically; nil for
/// types without a numeric kernel (bool, string, uint64).
func numericComputeType(_ dtype: DataType) -> DataType? {
    switch dtype {
    case .float32, .float64, .int64, .int32: return dtype
    case .float16, .bfloat16: return .float32
    case .int8, .int16, .uint8, .uint16, .uint32: return .int64
    case .bool, .string, .uint64: return nil
    }
}

/// `tensor` converted to its compute type (itself when already native).
func widened(_ tensor: Tensor, to type: DataType) -> Tensor {
    tensor.dtype == type ? tensor : tensor.converted(to: type)
}

/// A type error naming the node, the operand and its type.
func unsupportedType(_ node: Node, _ dtype: DataType, _ role: String = "input") -> MPQError {
    .typeMismatch("\(node.opType) node '\(node.name)' does not support \(role) type \(dtype)")
}

// MARK: - Unary mapping

/// A function applied to every element of a tensor.
protocol ElementMapping {
    associatedtype Input: TensorElement
    associatedtype Output: TensorElement
    func callAsFunction(_ x: Input) -> Output
}

/// `mapping` applied to every element of `input`, in parallel for large tensors.
func mapElements<M: ElementMapping>(_ input: Tensor, _ mapping: M, context: ExecutionContext) -> Tensor {
    let output = context.allocate(M.Output.dataType, input.shape)
    let source = input.pointer(as: M.Input.self)
    let target = output.pointer(as: M.Output.self)
    context.parallelFor(input.count) { range in
        for i in range { target[i] = mapping(source[i]) }
    }
    return output
}

// MARK: - Broadcasting

/// A function of two elements, applied with numpy broadcasting.
protocol BinaryKernel {
    associatedtype Left: TensorElement
    associatedtype Right: TensorElement
    associatedtype Output: TensorElement
    func callAsFunction(_ a: Left, _ b: Right) -> Output
}

/// Numpy broadcasting of up to four operands to one output, planned once per call.
///
/// Output dimensions of size 1 are dropped and neighbouring dimensions merged
/// wherever every operand is contiguous (or broadcast) across both, so the
/// common layouts reduce to one or two dimensions: same shape and scalars to a
/// single run, a row vector added to a matrix to rows of full length. The
/// innermost merged dimension is walked by tight loops in which each operand
/// advances by 1 or stays put (stride 0).
struct BroadcastPlan {
    /// Number of output elements.
    let count: Int
    /// Merged output dimensions, outermost first; never empty.
    private let dimensions: [Int]
    /// Per merged dimension, each operand's element stride (0 where broadcast).
    private let strides: [SIMD4<Int>]

    /// Each operand's stride in the innermost dimension: 1, or 0 when broadcast along it.
    var innerStrides: SIMD4<Int> { strides[strides.count - 1] }

    /// Plans `operands` (at most four shapes, each broadcastable to `output`).
    init(output: [Int], operands: [[Int]]) {
        count = output.reduce(1, *)
        let rank = output.count
        var aligned = [SIMD4<Int>](repeating: .zero, count: rank)
        for (k, shape) in operands.enumerated() {
            let own = contiguousStrides(shape)
            for (i, size) in shape.enumerated() where size != 1 {
                aligned[rank - shape.count + i][k] = own[i]
            }
        }
        var dimensions: [Int] = []
        var strides: [SIMD4<Int>] = []
        for axis in 0..<rank where output[axis] != 1 {
            if let last = dimensions.indices.last, strides[last] == aligned[axis] &* output[axis] {
                dimensions[last] *= output[axis]
                strides[last] = aligned[axis]
            } else {
                dimensions.append(output[axis])
                strides.append(aligned[axis])
            }
        }
        if dimensions.isEmpty {
            dimensions = [1]
            strides = [.zero]
        }
        self.dimensions = dimensions
        self.strides = strides
    }

    /// Calls `body` for each contiguous run of output elements in `range`, with
    /// the run's output offset, the operands' offsets and the run length.
    func forEachRun(in range: Range<Int>, _ body: (_ output: Int, _ operands: SIMD4<Int>, _ length: Int) -> Void) {
        guard !range.isEmpty else { return }
        let outer = dimensions.count - 1
        let inner = dimensions[outer]
        let innerStride = strides[outer]
        var index = [Int](repeating: 0, count: outer)
        var rowOffsets = SIMD4<Int>.zero
        var row = range.lowerBound / inner
        for axis in stride(from: outer - 1, through: 0, by: -1) {
            index[axis] = row % dimensions[axis]
            row /= dimensions[axis]
            rowOffsets &+= strides[axis] &* index[axis]
        }
        var column = range.lowerBound % inner
        var position = range.lowerBound
        while position < range.upperBound {
            let length = Swift.min(inner - column, range.upperBound - position)
            body(position, rowOffsets &+ innerStride &* column, length)
            position += length
            column = 0
            var axis = outer - 1
            while axis >= 0 {
                index[axis] += 1
                rowOffsets &+= strides[axis]
                if index[axis] < dimensions[axis] { break }
                rowOffsets &-= strides[axis] &* dimensions[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

/// Writes `kernel(a, b)` with numpy broadcasting into `output`, whose shape is
/// the broadcast shape; `output` may be `a` itself when they have equal shapes.
func broadcast<K: BinaryKernel>(
    _ kernel: K, _ a: Tensor, _ b: Tensor, into output: Tensor, context: ExecutionContext
) {
    let plan = BroadcastPlan(output: output.shape, operands: [a.shape, b.shape])
    let left = a.pointer(as: K.Left.self)
    let right = b.pointer(as: K.Right.self)
    let target = output.pointer(as: K.Output.self)
    let strides = plan.innerStrides
    context.parallelFor(plan.count) { range in
        plan.forEachRun(in: range) { offset, operands, length in
            let x = left + operands[0]
            let y = right + operands[1]
            let z = target + offset
            if strides[0] == strides[1] {
                for i in 0..<length { z[i] = kernel(x[i], y[i]) }
            } else if strides[1] == 0 {
                let v = y[0]
                for i in 0..<length { z[i] = kernel(x[i], v) }
            } else {
                let u = x[0]
                for i in 0..<length { z[i] = kernel(u, y[i]) }
            }
        }
    }
}

/// The numpy broadcast of `shapes`.
func broadcastShape(_ shapes: [[Int]]) throws -> [Int] {
    try shapes.reduce([]) { try broadcastShapes($0, $1) }
}

/// The numpy broadcast of the specs' shapes, nil when one is unknown.
func broadcastShape(of specs: [ValueSpec]) throws -> [Int]? {
    let shapes = specs.compactMap(\.shape)
    return shapes.count == specs.count ? try broadcastShape(shapes) : nil
}
