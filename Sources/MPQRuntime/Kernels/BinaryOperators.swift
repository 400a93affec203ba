import Foundation
import MPQGraph

/// The functions `BinaryOperator` computes.
enum BinaryFunction {
    /// Add, Sub, Mul, Div: both inputs of one numeric type.
    case arithmetic(ArithmeticOperation)
    /// Pow: numeric base, numeric exponent of any type; the output has the base's type.
    case power
    /// Equal (also bool), Less, Greater, LessOrEqual, GreaterOrEqual: to bool.
    case comparison(ComparisonOperation)
    /// And, Or, Xor: bool.
    case logic(LogicOperation)
    /// PRelu: the slope broadcasts to X's shape (unidirectionally).
    case parametricRelu
}

/// Add, Sub, Mul, Div.
enum ArithmeticOperation { case add, subtract, multiply, divide }
/// Equal, Less, Greater, LessOrEqual, GreaterOrEqual.
enum ComparisonOperation { case equal, less, greater, lessOrEqual, greaterOrEqual }
/// And, Or, Xor.
enum LogicOperation { case and, or, xor }

/// An ONNX operator of two inputs with numpy broadcasting.
///
/// Numeric types are computed natively for float32, float64, int64 and int32,
/// and through `numericComputeType` for the others.
final class BinaryOperator: Operator {
    let node: Node
    let function: BinaryFunction

    init(node: Node, function: BinaryFunction) {
        self.node = node
        self.function = function
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let a = try inputs.required(0, node)
        let b = try inputs.required(1, node)
        let dtype = try outputType(a.dtype, b.dtype)
        guard let shapeA = a.shape, let shapeB = b.shape else {
            if case .parametricRelu = function { return [ValueSpec(dtype: dtype, shape: a.shape)] }
            return [ValueSpec(dtype: dtype, shape: nil)]
        }
        return [ValueSpec(dtype: dtype, shape: try outputShape(shapeA, shapeB))]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try inputs.required(0, node)
        let b = try inputs.required(1, node)
        let dtype = try outputType(a.dtype, b.dtype)
        let shape = try outputShape(a.shape, b.shape)
        switch function {
        case .arithmetic(let operation):
            let (x, y) = try widenedOperands(a, b)
            let output = context.allocate(x.dtype, shape)
            switch x.dtype {
            case .float32: try arithmetic(operation, Float.self, x, y, into: output, context: context)
            case .float64: try arithmetic(operation, Double.self, x, y, into: output, context: context)
            case .int64: try arithmetic(operation, Int64.self, x, y, into: output, context: context)
            default: try arithmetic(operation, Int32.self, x, y, into: output, context: context)
            }
            return [output.converted(to: dtype)]
        case .parametricRelu:
            let (x, y) = try widenedOperands(a, b)
            let output = context.allocate(x.dtype, shape)
            switch x.dtype {
            case .float32: broadcast(ParametricRelu<Float>(), x, y, into: output, context: context)
            case .float64: broadcast(ParametricRelu<Double>(), x, y, into: output, context: context)
            case .int64: broadcast(ParametricRelu<Int64>(), x, y, into: output, context: context)
            default: broadcast(ParametricRelu<Int32>(), x, y, into: output, context: context)
            }
            return [output.converted(to: dtype)]
        case .power:
            return [try power(a, b, shape, dtype, context: context)]
        case .comparison(let operation):
            let output = context.allocate(.bool, shape)
            if a.dtype == .bool {
                broadcast(Equality<Bool>(), a, b, into: output, context: context)
                return [output]
            }
            let (x, y) = try widenedOperands(a, b)
            switch x.dtype {
            case .float32: compare(operation, Float.self, x, y, into: output, context: context)
            case .float64: compare(operation, Double.self, x, y, into: output, context: context)
            case .int64: compare(operation, Int64.self, x, y, into: output, context: context)
            default: compare(operation, Int32.self, x, y, into: output, context: context)
            }
            return [output]
        case .logic(let operation):
            let output = context.allocate(.bool, shape)
            switch operation {
            case .and: broadcast(Conjunction(), a, b, into: output, context: context)
            case .or: broadcast(Disjunction(), a, b, into: output, context: context)
            case .xor: broadcast(ExclusiveDisjunction(), a, b, into: output, context: context)
            }
            return [output]
        }
    }

