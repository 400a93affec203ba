import MPQGraph

/// A scalar objective of a graph's first output that `GradientComputation`
/// differentiates: a sum of per-sample losses, with one or more heads.
///
/// The runtime owns this protocol so that the backward pass does not depend on
/// the searches; the task losses of Taylor-IP sensitivity (docs/DESIGN.md
/// method 2) conform to it in MPQSearch (`TaskLoss`).
public protocol DifferentiableLoss: Sendable {
    /// Per-head, per-sample loss values of `output` and each head's seed
    /// gradient d(sum over samples of the head's loss) / d(output).
    /// `feeds` are the graph inputs of the batch (e.g. the token ids a
    /// next-token loss scores against).
    func evaluate(output: Tensor, feeds: [String: Tensor]) throws -> LossEvaluation
}

/// Loss values and seed gradients of one output (see `DifferentiableLoss.evaluate`).
public struct LossEvaluation: Sendable {
    /// `headLosses[k][n]`: loss of head `k` on sample `n`.
    public var headLosses: [[Double]]
    /// d(sum over samples of head k's loss) / d(output), shaped like the output.
    public var seeds: [Tensor]

    /// Per-head, per-sample losses and one seed gradient per head.
    public init(headLosses: [[Double]], seeds: [Tensor]) {
        self.headLosses = headLosses
        self.seeds = seeds
    }
}
