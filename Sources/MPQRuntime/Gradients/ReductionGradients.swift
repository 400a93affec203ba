import MPQGraph

/// Vector-Jacobian products of ReduceSum, ReduceMean and ReduceMax: the
/// output gradient broadcast back over the reduced axes (divided by their
/// size for the mean; for the max, to the elements equal to the maximum).
let reductionGradients: [String: VectorJacobianProduct] = [
    "ReduceSum": reduction(inputSince: 13) { _, dy in dy },
    "ReduceMean": reduction(inputSince: 18) { count, dy in GradientMath.scaled(dy, by: 1 / Float(max(count, 1))) },
    "ReduceMax": VectorJacobianProduct(firstInputs: 1, saved: .everything) { arguments in
        let x = try arguments.input(0), y = try arguments.output(0)
        let keptShape = try reducedShape(arguments, inputSince: 18)
        let dy = GradientMath.broadcast(try arguments.outputGradient().reshaped(keptShape), to: x.shape, context: arguments.context)
        let maximum = GradientMath.broadcast(y.reshaped(keptShape), to: x.shape, context: arguments.context)
        return [GradientMath.zip(dy, x, maximum) { g, v, m in v == m ? g : 0 }]
    },
]

/// `scale(count, dy)`: the gradient broadcast back over the `count` reduced elements per output.
private func reduction(inputSince: Int, _ scale: @escaping @Sendable (Int, Tensor) -> Tensor) -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: .inputs([1])) { arguments in
        let shape = try arguments.inputShape(0)
        let keptShape = try reducedShape(arguments, inputSince: inputSince)
        let count = shape.reduce(1, *) / max(keptShape.reduce(1, *), 1)
        let dy = GradientMath.broadcast(try arguments.outputGradient().reshaped(keptShape), to: shape, context: arguments.context)
        return [scale(count, dy)]
    }
}

/// The input shape with reduced axes set to 1 (the output with keepdims).
private func reducedShape(_ arguments: GradientArguments, inputSince: Int) throws -> [Int] {
    let node = arguments.node
    let shape = try arguments.inputShape(0)
    let listed = try IntegerListArgument("axes", of: node, opset: arguments.opset, inputSince: inputSince, index: 1)
        .value(arguments.inputs) ?? []
    let noop = try node.int("noop_with_empty_axes", default: 0) != 0
    if listed.isEmpty && noop && arguments.opset >= inputSince { return shape }
    let axes = listed.isEmpty ? Set(0..<shape.count) : Set(try listed.map { try existingAxis($0, rank: shape.count, node: node) })
    return shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
}
