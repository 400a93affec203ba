import CDNNL
import Foundation
import MPQGraph

/// Forward outputs, per-sample losses and gradients of one `GradientComputation.run`.
///
/// A loss has one or more heads (a random-projection loss has one per
/// projection, the others one). Each head's loss is a sum of per-sample
/// losses, so gradients w.r.t. activations are per sample in their batch rows,
/// while gradients w.r.t. weights are summed over the batch (callers that need
/// per-sample weight terms run batch 1).
public struct GradientResult {
    /// `headLosses[k][n]`: loss of head `k` on sample `n`.
    public var headLosses: [[Double]]
    /// Forward outputs of the graph, by name.
    public var outputs: [String: Tensor]
    /// `headGradients[k][name]`: d(sum over samples of head k's loss) / d(value), shaped like the value.
    public var headGradients: [[String: Tensor]]

    /// Per-sample losses of the first (for most losses the only) head.
    public var loss: [Double] { headLosses.first ?? [] }
    /// Gradients of the first (for most losses the only) head.
    public var gradients: [String: Tensor] { headGradients.first ?? [:] }
}

/// Gradients of a scalar loss w.r.t. chosen values of a graph, by reverse-mode
/// differentiation: one forward pass keeping only what the vector-Jacobian
/// products need, then one backward pass per loss head (the first-order terms
/// g_W . dW + g_A . dA of Taylor-IP sensitivity, docs/DESIGN.md method 2).
///
/// The loss reads the graph's first output. Constant subgraphs are folded per
/// input shapes (`SpecializedGraph`); weights named in `wrt` stay variables.
/// Values of integer or boolean type carry no gradient, and values that do not
/// depend on a `wrt` value or do not reach the loss get none computed.
public final class GradientComputation: @unchecked Sendable {
    /// The graph being differentiated.
    public let graph: Graph
    /// Threads for the forward and backward kernels.
    public let options: SessionOptions
    /// The graph output the loss reads.
    public let lossOutput: String
    private let operators: [Operator]
    private let context: ExecutionContext
    private let kernels = GradientKernels()
    private var plans: [PlanKey: GradientPlan] = [:]
    private let lock = NSLock()

    private struct PlanKey: Hashable {
        var shapes: [[Int]]
        var wrt: [String]
    }

    /// Validates the graph: every node on a differentiable path from a float
    /// input or weight to the loss output has a vector-Jacobian product (else
    /// `MPQError.unsupportedNodes` naming op type, node and opset), and such a
    /// path exists. Shapes the model leaves symbolic are taken as 1 here.
    public init(graph: Graph, options: SessionOptions = SessionOptions()) throws {
        self.graph = graph
        self.options = options
        let operators = try OperatorRegistry.makeOperators(for: graph)
        guard let output = graph.outputs.first else { throw MPQError.invalidModel("the graph has no outputs") }
        self.operators = operators
        lossOutput = output.name
        omp_set_num_threads(Int32(options.threads))
        context = ExecutionContext(threads: options.threads)

        var specs: [String: ValueSpec] = [:]
        for input in graph.inputs {
            let shape = input.shape?.map { $0.value ?? 1 }
            specs[input.name] = ValueSpec(dtype: input.dtype, shape: shape)
        }
        let specialized = try SpecializedGraph(graph: graph, operators: operators, inputs: specs, context: context)
        var sources = Set(graph.inputs.filter { $0.dtype == .float32 }.map(\.name))
        for (name, tensor) in specialized.constants where graph.initializers[name] != nil && tensor.dtype == .float32 && tensor.rank > 0 {
            sources.insert(name)
        }
        _ = try GradientPlan(specialized, graph: graph, lossOutput: lossOutput, sources: sources,
                             describeSources: "the model's float inputs and weights")
    }

