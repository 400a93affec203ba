import Foundation
import MPQGraph

/// The elementwise functions `UnaryOperator` computes.
enum UnaryFunction {
    /// Float to float (float16, bfloat16 and float64 are computed in float32).
    case float(FloatFunction)
    /// Any numeric type to itself (integers wrap like ONNX Runtime's).
    case signed(SignedFunction)
    /// Bool to bool.
    case not
    /// Float to bool.
    case isNaN
}

/// Functions of a float (computed in float32).
enum FloatFunction {
    case squareRoot, reciprocal, exponential, logarithm, sigmoid, hyperbolicTangent, errorFunction, hardSwish
    case leakyRelu(alpha: Float)
    case hardSigmoid(alpha: Float, beta: Float)
    case gelu(tanhApproximation: Bool)
}

/// Functions of any signed or unsigned number.
enum SignedFunction {
    case negation, absoluteValue, relu
}

/// An ONNX operator that maps each element of its input to one output element
/// (Sqrt, Relu, Erf, Gelu, Not, IsNaN, ...); the output has the input's shape.
final class UnaryOperator: Operator {
    let node: Node
    let function: UnaryFunction

    init(node: Node, function: UnaryFunction) {
        self.node = node
        self.function = function
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        return [ValueSpec(dtype: try outputType(x.dtype), shape: x.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        let dtype = try outputType(x.dtype)
        switch function {
        case .not:
            return [mapElements(x, LogicalNot(), context: context)]
        case .isNaN:
            return [mapElements(widened(x, to: .float32), NaNTest(), context: context)]
        case .signed(let function):
            guard let type = numericComputeType(dtype) else { throw unsupportedType(node, dtype) }
            let value = widened(x, to: type)
            let result: Tensor
            switch type {
            case .float32: result = apply(function, value, Float.self, context: context)
            case .float64: result = apply(function, value, Double.self, context: context)
            case .int64: result = apply(function, value, Int64.self, context: context)
            default: result = apply(function, value, Int32.self, context: context)
            }
            return [result.converted(to: dtype)]
        case .float(let function):
            let result = apply(function, widened(x, to: .float32), context: context)
            return [result.converted(to: dtype)]
        }
    }

    /// The output type for input type `dtype`, or a type error when the function does not take it.
    private func outputType(_ dtype: DataType) throws -> DataType {
        let accepted: Bool
        switch function {
        case .not: accepted = dtype == .bool
        case .isNaN: accepted = dtype.isFloatingPoint
        case .signed: accepted = numericComputeType(dtype) != nil
        case .float: accepted = dtype.isFloatingPoint
        }
        guard accepted else { throw unsupportedType(node, dtype) }
        if case .isNaN = function { return .bool }
        return dtype
    }

    private func apply<T: NumericElement>(
        _ function: SignedFunction, _ x: Tensor, _: T.Type, context: ExecutionContext
    ) -> Tensor {
        switch function {
        case .negation: return mapElements(x, Negation<T>(), context: context)
        case .absoluteValue: return mapElements(x, AbsoluteValue<T>(), context: context)
        case .relu: return mapElements(x, RectifiedLinear<T>(), context: context)
        }
    }

    private func apply(_ function: FloatFunction, _ x: Tensor, context: ExecutionContext) -> Tensor {
        switch function {
        case .squareRoot: return mapElements(x, SquareRoot(), context: context)
        case .reciprocal: return mapElements(x, Reciprocal(), context: context)
        case .exponential: return mapElements(x, Exponential(), context: context)
        case .logarithm: return mapElements(x, Logarithm(), context: context)
        case .sigmoid: return mapElements(x, Sigmoid(), context: context)
        case .hyperbolicTangent: return mapElements(x, HyperbolicTangent(), context: context)
        case .errorFunction: return mapElements(x, ErrorFunction(), context: context)
        case .hardSwish: return mapElements(x, HardSwish(), context: context)
        case .leakyRelu(let alpha): return mapElements(x, LeakyRelu(alpha: alpha), context: context)
        case .hardSigmoid(let alpha, let beta):
            return mapElements(x, HardSigmoid(alpha: alpha, beta: beta), context: context)
        case .gelu(let tanhApproximation):
            return tanhApproximation
                ? mapElements(x, TanhGelu(), context: context) : mapElements(x, Gelu(), context: context)
        }
    }
}

// MARK: - Element functions

private struct Negation<T: NumericElement>: ElementMapping {
    @inline(__always) func callAsFunction(_ x: T) -> T { x.negated }
}

private struct AbsoluteValue<T: NumericElement>: ElementMapping {
    @inline(__always) func callAsFunction(_ x: T) -> T { x.absolute }
}

private struct RectifiedLinear<T: NumericElement>: ElementMapping {
    @inline(__always) func callAsFunction(_ x: T) -> T { x < .zero ? .zero : x }
}

private struct LogicalNot: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Bool) -> Bool { !x }
}

