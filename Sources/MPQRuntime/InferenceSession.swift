import CDNNL
import Foundation
import MPQGraph

/// Options for running a model.
public struct SessionOptions: Sendable {
    /// Worker threads for oneDNN and Swift kernels (default: all cores).
    public var threads: Int

    /// Options with `threads` workers; nil uses every active core.
    public init(threads: Int? = nil) {
        self.threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
    }
}

/// Called with each computed value's name and tensor; returning a tensor
/// replaces the value for all its consumers (quantizers and caches hook here).
public typealias ValueHook = (_ name: String, _ value: Tensor) throws -> Tensor?

/// Runs an ONNX graph on the CPU.
///
/// Creating a session validates every node (all unsupported ops and attribute
/// values are reported at once). Each distinct set of input shapes gets an
/// execution plan: constants folded, a schedule, and the point after which
/// each value's buffer is released for reuse.
public final class InferenceSession: @unchecked Sendable {
    /// The graph the session runs.
    public let graph: Graph
    /// Options the session was created with.
    public let options: SessionOptions
    private let operators: [Operator]
    private let context: ExecutionContext
    private var plans: [PlanKey: ExecutionPlan] = [:]

    private struct PlanKey: Hashable {
        var shapes: [[Int]]
        var fused: Bool
    }
    private let lock = NSLock()

    /// A session for `model`'s graph (see `init(graph:options:)`).
    public convenience init(model: Model, options: SessionOptions = SessionOptions()) throws {
        try self.init(graph: model.graph, options: options)
    }

    /// Builds an operator for every node; throws `MPQError.unsupportedNodes` listing
    /// all nodes (and attribute values) the runtime cannot execute.
    public init(graph: Graph, options: SessionOptions = SessionOptions()) throws {
        self.graph = graph
        self.options = options
        let operators = try OperatorRegistry.makeOperators(for: graph)
        self.operators = operators
        omp_set_num_threads(Int32(clamping: max(1, options.threads)))
        context = ExecutionContext(threads: options.threads)
    }

    /// Runs the model. `feeds` maps every graph input name to a tensor; a
    /// leading dimension the model declares as 1 may be any batch size.
    public func run(_ feeds: [String: Tensor], hook: ValueHook? = nil) throws -> [String: Tensor] {
        try run(feeds, hook: hook, stepTime: nil)
    }

    /// Runs the model as `run(_:)` does (the same fused plan) and reports each executed step: the
    /// name of its node (a fused node keeps its producer's name) and its wall-clock milliseconds,
    /// input reorders included, in execution order. Latency models attribute the steps to sub-graphs
    /// so that each is timed inside the whole model, with the caches the model leaves it.
    public func run(_ feeds: [String: Tensor], stepTime: @escaping (_ node: String, _ milliseconds: Double) -> Void) throws -> [String: Tensor] {
        try run(feeds, hook: nil, stepTime: stepTime)
    }

    private func run(_ feeds: [String: Tensor], hook: ValueHook?, stepTime: ((String, Double) -> Void)?) throws -> [String: Tensor] {
        let inputs = try validate(feeds)
        let key = graph.inputs.map { inputs[$0.name]!.shape }
        do {
            return try plan(for: PlanKey(shapes: key, fused: hook == nil), feeds: inputs).run(inputs, hook: hook, stepTime: stepTime)
        } catch MPQError.shapeMismatch(let message) {
            // Graphs exported at batch 1 may hard-code it (e.g. in Reshape
            // constants): run such batches one sample at a time.
            guard let batch = try batchSplittable(inputs), batch > 1 else {
                throw MPQError.shapeMismatch(message)
            }
            var parts: [[String: Tensor]] = []
            for index in 0..<batch {
                let sample = inputs.mapValues { $0.sample(index) }
                let shapes = graph.inputs.map { sample[$0.name]!.shape }
                parts.append(try plan(for: PlanKey(shapes: shapes, fused: hook == nil), feeds: sample)
                    .run(sample, hook: hook, stepTime: stepTime))
            }
            return try graph.outputs.reduce(into: [:]) { result, output in
                result[output.name] = try Tensor.concatenate(parts.map { $0[output.name]! }, axis: 0)
            }
        }
    }

    /// Types and shapes of every value for these input shapes (with folding).
    public func specialize(inputShapes: [String: [Int]]) throws -> SpecializedGraph {
        var specs: [String: ValueSpec] = [:]
        for input in graph.inputs {
            guard let shape = inputShapes[input.name] else {
                throw MPQError.invalidInput("no shape given for model input '\(input.name)'")
            }
            specs[input.name] = ValueSpec(dtype: input.dtype, shape: shape)
        }
        return try SpecializedGraph(graph: graph, operators: operators, inputs: specs,
                                    context: ExecutionContext(threads: options.threads))
    }

    private func plan(for key: PlanKey, feeds: [String: Tensor]) throws -> ExecutionPlan {
        lock.lock(); defer { lock.unlock() }
        if let plan = plans[key] { return plan }
        var specialized = try specialize(inputShapes: feeds.mapValues(\.shape))
        if key.fused {
            specialized = try OperatorFusion.fuse(specialized, outputs: Set(graph.outputs.map(\.name)))
        }
        let plan = ExecutionPlan(specialized, graph: graph, context: context)
        plans[key] = plan
        return plan
    }

