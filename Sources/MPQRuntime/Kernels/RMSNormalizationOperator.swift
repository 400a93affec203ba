import Foundation
import MPQGraph

/// Root-mean-square normalization (LLaMA's RMSNorm):
/// y = x / sqrt(mean(x^2 over the normalized axes) + epsilon) * scale.
///
/// Registered as ONNX's `RMSNormalization` (opset 23) and ONNX Runtime's
/// `SimplifiedLayerNormalization` (default domain, what ORT's transformer
/// exports use before opset 23): inputs X and scale, attributes `axis`
/// (default -1; the axes from it to the last are normalized) and `epsilon`
/// (default 1e-5). Statistics are accumulated in double precision.
let rmsNormalizationOperators: [String: OperatorFactory] = [
    "RMSNormalization": { node, _ in try RMSNormalizationOperator(node: node) },
    "SimplifiedLayerNormalization": { node, _ in try RMSNormalizationOperator(node: node) },
]

final class RMSNormalizationOperator: Operator {
    let node: Node
    let axis: Int
    let epsilon: Float

    init(node: Node) throws {
        self.node = node
        axis = try node.int("axis", default: -1)
        epsilon = try node.float("epsilon", default: 1e-5)
        if node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
            throw unsupported(node, "only the normalized output is supported (no InvStdDev output)")
        }
        if try node.int("stash_type", default: 1) != 1 {
            throw unsupported(node, "stash_type other than float32 is not supported")
        }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        return [ValueSpec(dtype: .float32, shape: x.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node), scale = try inputs.required(1, node)
        guard x.dtype == .float32, scale.dtype == .float32 else {
            throw MPQError.typeMismatch("\(node.opType) takes float32")
        }
        let a = try normalizedAxis(axis, rank: x.rank, node: node)
        let rows = x.shape[..<a].reduce(1, *), width = x.shape[a...].reduce(1, *)
        let fullScale = try scale.broadcast(toCount: width, shape: Array(x.shape[a...]))
        let output = context.allocate(.float32, x.shape)
        if x.count == 0 { return [output] }
        let source = x.pointer(as: Float.self), target = output.pointer(as: Float.self)
        let gamma = fullScale.pointer(as: Float.self)
        let epsilon = Double(self.epsilon)
        context.parallelFor(rows, minimumChunk: max(1, 16_384 / max(width, 1))) { range in
            for row in range {
                let base = row * width
                var sum = 0.0
                for j in 0..<width { let v = Double(source[base + j]); sum += v * v }
                let r = Float(1 / (sum / Double(width) + epsilon).squareRoot())
                for j in 0..<width { target[base + j] = source[base + j] * r * gamma[j] }
            }
        }
        return [output]
    }
}