    /// Runs the forward pass on `feeds` (every graph input), evaluates `loss`
    /// on the first output, and back-propagates each loss head to the values
    /// named in `wrt` (graph inputs, computed values or initializers).
    ///
    /// - Parameters:
    ///   - feeds: a value for every graph input.
    ///   - loss: the loss read from the first graph output.
    ///   - wrt: the values whose gradients are returned.
    ///   - observe: called with the forward value of every name in
    ///     `wrt` that is an activation (not an initializer), as it is computed.
    public func run(_ feeds: [String: Tensor], loss: any DifferentiableLoss, wrt: Set<String>,
                    observe: ((_ name: String, _ value: Tensor) throws -> Void)? = nil) throws -> GradientResult {
        try validate(feeds)
        guard !wrt.isEmpty else { throw MPQError.invalidInput("no values to differentiate with respect to (wrt is empty)") }
        let weights = wrt.filter { graph.initializers[$0] != nil }.sorted()
        let key = PlanKey(shapes: graph.inputs.map { feeds[$0.name]!.shape }, wrt: wrt.sorted())
        let plan = try self.plan(for: key, feeds: feeds, weights: weights, wrt: wrt)
        var inputs = feeds
        for name in weights { inputs[name] = graph.initializers[name] }
        return try plan.run(inputs, loss: loss, wrt: wrt, initializers: Set(weights), observe: observe,
                            context: context, kernels: kernels)
    }

    private func plan(for key: PlanKey, feeds: [String: Tensor], weights: [String], wrt: Set<String>) throws -> GradientPlan {
        lock.lock(); defer { lock.unlock() }
        if let plan = plans[key] { return plan }
        // Weights to differentiate become inputs so that folding keeps them variable.
        var variable = graph
        for name in weights {
            guard let tensor = variable.initializers.removeValue(forKey: name) else { continue }
            variable.inputs.append(ValueInfo(name: name, dtype: tensor.dtype, shape: tensor.shape.map { .fixed($0) }))
        }
        var specs: [String: ValueSpec] = [:]
        for input in graph.inputs { specs[input.name] = ValueSpec(dtype: input.dtype, shape: feeds[input.name]!.shape) }
        for name in weights {
            let tensor = graph.initializers[name]!
            specs[name] = ValueSpec(dtype: tensor.dtype, shape: tensor.shape)
        }
        let specialized = try SpecializedGraph(graph: variable, operators: operators, inputs: specs, context: context)
        for name in wrt.sorted() {
            guard let spec = specialized.specs[name] else {
                throw MPQError.invalidInput("the model has no value named '\(name)' to differentiate with respect to")
            }
            guard spec.dtype == .float32 else {
                throw MPQError.typeMismatch("value '\(name)' is \(spec.dtype): gradients exist only for float32 values")
            }
        }
        let described = wrt.count <= 3 ? wrt.sorted().map { "'\($0)'" }.joined(separator: ", ") : "\(wrt.count) requested values"
        let plan = try GradientPlan(specialized, graph: variable, lossOutput: lossOutput, sources: wrt,
                                    describeSources: described)
        plans[key] = plan
        return plan
    }

    private func validate(_ feeds: [String: Tensor]) throws {
        let declared = Set(graph.inputs.map(\.name))
        if let extra = feeds.keys.sorted().first(where: { !declared.contains($0) }) {
            throw MPQError.invalidInput("the model has no input named '\(extra)' (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))")
        }
        for input in graph.inputs {
            guard let tensor = feeds[input.name] else { throw MPQError.invalidInput("missing model input '\(input.name)'") }
            guard tensor.dtype == input.dtype else {
                throw MPQError.typeMismatch("input '\(input.name)' must be \(input.dtype), got \(tensor.dtype)")
            }
        }
    }
}

/// A schedule for one set of input shapes and `wrt` values: the forward
/// nodes, the nodes on differentiable paths with their rules, and which
/// forward values the backward pass keeps (and until when).
final class GradientPlan {
    private struct BackwardStep {
        let node: Node
        let rule: VectorJacobianProduct
        let wanted: [Bool]
        /// Run-time values the rule reads (released after the last head ran this step).
        let saved: [String]
    }

    private let specialized: SpecializedGraph
    private let graphInputs: [String]
    private let graphOutputs: [String]
    private let lossOutput: String
    private let opset: Int
    private let backward: [BackwardStep]
    /// Forward step index after which each value may be released (absent: kept).
    private let releaseAfter: [[String]]
    private let savedUses: [String: Int]
    private let runLock = NSLock()