    /// The output type for the input types, or a type error.
    private func outputType(_ a: DataType, _ b: DataType) throws -> DataType {
        switch function {
        case .power:
            guard numericComputeType(a) != nil else { throw unsupportedType(node, a, "base") }
            guard numericComputeType(b) != nil else { throw unsupportedType(node, b, "exponent") }
            return a
        case .logic:
            guard a == .bool else { throw unsupportedType(node, a) }
            guard b == .bool else { throw unsupportedType(node, b) }
            return .bool
        case .arithmetic, .comparison, .parametricRelu:
            guard a == b else {
                throw MPQError.typeMismatch("\(node.opType) node '\(node.name)' has inputs of types \(a) and \(b)")
            }
            if case .comparison(.equal) = function, a == .bool { return .bool }
            guard numericComputeType(a) != nil else { throw unsupportedType(node, a) }
            if case .comparison = function { return .bool }
            return a
        }
    }

    /// The broadcast shape, which for PRelu must be X's shape.
    private func outputShape(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let shape = try broadcastShapes(a, b)
        if case .parametricRelu = function, shape != a {
            throw MPQError.shapeMismatch("PRelu node '\(node.name)': slope \(b) does not broadcast to X \(a)")
        }
        return shape
    }

    /// Both operands (of one type) converted to their numeric compute type.
    private func widenedOperands(_ a: Tensor, _ b: Tensor) throws -> (Tensor, Tensor) {
        guard let type = numericComputeType(a.dtype) else { throw unsupportedType(node, a.dtype) }
        return (widened(a, to: type), widened(b, to: type))
    }

    private func arithmetic<T: NumericElement>(
        _ operation: ArithmeticOperation, _: T.Type,
        _ a: Tensor, _ b: Tensor, into output: Tensor, context: ExecutionContext
    ) throws {
        switch operation {
        case .add: broadcast(Addition<T>(), a, b, into: output, context: context)
        case .subtract: broadcast(Subtraction<T>(), a, b, into: output, context: context)
        case .multiply: broadcast(Multiplication<T>(), a, b, into: output, context: context)
        case .divide:
            if T.isInteger, b.withUnsafeBufferPointer(as: T.self, { $0.contains(.zero) }) {
                throw MPQError.invalidInput("\(node.opType) node '\(node.name)': integer division by zero")
            }
            broadcast(Division<T>(), a, b, into: output, context: context)
        }
    }

    private func compare<T: NumericElement>(
        _ operation: ComparisonOperation, _: T.Type,
        _ a: Tensor, _ b: Tensor, into output: Tensor, context: ExecutionContext
    ) {
        switch operation {
        case .equal: broadcast(Equality<T>(), a, b, into: output, context: context)
        case .less: broadcast(LessThan<T>(), a, b, into: output, context: context)
        case .greater: broadcast(LessThan<T>(), b, a, into: output, context: context)
        case .lessOrEqual: broadcast(LessThanOrEqual<T>(), a, b, into: output, context: context)
        case .greaterOrEqual: broadcast(LessThanOrEqual<T>(), b, a, into: output, context: context)
        }
    }

