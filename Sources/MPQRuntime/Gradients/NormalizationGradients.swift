import Foundation
import MPQGraph

/// Vector-Jacobian products of Softmax, LogSoftmax and the normalizations.
///
/// - Softmax: dx = y (dy - sum(dy y)); LogSoftmax: dx = dy - exp(y) sum(dy),
///   sums along the softmax axis (the flattened tail before opset 13).
/// - LayerNormalization and InstanceNormalization recompute the row
///   statistics from x: with x^ = (x - mean) r, r = 1 / sqrt(var + eps) and
///   h = dy gamma, dx = r (h - mean(h) - x^ mean(h x^)); dgamma = sum dy x^,
///   dbeta = sum dy.
/// - BatchNormalization (inference, fixed statistics) is affine per channel.
let normalizationGradients: [String: VectorJacobianProduct] = [
    "Softmax": softmaxGradient(logarithmic: false),
    "LogSoftmax": softmaxGradient(logarithmic: true),
    "LayerNormalization": VectorJacobianProduct(firstInputs: 3, saved: .inputs([0, 1])) { arguments in
        if arguments.outputGradients.dropFirst().contains(where: { $0 != nil }) {
            throw MPQError.invalidModel("LayerNormalization node '\(arguments.node.name)': gradients through its Mean / InvStdDev outputs are not supported")
        }
        let x = try arguments.input(0)
        let axis = try normalizedAxis(try arguments.node.int("axis", default: -1), rank: x.rank, node: arguments.node)
        let epsilon = try arguments.node.float("epsilon", default: 1e-5)
        let width = x.shape[axis...].reduce(1, *)
        let normalized = Array(x.shape[axis...])
        let gamma = GradientMath.broadcast(try arguments.input(1), to: normalized, context: arguments.context)
        let result = normalizeBackward(x: x, dy: try arguments.outputGradient(), rows: x.count / max(width, 1), width: width,
                                       epsilon: epsilon, gamma: { _, j in j }, gammaValues: gamma,
                                       parameterCount: width)
        return [arguments.wants(0) ? result.dx : nil,
                arguments.wants(1) ? GradientMath.reduced(result.dgamma.reshaped(normalized), to: try arguments.inputShape(1)) : nil,
                arguments.wants(2) ? GradientMath.reduced(result.dbeta.reshaped(normalized), to: try arguments.inputShape(2)) : nil]
    },
    "InstanceNormalization": VectorJacobianProduct(firstInputs: 3, saved: .inputs([0, 1])) { arguments in
        let x = try arguments.input(0)
        guard x.rank >= 3 else { throw MPQError.shapeMismatch("InstanceNormalization needs [N, C, ...] input, got \(x.shape)") }
        let channels = x.shape[1], width = x.shape[2...].reduce(1, *)
        let result = normalizeBackward(x: x, dy: try arguments.outputGradient(), rows: x.count / max(width, 1), width: width,
                                       epsilon: try arguments.node.float("epsilon", default: 1e-5),
                                       gamma: { row, _ in row % channels }, gammaValues: try arguments.input(1),
                                       parameterCount: channels)
        return [arguments.wants(0) ? result.dx : nil, arguments.wants(1) ? result.dgamma : nil,
                arguments.wants(2) ? result.dbeta : nil]
    },
    "BatchNormalization": VectorJacobianProduct(firstInputs: 5, saved: .allInputs) { arguments in
        let x = try arguments.input(0)
        let scale = try arguments.input(1).floats(), mean = try arguments.input(3).floats()
        let variance = try arguments.input(4).floats()
        let epsilon = try arguments.node.float("epsilon", default: 1e-5)
        let dy = try arguments.outputGradient()
        let channels = x.shape[1], spatial = x.shape[2...].reduce(1, *)
        let dx = Tensor(uninitialized: .float32, shape: x.shape)
        var sums = [Double](repeating: 0, count: channels), products = sums
        let g = dy.pointer(as: Float.self), v = x.pointer(as: Float.self), target = dx.pointer(as: Float.self)
        for plane in 0..<(x.count / max(spatial, 1)) {
            let c = plane % channels
            let r = 1 / (variance[c] + epsilon).squareRoot()
            for i in plane * spatial..<(plane + 1) * spatial {
                target[i] = g[i] * scale[c] * r
                sums[c] += Double(g[i])
                products[c] += Double(g[i]) * Double(v[i] - mean[c])
            }
        }
        let r = (0..<channels).map { 1 / Double(variance[$0] + epsilon).squareRoot() }
        func vector(_ values: [Double]) -> Tensor { Tensor(shape: [channels], scalars: values.map { Float($0) }) }
        return [arguments.wants(0) ? dx : nil,
                arguments.wants(1) ? vector((0..<channels).map { products[$0] * r[$0] }) : nil,
                arguments.wants(2) ? vector(sums) : nil,
                arguments.wants(3) ? vector((0..<channels).map { -sums[$0] * Double(scale[$0]) * r[$0] }) : nil,
                arguments.wants(4) ? vector((0..<channels).map { -0.5 * products[$0] * Double(scale[$0]) * pow(r[$0], 3) }) : nil]
    },
]

