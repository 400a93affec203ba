import MPQGraph

/// Vector-Jacobian products of pooling. Average pooling spreads each output
/// gradient evenly over its window (divided as the forward kernel divides:
/// by the window's elements inside the input, or with count_include_pad by
/// the whole window);
/// max pooling gives it to the window's first maximal element.
let poolingGradients: [String: VectorJacobianProduct] = [
    "GlobalAveragePool": VectorJacobianProduct(firstInputs: 1, saved: .nothing) { arguments in
        let shape = try arguments.inputShape(0)
        let size = shape[2...].reduce(1, *)
        let dy = try arguments.outputGradient()
        return [GradientMath.scaled(GradientMath.broadcast(dy, to: shape, context: arguments.context), by: 1 / Float(max(size, 1)))]
    },
    "GlobalMaxPool": VectorJacobianProduct(firstInputs: 1, saved: .everything) { arguments in
        let x = try arguments.input(0), y = try arguments.output(0)
        let dy = GradientMath.broadcast(try arguments.outputGradient(), to: x.shape, context: arguments.context)
        let maximum = GradientMath.broadcast(y, to: x.shape, context: arguments.context)
        // The first maximal element of each plane takes the gradient.
        let dx = GradientMath.zeros(x.shape)
        let size = x.shape[2...].reduce(1, *)
        withExtendedLifetime((x, maximum, dy)) {
            let v = x.pointer(as: Float.self), m = maximum.pointer(as: Float.self), g = dy.pointer(as: Float.self)
            let target = dx.pointer(as: Float.self)
            for plane in 0..<(x.count / max(size, 1)) {
                let base = plane * size
                if let first = (0..<size).first(where: { v[base + $0] == m[base + $0] }) {
                    target[base + first] = g[base + first]
                }
            }
        }
        return [dx]
    },
    "AveragePool": windowGradient(maximum: false),
    "MaxPool": windowGradient(maximum: true),
]

private func windowGradient(maximum: Bool) -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: maximum ? .allInputs : .nothing) { arguments in
        let node = arguments.node
        let shape = try arguments.inputShape(0)
        guard shape.count >= 3 && shape.count <= 5, let kernel = try node.ints("kernel_shape") else {
            throw MPQError.shapeMismatch("\(node.opType) needs 3-D to 5-D input and kernel_shape, got \(shape)")
        }
        let geometry = try WindowGeometry(node: node, spatial: Array(shape[2...]), kernel: kernel)
        let countIncludePad = try node.int("count_include_pad", default: 0) != 0
        let dy = try arguments.outputGradient()
        // Spatial dims padded to three (leading size-1 dims) so one loop nest serves 1-D to 3-D.
        let extra = 5 - shape.count
        func padded(_ values: [Int], _ fill: Int) -> [Int] { [Int](repeating: fill, count: extra) + values }
        let inSize = padded(Array(shape[2...]), 1), outSize = padded(Array(dy.shape[2...]), 1)
        let k = padded(kernel, 1), s = padded(geometry.strides, 1), d = padded(geometry.dilations, 1)
        let begin = padded(geometry.padsBegin, 0)
        // As the forward kernel (oneDNN avg_include_padding): the divisor is the whole window.
        let windowVolume = kernel.reduce(1, *)
        let planes = shape[0] * shape[1]
        let inPlane = inSize.reduce(1, *), outPlane = outSize.reduce(1, *)
        let dx = GradientMath.zeros(shape)
        let g = dy.pointer(as: Float.self), target = dx.pointer(as: Float.self)
        let x = maximum ? try arguments.input(0) : nil
        let v = x?.pointer(as: Float.self)
        for plane in 0..<planes {
            for o0 in 0..<outSize[0] { for o1 in 0..<outSize[1] { for o2 in 0..<outSize[2] {
                let gradient = g[plane * outPlane + (o0 * outSize[1] + o1) * outSize[2] + o2]
                let start = [o0 * s[0] - begin[0], o1 * s[1] - begin[1], o2 * s[2] - begin[2]]
                var positions: [Int] = []
                for k0 in 0..<k[0] { for k1 in 0..<k[1] { for k2 in 0..<k[2] {
                    let p = [start[0] + k0 * d[0], start[1] + k1 * d[1], start[2] + k2 * d[2]]
                    let inside = (0..<3).allSatisfy { p[$0] >= 0 && p[$0] < inSize[$0] }
                    if inside { positions.append(plane * inPlane + (p[0] * inSize[1] + p[1]) * inSize[2] + p[2]) }
                }}}
                guard !positions.isEmpty else { continue }
                if let v {
                    var best = positions[0]
                    for position in positions.dropFirst() where v[position] > v[best] { best = position }
                    target[best] += gradient
                } else {
                    let divisor = Float(countIncludePad ? windowVolume : positions.count)
                    for position in positions { target[position] += gradient / divisor }
                }
            }}}
        }
        return [dx]
    }
}
