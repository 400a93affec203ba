import Foundation
import MPQGraph

/// Vector-Jacobian products of element-wise operators. Binary and variadic
/// operators broadcast their operands, so each operand's gradient is summed
/// back over the axes broadcasting stretched (`GradientMath.reduced`).
let elementwiseGradients: [String: VectorJacobianProduct] = [
    "Identity": passThrough(),
    "Dropout": passThrough(),
    "Cast": passThrough(),
    "CastLike": passThrough(),
    "Neg": unary(.nothing) { _ in { _ in -1 } },
    "Sqrt": unary(.outputs) { _ in { y in 0.5 / y } },
    "Reciprocal": unary(.outputs) { _ in { y in -y * y } },
    "Abs": unary(.allInputs) { _ in { x in x > 0 ? 1 : (x < 0 ? -1 : 0) } },
    "Exp": unary(.outputs) { _ in { y in y } },
    "Log": unary(.allInputs) { _ in { x in 1 / x } },
    "Relu": unary(.allInputs) { _ in { x in x > 0 ? 1 : 0 } },
    "LeakyRelu": unary(.allInputs) { node in
        let alpha = try node.float("alpha", default: 0.01)
        return { x in x > 0 ? 1 : alpha }
    },
    "Sigmoid": unary(.outputs) { _ in { y in y * (1 - y) } },
    "HardSigmoid": unary(.allInputs) { node in
        let alpha = try node.float("alpha", default: 0.2), beta = try node.float("beta", default: 0.5)
        return { x in
            let z = alpha * x + beta
            return z > 0 && z < 1 ? alpha : 0
        }
    },
    "HardSwish": unary(.allInputs) { _ in
        { x in x <= -3 ? 0 : (x >= 3 ? 1 : (2 * x + 3) / 6) }
    },
    "Tanh": unary(.outputs) { _ in { y in 1 - y * y } },
    "Erf": unary(.allInputs) { _ in { x in 2 / Float.pi.squareRoot() * exp(-x * x) } },
    "Gelu": unary(.allInputs) { node in
        if try node.string("approximate", default: "none") == "tanh" {
            let c = (2 / Float.pi).squareRoot()
            return { x in
                let u = c * (x + 0.044715 * x * x * x)
                let t = tanh(u)
                return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
            }
        }
        return { x in 0.5 * (1 + erf(x / Float(2).squareRoot())) + x * exp(-0.5 * x * x) / (2 * Float.pi).squareRoot() }
    },
    "Clip": VectorJacobianProduct(firstInputs: 1, saved: .allInputs) { arguments in
        let x = try arguments.input(0)
        let (low, high) = try clipBounds(arguments)
        let mask = GradientMath.map(x) { $0 >= low && $0 <= high ? 1 : 0 }
        return [GradientMath.zip(try arguments.outputGradient(), mask, *)]
    },
    "Add": binary(.nothing) { _, dy, _, _ in (dy, dy) },
    "Sub": binary(.nothing) { _, dy, _, _ in (dy, GradientMath.map(dy) { -$0 }) },
    "Mul": binary(.allInputs) { _, dy, a, b in (GradientMath.zip(dy, b!, *), GradientMath.zip(dy, a!, *)) },
    "Div": binary(.allInputs) { _, dy, a, b in
        (GradientMath.zip(dy, b!, /), GradientMath.zip(dy, a!, b!) { g, x, y in -g * x / (y * y) })
    },
    "Pow": binary(.allInputs) { _, dy, a, b in
        (GradientMath.zip(dy, a!, b!) { g, x, e in e == 0 ? 0 : g * e * pow(x, e - 1) },
         GradientMath.zip(dy, a!, b!) { g, x, e in x > 0 ? g * pow(x, e) * log(x) : 0 })
    },
    "PRelu": binary(.allInputs) { _, dy, x, slope in
        (GradientMath.zip(dy, x!, slope!) { g, v, s in v < 0 ? g * s : g },
         GradientMath.zip(dy, x!) { g, v in v < 0 ? g * v : 0 })
    },
    "Sum": VectorJacobianProduct(firstInputs: .max, saved: .nothing) { arguments in
        let dy = try arguments.outputGradient()
        return try arguments.node.inputs.indices.map { index in
            arguments.wants(index) ? GradientMath.reduced(dy, to: try arguments.inputShape(index)) : nil
        }
    },
    "Min": extremum(),
    "Max": extremum(),
    "Where": VectorJacobianProduct(differentiableInputs: { _ in [1, 2] }, saved: .inputs([0])) { arguments in
        let dy = try arguments.outputGradient()
        let condition = GradientMath.broadcast(try arguments.input(0).converted(to: .float32), to: dy.shape,
                                               context: arguments.context)
        var result: [Tensor?] = [nil, nil, nil]
        if arguments.wants(1) {
            result[1] = GradientMath.reduced(GradientMath.zip(dy, condition) { g, c in c != 0 ? g : 0 },
                                             to: try arguments.inputShape(1))
        }
        if arguments.wants(2) {
            result[2] = GradientMath.reduced(GradientMath.zip(dy, condition) { g, c in c != 0 ? 0 : g },
                                             to: try arguments.inputShape(2))
        }
        return result
    },
]