private struct NaNTest: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Bool { x.isNaN }
}

private struct SquareRoot: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x.squareRoot() }
}

private struct Reciprocal: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / x }
}

private struct Exponential: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { polynomialExp(x) }
}

private struct Logarithm: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.log(x) }
}

private struct Sigmoid: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { rationalSigmoid(x) }
}

private struct HyperbolicTangent: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { rationalTanh(x) }
}

private struct ErrorFunction: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { polynomialErf(x) }
}

private struct LeakyRelu: ElementMapping {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x >= 0 ? x : alpha * x }
}

private struct HardSigmoid: ElementMapping {
    let alpha: Float
    let beta: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { clamped(alpha * x + beta, 0, 1) }
}

/// `x * HardSigmoid(x)` with alpha 1/6 and beta 0.5, as ONNX defines (and ONNX Runtime computes) it.
private struct HardSwish: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float {
        x * clamped((1 / 6 as Float) * x + 0.5, 0, 1)
    }
}

private struct Gelu: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float {
        0.5 * x * (polynomialErf(x * 0.707106781186547524) + 1)
    }
}

private struct TanhGelu: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float {
        // sqrt(2 / pi) * (x + 0.044715 x^3), factored as ONNX Runtime does.
        0.5 * x * (rationalTanh(x * (0.035677408136300125 * x * x + 0.7978845608028654)) + 1)
    }
}

// MARK: - Vectorizable approximations
//
// ONNX Runtime computes Exp, Erf, Tanh and Sigmoid with Eigen's and MLAS's
// polynomial and rational approximations; these use the same published
// coefficients (the rational forms from Eigen, the erf split from N. Juffa's
// faithfully rounded erff) so results agree to an ulp or two. They are
// branch-free and call no libm function, so the loops in `mapElements`
// vectorize (libm's expf and erff would not).

/// `x` limited to `[lower, upper]`; NaN stays NaN.
@inline(__always)
private func clamped(_ x: Float, _ lower: Float, _ upper: Float) -> Float {
    x < lower ? lower : (x > upper ? upper : x)
}

/// tanh as a rational function of degree 13/6, exact to float precision outside [-9, 9].
@inline(__always)
func rationalTanh(_ x: Float) -> Float {
    let v = clamped(x, -9, 9)
    let s = v * v
    var p: Float = -2.76076847742355e-16
    p = p * s + 2.00018790482477e-13
    p = p * s - 8.60467152213735e-11
    p = p * s + 5.12229709037114e-08
    p = p * s + 1.48572235717979e-05
    p = p * s + 6.37261928875436e-04
    p = p * s + 4.89352455891786e-03
    var q: Float = 1.19825839466702e-06
    q = q * s + 1.18534705686654e-04
    q = q * s + 2.26843463243900e-03
    q = q * s + 4.89352518554385e-03
    return p * v / q
}

/// The logistic function 1 / (1 + e^-x) as a rational function, saturating outside [-18, 18].
@inline(__always)
func rationalSigmoid(_ x: Float) -> Float {
    let v = clamped(x, -18, 18)
    let s = v * v
    var p: Float = 4.37031012579801e-11
    p = p * s + 1.15627324459942e-07
    p = p * s + 6.08574864600143e-05
    p = p * s + 8.51377133304701e-03
    p = p * s + 2.48287947061529e-01
    var q: Float = 6.10247389755681e-13
    q = q * s + 5.76102136993427e-09
    q = q * s + 6.29106785017040e-06
    q = q * s + 1.70198817374094e-03
    q = q * s + 1.16817656904453e-01
    q = q * s + 9.93151921023180e-01
    return p * v / q + 0.5
}