    init(_ specialized: SpecializedGraph, graph: Graph, lossOutput: String, sources: Set<String>,
         describeSources: String) throws {
        self.specialized = specialized
        self.lossOutput = lossOutput
        opset = graph.opset
        graphInputs = graph.inputs.map(\.name)
        graphOutputs = graph.outputs.map(\.name)
        let specs = specialized.specs
        guard specs[lossOutput]?.dtype == .float32 else {
            throw MPQError.invalidModel("output '\(lossOutput)' is \(specs[lossOutput].map { "\($0.dtype)" } ?? "never computed"), so no loss can be differentiated through it")
        }
        func isFloat(_ name: String) -> Bool { specs[name]?.dtype == .float32 }
        func differentiable(_ node: Node) -> [Int] {
            GradientRegistry.rules[node.opType]?.differentiableInputs(node) ?? Array(node.inputs.indices)
        }
        // Values that depend on a source through float values.
        var active = Set(sources.filter(isFloat))
        for (node, _) in specialized.nodes {
            let fed = differentiable(node).contains { $0 < node.inputs.count && active.contains(node.inputs[$0]) }
            if fed { active.formUnion(node.outputs.filter(isFloat)) }
        }
        guard active.contains(lossOutput) else {
            throw MPQError.invalidInput("no differentiable path from \(describeSources) to output '\(lossOutput)'")
        }
        // Nodes on a path from an active value to the loss output, last first.
        var reaches: Set<String> = [lossOutput]
        var steps: [BackwardStep] = []
        var missing: [UnsupportedNode] = []
        var uses: [String: Int] = [:]
        for (node, _) in specialized.nodes.reversed() {
            guard node.outputs.contains(where: { reaches.contains($0) && active.contains($0) }) else { continue }
            let inputs = differentiable(node).filter { $0 < node.inputs.count && active.contains(node.inputs[$0]) }
            guard !inputs.isEmpty else { continue }
            for index in inputs { reaches.insert(node.inputs[index]) }
            guard node.domain.isEmpty || node.domain == "ai.onnx", let rule = GradientRegistry.rules[node.opType] else {
                missing.append(UnsupportedNode(opType: node.opType, nodeName: node.name, opset: graph.opset,
                                               reason: "no vector-Jacobian product (gradient) for this op type"))
                continue
            }
            if let reason = try rule.unsupportedReason(node) {
                missing.append(UnsupportedNode(opType: node.opType, nodeName: node.name, opset: graph.opset, reason: reason))
                continue
            }
            let wanted = node.inputs.indices.map { inputs.contains($0) }
            var saved: [String] = []
            for (index, name) in node.inputs.enumerated() where rule.savesInput(index) && !name.isEmpty
                && specialized.constants[name] == nil && !saved.contains(name) {
                saved.append(name)
            }
            if rule.savesOutputs {
                for name in node.outputs where !name.isEmpty && !saved.contains(name) { saved.append(name) }
            }
            for name in saved { uses[name, default: 0] += 1 }
            steps.append(BackwardStep(node: node, rule: rule, wanted: wanted, saved: saved))
        }
        guard missing.isEmpty else { throw MPQError.unsupportedNodes(missing.reversed()) }
        backward = steps
        savedUses = uses

        var lastUse: [String: Int] = [:]
        for (index, entry) in specialized.nodes.enumerated() {
            for name in entry.node.inputs + entry.node.outputs where !name.isEmpty { lastUse[name] = index }
        }
        let pinned = Set(graphOutputs).union(uses.keys)
        var release = [[String]](repeating: [], count: specialized.nodes.count)
        for (name, index) in lastUse where !pinned.contains(name) && specialized.constants[name] == nil {
            release[index].append(name)
        }
        releaseAfter = release
    }