    /// Pow like ONNX Runtime: float^float with powf (x*x and x*x*x for a scalar
    /// exponent of 2 or 3); any other type pair in double precision, converted
    /// to the base type (integers truncate).
    private func power(
        _ a: Tensor, _ b: Tensor, _ shape: [Int], _ dtype: DataType, context: ExecutionContext
    ) throws -> Tensor {
        guard let baseType = numericComputeType(a.dtype), let exponentType = numericComputeType(b.dtype) else {
            throw unsupportedType(node, a.dtype)
        }
        let base = widened(a, to: baseType)
        let exponent = widened(b, to: exponentType)
        let output: Tensor
        if baseType == .float32 && exponentType == .float32 {
            if exponent.count == 1, base.shape == shape, [2, 3].contains(exponent.pointer(as: Float.self)[0]) {
                output = exponent.pointer(as: Float.self)[0] == 2
                    ? mapElements(base, Square(), context: context) : mapElements(base, Cube(), context: context)
            } else {
                output = context.allocate(.float32, shape)
                broadcast(FloatPower(), base, exponent, into: output, context: context)
            }
        } else {
            output = context.allocate(baseType, shape)
            switch baseType {
            case .float32: try power(Float.self, base, exponent, into: output, context: context)
            case .float64: try power(Double.self, base, exponent, into: output, context: context)
            case .int64: try power(Int64.self, base, exponent, into: output, context: context)
            default: try power(Int32.self, base, exponent, into: output, context: context)
            }
        }
        return output.converted(to: dtype)
    }

    private func power<B: NumericElement>(
        _: B.Type, _ base: Tensor, _ exponent: Tensor, into output: Tensor, context: ExecutionContext
    ) throws {
        switch exponent.dtype {
        case .float32: broadcast(WidePower<B, Float>(), base, exponent, into: output, context: context)
        case .float64: broadcast(WidePower<B, Double>(), base, exponent, into: output, context: context)
        case .int64: broadcast(WidePower<B, Int64>(), base, exponent, into: output, context: context)
        default: broadcast(WidePower<B, Int32>(), base, exponent, into: output, context: context)
        }
    }
}

// MARK: - Variadic

/// The functions `VariadicOperator` computes.
enum VariadicFunction { case minimum, maximum, sum }

/// Min, Max and Sum of one or more inputs with numpy broadcasting, folded left
/// to right like ONNX Runtime (which fixes the rounding of float sums).
final class VariadicOperator: Operator {
    let node: Node
    let function: VariadicFunction

    init(node: Node, function: VariadicFunction) {
        self.node = node
        self.function = function
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let specs = try inputs.indices.map { try inputs.required($0, node) }
        return [ValueSpec(dtype: try outputType(specs.map(\.dtype)), shape: try broadcastShape(of: specs))]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let tensors = try inputs.indices.map { try inputs.required($0, node) }
        let dtype = try outputType(tensors.map(\.dtype))
        guard let type = numericComputeType(dtype) else { throw unsupportedType(node, dtype) }
        guard tensors.count > 1 else { return [tensors[0].copy()] }
        let operands = tensors.map { widened($0, to: type) }
        var result = context.allocate(type, try broadcastShapes(operands[0].shape, operands[1].shape))
        combine(operands[0], operands[1], into: result, context: context)
        for operand in operands.dropFirst(2) {
            let shape = try broadcastShapes(result.shape, operand.shape)
            let target = shape == result.shape ? result : context.allocate(type, shape)
            combine(result, operand, into: target, context: context)
            result = target
        }
        return [result.converted(to: dtype)]
    }

    private func outputType(_ types: [DataType]) throws -> DataType {
        guard let first = types.first else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)' has no inputs")
        }
        guard types.allSatisfy({ $0 == first }) else {
            throw MPQError.typeMismatch("\(node.opType) node '\(node.name)' has inputs of types \(types)")
        }
        guard numericComputeType(first) != nil else { throw unsupportedType(node, first) }
        return first
    }

    private func combine(_ a: Tensor, _ b: Tensor, into output: Tensor, context: ExecutionContext) {
        switch a.dtype {
        case .float32: combine(Float.self, a, b, into: output, context: context)
        case .float64: combine(Double.self, a, b, into: output, context: context)
        case .int64: combine(Int64.self, a, b, into: output, context: context)
        default: combine(Int32.self, a, b, into: output, context: context)
        }
    }

    private func combine<T: NumericElement>(
        _: T.Type, _ a: Tensor, _ b: Tensor, into output: Tensor, context: ExecutionContext
    ) {
        switch function {
        case .minimum: broadcast(Minimum<T>(), a, b, into: output, context: context)
        case .maximum: broadcast(Maximum<T>(), a, b, into: output, context: context)
        case .sum: broadcast(Addition<T>(), a, b, into: output, context: context)
        }
    }
}

