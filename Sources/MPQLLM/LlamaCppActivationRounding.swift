import Foundation
import MPQGGUF
import MPQGraph
import MPQRuntime

/// llama.cpp's CPU backend rounds activations before its matrix products: each
/// weight type has a `vec_dot_type` the activation row is converted to first
/// (ggml-cpu's type traits): f16 for F16 weights, q8_0 / q8_1 blocks of 32 for
/// the legacy types, q8_K blocks of 256 for the K-quants; and with its default
/// f16 KV cache, Q, K and V are rounded to f16, and so are the attention
/// probabilities before they multiply V.
///
/// mpq's evaluation is exact float32 by default; predicting llama-perplexity's
/// figures needs this rounding (on SmolLM2-135M it alone costs KLD 0.0037, and
/// on the bundled tiny-llama 4% of a Q4_K_M's KLD). `DecoderGraphBuilder`
/// inserts a `RoundActivations` node (domain `mpq.llamacpp`) before every such
/// product when asked; the node's `block` attribute says how it rounds the
/// last axis: 0 to float16, 32 as q8_0 (`q = rint(x · 127 / amax)`, value
/// `q · fp16(amax / 127)`), 256 as q8_K (`iscale = −127 / max`, the signed
/// value of largest magnitude; `q = min(127, rint(iscale · x))`, value
/// `q / iscale`). Evaluation only: it has no gradient.
public enum LlamaCppActivationRounding {
    /// The node domain of `RoundActivations`; reading it registers the operator with the runtime.
    public static var domain: String {
        _ = registration
        return name
    }

    private static let name = "mpq.llamacpp"

    private static let registration: Void = OperatorRegistry.register(
        domain: name, factories: ["RoundActivations": { node, _ in try RoundActivationsOperator(node: node) }])

    /// The `block` attribute for activations multiplied by a weight of `type`: 0 (f16), 32 or 256,
    /// or nil when llama.cpp multiplies them in float32 (F32 weights).
    public static func block(forWeightType type: GGMLType) -> Int? {
        switch type {
        case .f16, .bf16: return 0
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_nl: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs: return 256
        default: return nil
        }
    }

    /// A `RoundActivations` node rounding `input` into `output` with `block`.
    public static func node(_ input: String, output: String, block: Int) -> Node {
        Node(name: output, opType: "RoundActivations", domain: domain, inputs: [input], outputs: [output],
             attributes: ["block": .int(block)])
    }

    /// Writes `count` values of `x`, rounded as a block of `block` (0: each to float16), to `y`.
    static func round(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int, block: Int) {
        switch block {
        case 0:
            for i in 0..<count { y[i] = Float(Float16(x[i])) }
        case 256:
            var amax: Float = 0, signedMax: Float = 0
            for i in 0..<count where abs(x[i]) > amax { amax = abs(x[i]); signedMax = x[i] }
            guard amax > 0 else { y.update(repeating: 0, count: count); return }
            let iscale = -127 / signedMax, d = 1 / iscale
            for i in 0..<count { y[i] = min(127, (iscale * x[i]).rounded(.toNearestOrEven)) * d }
        default:
            var amax: Float = 0
            for i in 0..<count { amax = max(amax, abs(x[i])) }
            guard amax > 0 else { y.update(repeating: 0, count: count); return }
            let id = 127 / amax, d = Float(Float16(amax / 127))
            for i in 0..<count { y[i] = (x[i] * id).rounded(.toNearestOrEven) * d }
        }
    }
}

/// `RoundActivations(x) -> y` (see `LlamaCppActivationRounding`): x rounded in blocks along its last axis.
final class RoundActivationsOperator: Operator {
    let node: Node
    let block: Int

    init(node: Node) throws {
        self.node = node
        block = try node.int("block", default: 0)
        guard [0, 32, 256].contains(block) else {
            throw MPQError.invalidAttribute(node: node.name, opType: node.opType, message: "block must be 0 (f16), 32 or 256, got \(block)")
        }
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let x = try inputs.required(0, node)
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        if block > 0, let width = x.shape?.last, width % block != 0 {
            throw MPQError.shapeMismatch("\(node.opType) node '\(node.name)': rows of \(width) values do not split into blocks of \(block)")
        }
        return [ValueSpec(dtype: .float32, shape: x.shape)]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try inputs.required(0, node).rowMajor()
        guard x.dtype == .float32 else { throw MPQError.typeMismatch("\(node.opType) takes float32, got \(x.dtype)") }
        let output = context.allocate(.float32, x.shape)
        guard x.count > 0 else { return [output] }
        if block > 0, (x.shape.last ?? 0) % block != 0 {
            throw MPQError.shapeMismatch("\(node.opType) node '\(node.name)': \(x.shape) does not split into blocks of \(block)")
        }
        let width = block == 0 ? 1024 : block
        let source = UnsafePointer(x.pointer(as: Float.self)), target = output.pointer(as: Float.self)
        let count = x.count, block = self.block
        let blocks = (count + width - 1) / width
        context.parallelFor(blocks, minimumChunk: 64) { range in
            for b in range {
                let start = b * width
                LlamaCppActivationRounding.round(source + start, into: target + start, count: min(width, count - start), block: block)
            }
        }
        return [output]
    }
}
