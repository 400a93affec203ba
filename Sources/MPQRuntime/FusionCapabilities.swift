import MPQGraph

/// An operator that runs element-wise post-ops, a residual sum or a bias
/// inside its own primitive (oneDNN post-ops), so `OperatorFusion` can fold
/// the nodes after it into it and save a memory pass each.
///
/// The runtime's float Conv / ConvTranspose / Gemm / MatMul conform; higher
/// layers add their own kernels (the int8 operators of MPQQuantization)
/// without the runtime naming them.
public protocol PostOpFusing: Operator {
    /// The float op this operator computes ("Conv", "ConvTranspose", "Gemm" or
    /// "MatMul"): it decides which patterns fold into it (a residual sum only
    /// into convolutions, a bias `Add` only into MatMuls).
    var fusedOpType: String { get }
    /// True when the operator's weights are constants of the plan (a MatMul
    /// of two activations takes no bias post-op).
    func hasConstantWeights(in constants: [String: Tensor], node: Node) -> Bool
    /// A copy bound to `node` that also applies `postOp` after its current
    /// post-ops (with `.sum`, input 3 of `node` is the residual), or nil when
    /// the primitive cannot take it.
    func fusing(_ postOp: PostOp, node: Node) throws -> Operator?
    /// A copy bound to `node`, whose last input is a bias row the operator
    /// adds (MatMul followed by `Add`), or nil when it cannot.
    func addingBias(node: Node) throws -> Operator?
}

extension PostOpFusing {
    /// Default: the weights count as constant.
    public func hasConstantWeights(in constants: [String: Tensor], node: Node) -> Bool { true }
    /// Default: no bias can be folded in.
    public func addingBias(node: Node) throws -> Operator? { nil }
}

/// An operator that can hand its output over in its kernel's own (blocked or
/// channels-last) layout instead of row-major, when every reader accepts it.
public protocol OpaqueLayoutEmitting: Operator {
    /// Set by `OperatorFusion` when every reader takes the kernel's layout.
    var emitsOpaqueOutput: Bool { get set }
}

/// An operator that reads some inputs in another kernel's layout.
public protocol OpaqueLayoutReading: Operator {
    /// True when input `slot` may arrive in `producer`'s own layout.
    func readsOpaqueLayout(at slot: Int, from producer: Operator) -> Bool
}

/// A rewrite of a fused plan's (node, operator) list that a higher layer
/// registers with `OperatorRegistry` (e.g. int8 layers handing over uint8
/// codes): it receives the plan's outputs and value specs, and returns the
/// rewritten list.
public typealias PlanRewrite = @Sendable (
    _ entries: [(node: Node, op: Operator)], _ outputs: Set<String>, _ specs: [String: ValueSpec]
) throws -> [(node: Node, op: Operator)]