/// Ops whose first output is their first input (inference Dropout, float-to-float casts).
private func passThrough() -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: .nothing) { arguments in
        [try arguments.outputGradient().converted(to: .float32).reshaped(try arguments.inputShape(0))]
    }
}

/// dx = dy * f'(v), where `v` is the input (`.allInputs`), the output (`.outputs`) or unused (`.nothing`).
private func unary(_ saved: VectorJacobianProduct.Saved,
                   _ derivative: @escaping @Sendable (Node) throws -> (Float) -> Float) -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: saved) { arguments in
        let dy = try arguments.outputGradient()
        let slope = try derivative(arguments.node)
        switch saved {
        case .outputs: return [GradientMath.zip(dy, try arguments.output(0)) { g, y in g * slope(y) }]
        case .nothing: return [GradientMath.map(dy) { $0 * slope(0) }]
        default: return [GradientMath.zip(dy, try arguments.input(0)) { g, x in g * slope(x) }]
        }
    }
}

/// Two-operand ops: `gradients(arguments, dy, a, b)` gives both operands' gradients in the
/// broadcast output shape (`a`, `b` broadcast to it when saved), summed back to each operand's shape.
private func binary(_ saved: VectorJacobianProduct.Saved,
                    _ gradients: @escaping @Sendable (GradientArguments, Tensor, Tensor?, Tensor?) throws -> (Tensor, Tensor))
    -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 2, saved: saved) { arguments in
        let dy = try arguments.outputGradient()
        var operands: [Tensor?] = [nil, nil]
        if case .allInputs = saved {
            operands = try (0..<2).map {
                GradientMath.broadcast(try arguments.input($0).converted(to: .float32), to: dy.shape, context: arguments.context)
            }
        }
        let (da, db) = try gradients(arguments, dy, operands[0], operands[1])
        return [arguments.wants(0) ? GradientMath.reduced(da, to: try arguments.inputShape(0)) : nil,
                arguments.wants(1) ? GradientMath.reduced(db, to: try arguments.inputShape(1)) : nil]
    }
}

/// Min and Max: the gradient goes to the operand that supplied the output (the first one on ties).
private func extremum() -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: .max, saved: .everything) { arguments in
        let dy = try arguments.outputGradient()
        let y = try arguments.output(0)
        var taken = GradientMath.zeros(dy.shape)
        var result: [Tensor?] = []
        for index in arguments.node.inputs.indices {
            let x = GradientMath.broadcast(try arguments.input(index), to: dy.shape, context: arguments.context)
            let chosen = GradientMath.zip(x, y, taken) { v, out, used in v == out && used == 0 ? 1 : 0 }
            taken = GradientMath.sum(taken, chosen)
            result.append(arguments.wants(index)
                ? GradientMath.reduced(GradientMath.zip(dy, chosen, *), to: try arguments.inputShape(index)) : nil)
        }
        return result
    }
}

/// Clip's bounds: attributes before opset 11, optional scalar inputs after.
private func clipBounds(_ arguments: GradientArguments) throws -> (Float, Float) {
    let node = arguments.node
    if arguments.opset < 11 {
        return (try node.float("min", default: -.greatestFiniteMagnitude), try node.float("max", default: .greatestFiniteMagnitude))
    }
    func bound(_ index: Int, _ fallback: Float) throws -> Float {
        guard node.input(index) != nil else { return fallback }
        let value = try arguments.input(index).floats()
        guard value.count == 1 else { throw MPQError.shapeMismatch("Clip bounds must be scalars") }
        return value[0]
    }
    return (try bound(1, -.greatestFiniteMagnitude), try bound(2, .greatestFiniteMagnitude))
}