/// e^x as e^f * 2^n with x = n ln 2 + f, |f| <= ln 2 / 2, for |x| <= 104:
/// Cody-Waite reduction and a degree-6 polynomial (error about 1 ulp).
@inline(__always)
private func exponentialParts(_ x: Float) -> (scaled: Float, exponent: Int32) {
    // Adding 1.5 * 2^23 rounds x / ln 2 to an integer that sits in the low mantissa bits.
    let shifted = x * 1.44269504088896341 + 12_582_912
    let n = shifted - 12_582_912
    var f = n * -6.93145752e-1 + x
    f = n * -1.42860677e-6 + f
    var e: Float = 1.38319808e-3
    e = e * f + 8.37550033e-3
    e = e * f + 4.16689515e-2
    e = e * f + 1.66664466e-1
    e = e * f + 4.99999851e-1
    e = e * f + 1
    e = e * f + 1
    return (e, Int32(bitPattern: shifted.bitPattern &- 0x4B40_0000))
}

/// 2^n for n in [-126, 127].
@inline(__always)
private func powerOfTwo(_ n: Int32) -> Float {
    Float(bitPattern: UInt32(bitPattern: (n &+ 127) << 23))
}

/// e^x: 0 below -104, infinity above 88.7, NaN for NaN.
@inline(__always)
func polynomialExp(_ x: Float) -> Float {
    let (e, n) = exponentialParts(clamped(x, -104, 89))
    // Two factors keep each power of two normal over the whole range.
    let half = n >> 1
    return e * powerOfTwo(half) * powerOfTwo(n &- half)
}

/// erf: an odd polynomial below |x| = 0.921875, 1 - exp(-poly(|x|)) above
/// (|x| clamped to 3.925, where erf rounds to 1); error about 1 ulp.
@inline(__always)
func polynomialErf(_ x: Float) -> Float {
    let a = Swift.min(Swift.abs(x), 3.925)
    let s = a * a
    var small: Float = -5.99104969e-4
    small = small * s + 4.99339588e-3
    small = small * s - 2.67667342e-2
    small = small * s + 1.12818025e-1
    small = small * s - 3.76124859e-1
    small = small * s + 1.28379151e-1
    small = small * a + a
    var large: Float = 1.72948930e-5
    large = large * a - 3.83208680e-4
    large = large * a + 3.88393435e-3
    large = large * a - 2.42545605e-2
    large = large * a + 1.06777847e-1
    large = large * a + 6.34846687e-1
    large = large * a + 1.28717512e-1
    large = large * a + a
    // large stays below 17 (a <= 3.925), so one power of two suffices.
    let (e, n) = exponentialParts(-large)
    let magnitude = a > 0.921875 ? 1 - e * powerOfTwo(n) : small
    return Float(bitPattern: magnitude.bitPattern | (x.bitPattern & 0x8000_0000))
}

// MARK: - Clip, Identity, Dropout, Cast

/// Clip: every element limited to [min, max]. From opset 11 the bounds are the
/// optional scalar inputs 1 and 2 (omitted = unbounded); before, the `min` and
/// `max` attributes. Like ONNX Runtime, an absent bound is the type's finite
/// extreme (so -inf clips to -FLT_MAX), and min > max yields max.
final class ClipOperator: Operator {
    let node: Node
    /// The attribute bounds before opset 11; nil when the bounds are inputs.
    private let attributeBounds: (lower: Float, upper: Float)?