private func softmaxGradient(logarithmic: Bool) -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 1, saved: .outputs) { arguments in
        let y = try arguments.output(0), dy = try arguments.outputGradient()
        let flattens = arguments.opset < 13
        let axis = try normalizedAxis(try arguments.node.int("axis", default: flattens ? 1 : -1), rank: y.rank,
                                      node: arguments.node)
        var (outer, length, inner) = GradientMath.split(y.shape, axis: axis)
        if flattens { (length, inner) = (length * inner, 1) }
        let dx = Tensor(uninitialized: .float32, shape: y.shape)
        let p = y.pointer(as: Float.self), g = dy.pointer(as: Float.self), target = dx.pointer(as: Float.self)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var total: Float = 0
                for k in 0..<length {
                    let at = base + k * inner
                    total += logarithmic ? g[at] : g[at] * p[at]
                }
                for k in 0..<length {
                    let at = base + k * inner
                    target[at] = logarithmic ? g[at] - exp(p[at]) * total : p[at] * (g[at] - total)
                }
            }
        }
        return [dx]
    }
}

/// Backward of normalising `rows` contiguous rows of `width` elements each,
/// then scaling by gamma[gamma(row, column)] (shift gradients likewise indexed).
private func normalizeBackward(x: Tensor, dy: Tensor, rows: Int, width: Int, epsilon: Float,
                               gamma index: (Int, Int) -> Int, gammaValues: Tensor,
                               parameterCount: Int) -> (dx: Tensor, dgamma: Tensor, dbeta: Tensor) {
    let dx = Tensor(uninitialized: .float32, shape: x.shape)
    let dgamma = GradientMath.zeros([parameterCount]), dbeta = GradientMath.zeros([parameterCount])
    let v = x.pointer(as: Float.self), g = dy.pointer(as: Float.self), target = dx.pointer(as: Float.self)
    let scale = gammaValues.pointer(as: Float.self)
    let dg = dgamma.pointer(as: Float.self), db = dbeta.pointer(as: Float.self)
    var normalized = [Double](repeating: 0, count: width), h = normalized
    for row in 0..<rows {
        let base = row * width
        var mean = 0.0
        for j in 0..<width { mean += Double(v[base + j]) }
        mean /= Double(width)
        var variance = 0.0
        for j in 0..<width { variance += (Double(v[base + j]) - mean) * (Double(v[base + j]) - mean) }
        variance /= Double(width)
        let r = 1 / (variance + Double(epsilon)).squareRoot()
        var meanH = 0.0, meanHX = 0.0
        for j in 0..<width {
            let k = index(row, j)
            normalized[j] = (Double(v[base + j]) - mean) * r
            h[j] = Double(g[base + j]) * Double(scale[k])
            meanH += h[j]
            meanHX += h[j] * normalized[j]
            dg[k] += g[base + j] * Float(normalized[j])
            db[k] += g[base + j]
        }
        meanH /= Double(width)
        meanHX /= Double(width)
        for j in 0..<width { target[base + j] = Float(r * (h[j] - meanH - normalized[j] * meanHX)) }
    }
    return (dx, dgamma, dbeta)
}
