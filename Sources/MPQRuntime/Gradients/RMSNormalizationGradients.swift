import Foundation
import MPQGraph

/// Vector-Jacobian product of RMSNormalization / SimplifiedLayerNormalization.
///
/// With r = 1 / sqrt(mean(x^2) + eps), x^ = x r and h = dy gamma (per row of
/// the normalized axes, width n): dx = r (h - x^ mean(h x^)); dgamma = sum over
/// rows of dy x^ (reduced to the scale's shape).
let rmsNormalizationGradients: [String: VectorJacobianProduct] = [
    "RMSNormalization": rmsNormalizationGradient(),
    "SimplifiedLayerNormalization": rmsNormalizationGradient(),
]

private func rmsNormalizationGradient() -> VectorJacobianProduct {
    VectorJacobianProduct(firstInputs: 2, saved: .inputs([0, 1])) { arguments in
        let x = try arguments.input(0)
        let axis = try normalizedAxis(try arguments.node.int("axis", default: -1), rank: x.rank, node: arguments.node)
        let epsilon = Double(try arguments.node.float("epsilon", default: 1e-5))
        let normalized = Array(x.shape[axis...])
        let width = normalized.reduce(1, *), rows = x.count / max(width, 1)
        let gamma = GradientMath.broadcast(try arguments.input(1), to: normalized, context: arguments.context)
        let dy = try arguments.outputGradient().rowMajor()
        let dx = Tensor(uninitialized: .float32, shape: x.shape)
        var dgamma = [Double](repeating: 0, count: width)
        let v = x.pointer(as: Float.self), g = dy.pointer(as: Float.self), w = gamma.pointer(as: Float.self)
        let target = dx.pointer(as: Float.self)
        for row in 0..<rows {
            let base = row * width
            var squares = 0.0
            for j in 0..<width { let value = Double(v[base + j]); squares += value * value }
            let r = 1 / (squares / Double(width) + epsilon).squareRoot()
            var dot = 0.0
            for j in 0..<width {
                let normalizedValue = Double(v[base + j]) * r
                dot += Double(g[base + j]) * Double(w[j]) * normalizedValue
                dgamma[j] += Double(g[base + j]) * normalizedValue
            }
            let mean = dot / Double(width)
            for j in 0..<width {
                let normalizedValue = Double(v[base + j]) * r
                target[base + j] = Float(r * (Double(g[base + j]) * Double(w[j]) - normalizedValue * mean))
            }
        }
        let scaleGradient = Tensor(shape: normalized, scalars: dgamma.map { Float($0) })
        return [arguments.wants(0) ? dx : nil,
                arguments.wants(1) ? GradientMath.reduced(scaleGradient, to: try arguments.inputShape(1)) : nil]
    }
}