    func run(_ feeds: [String: Tensor], loss: any DifferentiableLoss, wrt: Set<String>, initializers: Set<String>,
             observe: ((String, Tensor) throws -> Void)?, context: ExecutionContext,
             kernels: GradientKernels) throws -> GradientResult {
        runLock.lock(); defer { runLock.unlock() }
        var values = feeds
        var shapes: [String: [Int]] = feeds.mapValues(\.shape)
        let constants = specialized.constants
        for (name, tensor) in constants { shapes[name] = tensor.shape }
        if let observe {
            for name in wrt.sorted() where !initializers.contains(name) {
                if let value = feeds[name] ?? constants[name] { try observe(name, value) }
            }
        }
        // Forward.
        for (index, entry) in specialized.nodes.enumerated() {
            let node = entry.node
            let arguments: [Tensor?] = try node.inputs.map { name in
                guard !name.isEmpty else { return nil }
                guard let value = values[name] ?? constants[name] else {
                    throw MPQError.invalidModel("\(node.opType) node '\(node.name)' reads '\(name)', which is not computed")
                }
                return try value.rowMajor()
            }
            let results: [Tensor]
            do {
                results = try entry.op.run(arguments, context: context)
            } catch let error as MPQError {
                throw error.located(at: node)
            }
            for (name, result) in Swift.zip(node.outputs, results) where !name.isEmpty {
                let value = try result.rowMajor()
                values[name] = value
                shapes[name] = value.shape
                if wrt.contains(name), let observe { try observe(name, value) }
            }
            for name in releaseAfter[index] { values[name] = nil }
        }
        var outputs: [String: Tensor] = [:]
        for name in graphOutputs {
            guard let value = values[name] ?? constants[name] else {
                throw MPQError.invalidModel("graph output '\(name)' was never computed")
            }
            outputs[name] = value
        }
        guard let lossInput = outputs[lossOutput] else { throw MPQError.invalidModel("output '\(lossOutput)' was never computed") }
        let evaluation = try loss.evaluate(output: lossInput, feeds: feeds)

        // Backward, once per head; saved values go after the last head used them.
        var remainingUses = savedUses
        var headGradients: [[String: Tensor]] = []
        for (head, seed) in evaluation.seeds.enumerated() {
            let lastHead = head == evaluation.seeds.count - 1
            var gradients: [String: Tensor] = [lossOutput: seed]
            for step in backward {
                let node = step.node
                let outputGradients = node.outputs.map { $0.isEmpty ? nil : gradients[$0] }
                if outputGradients.contains(where: { $0 != nil }) {
                    let arguments = GradientArguments(
                        node: node, opset: opset,
                        inputs: node.inputs.map { name in
                            name.isEmpty ? nil : constants[name] ?? (step.saved.contains(name) ? values[name] : nil)
                        },
                        inputShapes: node.inputs.map { $0.isEmpty ? nil : shapes[$0] },
                        outputs: node.outputs.map { step.saved.contains($0) ? values[$0] : nil },
                        outputShapes: node.outputs.map { $0.isEmpty ? nil : shapes[$0] },
                        outputGradients: outputGradients, wanted: step.wanted, context: context, kernels: kernels)
                    let inputGradients: [Tensor?]
                    do {
                        inputGradients = try step.rule.apply(arguments)
                    } catch let error as MPQError {
                        throw error.located(at: node)
                    }
                    for (index, name) in node.inputs.enumerated() where step.wanted[index] {
                        guard index < inputGradients.count, let gradient = inputGradients[index] else { continue }
                        guard gradient.shape == shapes[name] else {
                            throw MPQError.shapeMismatch("\(node.opType) node '\(node.name)': gradient of '\(name)' has shape \(gradient.shape), the value \(shapes[name] ?? [])")
                        }
                        gradients[name] = gradients[name].map { GradientMath.sum($0, gradient) } ?? gradient
                    }
                }
                // Every consumer of these outputs ran already: their gradients are complete.
                for name in node.outputs where !wrt.contains(name) { gradients[name] = nil }
                if lastHead {
                    for name in step.saved {
                        remainingUses[name, default: 1] -= 1
                        if remainingUses[name] == 0 && !graphOutputs.contains(name) { values[name] = nil }
                    }
                }
            }
            var requested: [String: Tensor] = [:]
            for name in wrt {
                requested[name] = gradients[name] ?? GradientMath.zeros(shapes[name] ?? specialized.specs[name]?.shape ?? [])
            }
            headGradients.append(requested)
        }
        return GradientResult(headLosses: evaluation.headLosses, outputs: outputs, headGradients: headGradients)
    }
}