    init(node: Node, opset: Int) throws {
        self.node = node
        attributeBounds = opset < 11
            ? (try node.float("min", default: -.greatestFiniteMagnitude),
               try node.float("max", default: .greatestFiniteMagnitude))
            : nil
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        guard numericComputeType(x.dtype) != nil else { throw unsupportedType(node, x.dtype) }
        return [ValueSpec(dtype: x.dtype, shape: x.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        guard let type = numericComputeType(x.dtype) else { throw unsupportedType(node, x.dtype) }
        var bounds = [inputs.optional(1), inputs.optional(2)]
        if let attributeBounds {
            bounds = [Tensor(scalar: attributeBounds.lower), Tensor(scalar: attributeBounds.upper)]
        }
        for bound in bounds.compactMap({ $0 }) where bound.count != 1 {
            throw MPQError.shapeMismatch("Clip node '\(node.name)': min and max must be scalars, got shape \(bound.shape)")
        }
        let value = widened(x, to: type)
        let limits = bounds.map { $0.map { widened($0, to: type) } }
        let result: Tensor
        switch type {
        case .float32: result = clip(value, Float.self, limits, context: context)
        case .float64: result = clip(value, Double.self, limits, context: context)
        case .int64: result = clip(value, Int64.self, limits, context: context)
        default: result = clip(value, Int32.self, limits, context: context)
        }
        return [result.converted(to: x.dtype)]
    }

    private func clip<T: NumericElement>(
        _ x: Tensor, _: T.Type, _ limits: [Tensor?], context: ExecutionContext
    ) -> Tensor {
        let lower = limits[0].map { $0.pointer(as: T.self)[0] } ?? T.lowest
        let upper = limits[1].map { $0.pointer(as: T.self)[0] } ?? T.highest
        return mapElements(x, Clamp(lower: lower, upper: upper), context: context)
    }
}

private struct Clamp<T: NumericElement>: ElementMapping {
    let lower: T
    let upper: T
    @inline(__always) func callAsFunction(_ x: T) -> T {
        let raised = x < lower ? lower : x
        return raised > upper ? upper : raised
    }
}

/// Identity: the input itself (no copy; values are never mutated).
final class IdentityOperator: Operator {
    let node: Node

    init(node: Node) { self.node = node }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] { [try inputs.required(0, node)] }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] { [try inputs.required(0, node)] }
}

/// Dropout at inference: output 0 is the input, the optional mask output is all
/// true (all false before opset 12, as ONNX Runtime returns it). Training mode
/// (input 2, opset 12+) is rejected when it is true.
final class DropoutOperator: Operator {
    let node: Node
    private let maskValue: Bool

    init(node: Node, opset: Int) {
        self.node = node
        maskValue = opset >= 12
    }

    private var producesMask: Bool { node.outputs.count > 1 && !node.outputs[1].isEmpty }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        if inputs.count > 2, let trainingMode = inputs[2]?.constant { try checkInference(trainingMode) }
        let output = ValueSpec(dtype: x.dtype, shape: x.shape)
        return producesMask ? [output, ValueSpec(dtype: .bool, shape: x.shape)] : [output]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        if let trainingMode = inputs.optional(2) { try checkInference(trainingMode) }
        guard producesMask else { return [x] }
        let mask = context.allocate(.bool, x.shape)
        memset(mask.rawPointer, maskValue ? 1 : 0, mask.byteCount)
        return [x, mask]
    }

    private func checkInference(_ trainingMode: Tensor) throws {
        if trainingMode.integers().contains(where: { $0 != 0 }) {
            throw unsupported(node, "training_mode = true is not supported (inference only)")
        }
    }
}

/// Cast (to the type of attribute `to`) and CastLike (to the type of input 1),
/// with ONNX Cast semantics (`Tensor.converted(to:)`).
final class CastOperator: Operator {
    let node: Node
    /// The target type for Cast; nil for CastLike.
    private let target: DataType?

    init(node: Node) throws {
        self.node = node
        guard let code = try node.int("to") else { throw unsupported(node, "attribute 'to' is missing") }
        guard let type = DataType(rawValue: code), type != .string else {
            throw unsupported(node, "cast to ONNX type \(code) is not supported (string, complex, float8 and 4-bit types are not implemented)")
        }
        target = type
    }

    init(likeNode node: Node) {
        self.node = node
        target = nil
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        return [ValueSpec(dtype: try target ?? inputs.required(1, node).dtype, shape: x.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node)
        let type = try target ?? inputs.required(1, node).dtype
        guard x.dtype != .string, type != .string else { throw unsupportedType(node, .string) }
        return [x.converted(to: type)]
    }
}