// MARK: - Where

/// Where: `condition ? X : Y` with three-way numpy broadcasting; X and Y may
/// have any (equal) type, copied as raw bits.
final class WhereOperator: Operator {
    let node: Node

    init(node: Node) { self.node = node }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let specs = try (0..<3).map { try inputs.required($0, node) }
        try checkTypes(specs.map(\.dtype))
        return [ValueSpec(dtype: specs[1].dtype, shape: try broadcastShape(of: specs))]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let tensors = try (0..<3).map { try inputs.required($0, node) }
        try checkTypes(tensors.map(\.dtype))
        let output = context.allocate(tensors[1].dtype, try broadcastShape(tensors.map(\.shape)))
        switch output.dtype.byteSize {
        case 1: select(UInt8.self, tensors, into: output, context: context)
        case 2: select(UInt16.self, tensors, into: output, context: context)
        case 4: select(UInt32.self, tensors, into: output, context: context)
        default: select(UInt64.self, tensors, into: output, context: context)
        }
        return [output]
    }

    private func checkTypes(_ types: [DataType]) throws {
        guard types[0] == .bool else { throw unsupportedType(node, types[0], "condition") }
        guard types[1] == types[2] else {
            throw MPQError.typeMismatch("Where node '\(node.name)' has X of type \(types[1]) and Y of type \(types[2])")
        }
        guard types[1] != .string else { throw unsupportedType(node, .string) }
    }

    private func select<T>(_: T.Type, _ inputs: [Tensor], into output: Tensor, context: ExecutionContext) {
        let plan = BroadcastPlan(output: output.shape, operands: inputs.map(\.shape))
        let condition = inputs[0].pointer(as: Bool.self)
        let x = inputs[1].rawPointer.assumingMemoryBound(to: T.self)
        let y = inputs[2].rawPointer.assumingMemoryBound(to: T.self)
        let target = output.rawPointer.assumingMemoryBound(to: T.self)
        let strides = plan.innerStrides
        context.parallelFor(plan.count) { range in
            plan.forEachRun(in: range) { offset, operands, length in
                let c = condition + operands[0]
                let u = x + operands[1]
                let v = y + operands[2]
                let z = target + offset
                if strides == SIMD4(1, 1, 1, 0) {
                    for i in 0..<length { z[i] = c[i] ? u[i] : v[i] }
                } else {
                    for i in 0..<length { z[i] = c[i * strides[0]] ? u[i * strides[1]] : v[i * strides[2]] }
                }
            }
        }
    }
}

// MARK: - Kernels

private struct Addition<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.sum(a, b) }
}

private struct Subtraction<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.difference(a, b) }
}

private struct Multiplication<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.product(a, b) }
}

private struct Division<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.quotient(a, b) }
}

private struct Minimum<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.minimum(a, b) }
}

private struct Maximum<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.maximum(a, b) }
}

/// `x > 0 ? x : x * slope`.
private struct ParametricRelu<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ x: T, _ slope: T) -> T { x > .zero ? x : T.product(x, slope) }
}

private struct Equality<T: TensorElement & Equatable>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a == b }
}

private struct LessThan<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a < b }
}

private struct LessThanOrEqual<T: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a <= b }
}

private struct Conjunction: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a && b }
}

private struct Disjunction: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a || b }
}

private struct ExclusiveDisjunction: BinaryKernel {
    @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a != b }
}

private struct Square: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x }
}

private struct Cube: ElementMapping {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x * x }
}

private struct FloatPower: BinaryKernel {
    @inline(__always) func callAsFunction(_ x: Float, _ y: Float) -> Float { Foundation.pow(x, y) }
}

/// C++ `std::pow` of mixed types: computed in double, converted to the base type.
private struct WidePower<Base: NumericElement, Exponent: NumericElement>: BinaryKernel {
    @inline(__always) func callAsFunction(_ x: Base, _ y: Exponent) -> Base {
        Base(doubleValue: Foundation.pow(x.doubleValue, y.doubleValue))
    }
}
