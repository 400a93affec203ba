import MPQGraph

/// Vector-Jacobian products of data-movement operators.
///
/// Views (Reshape, Flatten, Squeeze, Unsqueeze) reshape the gradient back.
/// Ops that move or repeat elements (Transpose, Slice, Pad, Tile, Concat,
/// Split, nearest-neighbour Resize) are differentiated by tracing: the forward operator itself runs on
/// a tensor of element positions, which says where each output element came
/// from, and the gradient is scatter-added back along that map. This is exact
/// for every attribute combination the forward kernel supports.
let shapeGradients: [String: VectorJacobianProduct] = [
    "Reshape": view(),
    "Flatten": view(),
    "Squeeze": view(),
    "Unsqueeze": view(),
    "Expand": VectorJacobianProduct(firstInputs: 1, saved: .nothing) { arguments in
        [GradientMath.reduced(try arguments.outputGradient(), to: try arguments.inputShape(0))]
    },
    "Transpose": traced(),
    "Slice": traced(),
    "Tile": traced(),
    "Pad": traced(),
    "Resize": traced { node in
        let mode = try node.string("mode", default: "nearest")
        return mode == "nearest" ? nil : "no vector-Jacobian product for mode '\(mode)' (only 'nearest')"
    },
    "Concat": VectorJacobianProduct(firstInputs: .max, saved: .nothing) { arguments in
        let dy = try arguments.outputGradient()
        let shapes = try arguments.node.inputs.indices.map { try arguments.inputShape($0) }
        var offsets: [Int] = []
        var positionsInputs: [Tensor?] = []
        var total = 0
        for shape in shapes {
            offsets.append(total)
            positionsInputs.append(GradientMath.positions(shape, offset: total))
            total += shape.reduce(1, *)
        }
        let sources = try runForward(arguments, inputs: positionsInputs)[0]
        return shapes.indices.map { index in
            arguments.wants(index) ? GradientMath.scatterAdded(dy, sources: sources, shape: shapes[index], offset: offsets[index]) : nil
        }
    },
    "Split": VectorJacobianProduct(firstInputs: 1, saved: .inputs([1])) { arguments in
        let shape = try arguments.inputShape(0)
        var inputs = arguments.inputs
        inputs[0] = GradientMath.positions(shape)
        let maps = try runForward(arguments, inputs: inputs)
        var dx = GradientMath.zeros(shape)
        for (index, map) in maps.enumerated() where index < arguments.outputGradients.count {
            guard let gradient = arguments.outputGradients[index] else { continue }
            dx = GradientMath.sum(dx, GradientMath.scatterAdded(gradient, sources: map, shape: shape))
        }
        return [dx]
    },
    "Gather": VectorJacobianProduct(firstInputs: 1, saved: .inputs([1])) { arguments in
        let shape = try arguments.inputShape(0)
        let indices = try arguments.input(1).integers()
        let axis = try existingAxis(try arguments.node.int("axis", default: 0), rank: shape.count, node: arguments.node)
        let (outer, length, inner) = GradientMath.split(shape, axis: axis)
        let dy = try arguments.outputGradient()
        let dx = GradientMath.zeros(shape)
        let g = dy.pointer(as: Float.self), target = dx.pointer(as: Float.self)
        for o in 0..<outer {
            for (i, raw) in indices.enumerated() {
                let index = raw < 0 ? raw + length : raw
                guard index >= 0 && index < length else {
                    throw MPQError.invalidInput("Gather index \(raw) is out of range for axis length \(length)")
                }
                let from = (o * indices.count + i) * inner, to = (o * length + index) * inner
                for j in 0..<inner { target[to + j] += g[from + j] }
            }
        }
        return [dx]
    },
]

/// Ops that only reinterpret the shape.
private func view() -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: .nothing) { arguments in
        [try arguments.outputGradient().reshaped(try arguments.inputShape(0))]
    }
}

/// One-input data movement: trace element positions through the forward op (see above).
private func traced(unsupportedReason: @escaping @Sendable (Node) throws -> String? = { _ in nil }) -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: .inputs(Array(1..<8)), unsupportedReason: unsupportedReason) { arguments in
        let shape = try arguments.inputShape(0)
        var inputs = arguments.inputs
        inputs[0] = GradientMath.positions(shape)
        var node = arguments.node
        if node.opType == "Pad" {
            // Pad's constant becomes -1: "from no input element".
            node.attributes["value"] = .float(-1)
            while inputs.count < 3 { inputs.append(nil) }
            inputs[2] = Tensor(scalar: Int64(-1))
        }
        let sources = try runForward(arguments, node: node, inputs: inputs)[0]
        return [GradientMath.scatterAdded(try arguments.outputGradient(), sources: sources, shape: shape)]
    }
}

/// Runs the node's forward operator on `inputs`.
private func runForward(_ arguments: GradientArguments, node: Node? = nil, inputs: [Tensor?]) throws -> [Tensor] {
    let op = try OperatorRegistry.makeOperator(for: node ?? arguments.node, opset: arguments.opset)
    return try op.run(inputs, context: arguments.context)
}
