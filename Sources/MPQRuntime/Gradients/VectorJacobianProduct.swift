import MPQGraph

/// What one vector-Jacobian product reads: the node, the forward values it
/// asked to keep, and the gradients of the node's outputs.
struct GradientArguments {
    let node: Node
    let opset: Int
    /// Forward inputs: constants always, run-time values when the rule saves them (else nil).
    let inputs: [Tensor?]
    /// Shape of every forward input (nil for omitted optional inputs).
    let inputShapes: [[Int]?]
    /// Forward outputs when the rule saves them (else nil).
    let outputs: [Tensor?]
    /// Shape of every forward output.
    let outputShapes: [[Int]?]
    /// Gradients of the outputs; nil where none flows back (zero).
    let outputGradients: [Tensor?]
    /// Which input gradients the caller needs.
    let wanted: [Bool]
    let context: ExecutionContext
    let kernels: GradientKernels

    func input(_ index: Int) throws -> Tensor {
        guard index < inputs.count, let tensor = inputs[index] else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)': the backward pass lacks forward input \(index)")
        }
        return try tensor.rowMajor()
    }

    func output(_ index: Int) throws -> Tensor {
        guard index < outputs.count, let tensor = outputs[index] else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)': the backward pass lacks forward output \(index)")
        }
        return try tensor.rowMajor()
    }

    func inputShape(_ index: Int) throws -> [Int] {
        guard index < inputShapes.count, let shape = inputShapes[index] else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)' is missing input \(index)")
        }
        return shape
    }

    /// The gradient of output `index` (zeros when none flows back).
    func outputGradient(_ index: Int = 0) throws -> Tensor {
        if index < outputGradients.count, let gradient = outputGradients[index] { return gradient }
        guard index < outputShapes.count, let shape = outputShapes[index] else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)' has no output \(index)")
        }
        return GradientMath.zeros(shape)
    }

    func wants(_ index: Int) -> Bool { index < wanted.count && wanted[index] }
}

/// The reverse-mode rule of one op type: which inputs gradients flow into,
/// which forward values it needs kept, and the product itself
/// (input gradients from output gradients, nil for inputs not wanted).
struct VectorJacobianProduct: Sendable {
    enum Saved: Sendable {
        /// Only shapes and constant inputs.
        case nothing
        /// These run-time inputs.
        case inputs([Int])
        /// Every run-time input.
        case allInputs
        /// The outputs.
        case outputs
        /// Every input and the outputs.
        case everything
    }

    /// Inputs a gradient flows into (others, e.g. indices, shapes or bounds, get none).
    let differentiableInputs: @Sendable (Node) -> [Int]
    let saved: Saved
    /// Why the rule cannot differentiate this node's attributes (nil: it can).
    let unsupportedReason: @Sendable (Node) throws -> String?
    let apply: @Sendable (GradientArguments) throws -> [Tensor?]

    init(differentiableInputs: @escaping @Sendable (Node) -> [Int], saved: Saved,
         unsupportedReason: @escaping @Sendable (Node) throws -> String? = { _ in nil },
         apply: @escaping @Sendable (GradientArguments) throws -> [Tensor?]) {
        self.differentiableInputs = differentiableInputs
        self.saved = saved
        self.unsupportedReason = unsupportedReason
        self.apply = apply
    }

    /// A rule whose gradients flow into the first `count` inputs (`Int.max`: all).
    init(firstInputs count: Int, saved: Saved,
         unsupportedReason: @escaping @Sendable (Node) throws -> String? = { _ in nil },
         apply: @escaping @Sendable (GradientArguments) throws -> [Tensor?]) {
        self.init(differentiableInputs: { Array(0..<min(count, $0.inputs.count)) }, saved: saved,
                  unsupportedReason: unsupportedReason, apply: apply)
    }

    func savesInput(_ index: Int) -> Bool {
        switch saved {
        case .nothing, .outputs: return false
        case .inputs(let list): return list.contains(index)
        case .allInputs, .everything: return true
        }
    }

    var savesOutputs: Bool {
        switch saved {
        case .outputs, .everything: return true
        default: return false
        }
    }
}

/// The vector-Jacobian products mpq has, by ONNX op type.
enum GradientRegistry {
    static let rules: [String: VectorJacobianProduct] = {
        var all: [String: VectorJacobianProduct] = [:]
        for family in [
            elementwiseGradients, matrixGradients, convolutionGradients, shapeGradients,
            reductionGradients, normalizationGradients, poolingGradients, rmsNormalizationGradients,
            recurrentGradients,
        ] {
            all.merge(family) { first, _ in first }
        }
        return all
    }()

    /// Sorted names of every op type with a vector-Jacobian product.
    static var differentiableOpTypes: [String] { rules.keys.sorted() }
}

/// Prepared kernels the backward pass reuses between runs (oneDNN primitives
/// for matrix products and convolutions), keyed by problem.
final class GradientKernels {
    private var cache: [String: AnyObject] = [:]

    func kernel<K: AnyObject>(_ key: String, make: () throws -> K) throws -> K {
        if let cached = cache[key] as? K { return cached }
        let made = try make()
        cache[key] = made
        return made
    }
}