    private func validate(_ feeds: [String: Tensor]) throws -> [String: Tensor] {
        let declared = Set(graph.inputs.map(\.name))
        if let extra = feeds.keys.sorted().first(where: { !declared.contains($0) }) {
            throw MPQError.invalidInput("the model has no input named '\(extra)' (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))")
        }
        for input in graph.inputs {
            guard let tensor = feeds[input.name] else {
                throw MPQError.invalidInput("missing model input '\(input.name)'")
            }
            guard tensor.dtype == input.dtype else {
                throw MPQError.typeMismatch("input '\(input.name)' must be \(input.dtype), got \(tensor.dtype)")
            }
            guard let shape = input.shape else { continue }
            let matches = shape.count == tensor.rank && zip(shape, tensor.shape).enumerated().allSatisfy { axis, pair in
                guard case .fixed(let n) = pair.0 else { return true }
                return n == pair.1 || (axis == 0 && n == 1)
            }
            guard matches else {
                throw MPQError.shapeMismatch("input '\(input.name)' has shape \(tensor.shape), the model declares [\(shape.map(\.description).joined(separator: ", "))]")
            }
        }
        return feeds
    }

    /// The common batch size when every input's leading dim may be split.
    private func batchSplittable(_ feeds: [String: Tensor]) throws -> Int? {
        let batches = Set(feeds.values.map { $0.shape.first ?? 1 })
        return batches.count == 1 ? batches.first : nil
    }
}

/// A schedule of nodes over numbered value slots.
final class ExecutionPlan {
    private struct Step {
        let node: Node
        let op: Operator
        let inputs: [Int?]
        let outputs: [Int?]
        let release: [Int]
        /// Some output's shape depends on run-time values: its size is checked
        /// (shape inference on the actual inputs) before the kernel allocates it.
        let checksSizes: Bool
    }

    private let steps: [Step]
    private let slotCount: Int
    private let constants: [(Int, Tensor)]
    private let inputSlots: [(String, Int)]
    private let outputSlots: [(String, Int)]
    private let slotNames: [String]
    private let context: ExecutionContext
    private let runLock = NSLock()

    init(_ specialized: SpecializedGraph, graph: Graph, context: ExecutionContext) {
        self.context = context
        var slotOf: [String: Int] = [:]
        var names: [String] = []
        func slot(_ name: String) -> Int {
            if let s = slotOf[name] { return s }
            slotOf[name] = names.count
            names.append(name)
            return names.count - 1
        }
        constants = specialized.constants.map { (slot($0.key), $0.value) }
        inputSlots = graph.inputs.map { ($0.name, slot($0.name)) }
        let nodeSlots = specialized.nodes.map { entry in
            (entry.node.inputs.map { $0.isEmpty ? nil : slot($0) },
             entry.node.outputs.map { $0.isEmpty ? nil : slot($0) })
        }
        outputSlots = graph.outputs.map { ($0.name, slot($0.name)) }
        // Last step reading each slot; graph outputs and constants stay alive.
        var lastUse: [Int: Int] = [:]
        for (index, (ins, outs)) in nodeSlots.enumerated() {
            for s in ins.compactMap({ $0 }) + outs.compactMap({ $0 }) { lastUse[s] = index }
        }
        let pinned = Set(outputSlots.map(\.1)).union(constants.map(\.0))
        var releaseAt = [[Int]](repeating: [], count: nodeSlots.count)
        for (s, index) in lastUse where !pinned.contains(s) { releaseAt[index].append(s) }
        for entry in specialized.nodes {
            entry.op.bindConstants(entry.node.inputs.map { specialized.constants[$0] })
        }
        steps = zip(specialized.nodes, nodeSlots).enumerated().map { index, pair in
            Step(node: pair.0.node, op: pair.0.op, inputs: pair.1.0, outputs: pair.1.1, release: releaseAt[index],
                 checksSizes: pair.0.node.outputs.contains { !$0.isEmpty && specialized.specs[$0]?.shape == nil })
        }
        slotCount = names.count
        slotNames = names
    }

    /// Runs the schedule; `stepTime` receives each step's node name and milliseconds.
    func run(_ feeds: [String: Tensor], hook: ValueHook?, stepTime: ((String, Double) -> Void)? = nil) throws -> [String: Tensor] {
        // Kernels keep per-primitive argument handles: one run of a plan at a time.
        runLock.lock(); defer { runLock.unlock() }
        var values = [Tensor?](repeating: nil, count: slotCount)
        for (s, tensor) in constants { values[s] = tensor }
        for (name, s) in inputSlots { values[s] = feeds[name] }
        for step in steps {
            let start = stepTime == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            var args = step.inputs.map { $0.flatMap { values[$0] } }
            if !step.op.acceptsOpaqueLayouts {
                args = try args.map { try $0?.rowMajor() }
            }
            let results: [Tensor]
            do {
                if step.checksSizes, let predicted = try? step.op.inferOutputs(args.map { $0.map(ValueSpec.init) }) {
                    for (name, spec) in zip(step.node.outputs, predicted) {
                        guard let shape = spec.shape else { continue }
                        try SizeLimits.checkedCount(shape, dtype: spec.dtype,
                                                    what: "output '\(name)' of \(step.node.opType) node '\(step.node.name)'")
                    }
                }
                results = try step.op.run(args, context: context)
            } catch let error as MPQError {
                throw error.located(at: step.node)
            }
            for (s, result) in zip(step.outputs, results) {
                guard let s else { continue }
                if let hook, let replaced = try hook(slotNames[s], try result.rowMajor()) {
                    values[s] = replaced
                } else {
                    values[s] = result
                }
            }
            for s in step.release { values[s] = nil }
            stepTime?(step.node.name, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        var outputs: [String: Tensor] = [:]
        for (name, s) in outputSlots {
            guard let value = values[s] else {
                throw MPQError.invalidModel("graph output '\(name)' was never computed")
            }
            outputs[name] = try value.rowMajor()
        }
        return outputs
    }
}
