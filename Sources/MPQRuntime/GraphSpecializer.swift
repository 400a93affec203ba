import MPQGraph

/// A graph bound to concrete input shapes: constants folded, every value's
/// type (and shape where it does not depend on run-time data) inferred.
///
/// Folding runs the operators themselves on constant inputs, so the
/// Shape -> Gather -> Concat -> Reshape chains of transformer exports collapse
/// into constants once the input shapes are known.
public struct SpecializedGraph {
    /// Nodes left to execute, in order, with their operators.
    public var nodes: [(node: Node, op: Operator)]
    /// Constants the remaining nodes read (initializers and folded values).
    public var constants: [String: Tensor]
    /// Type and shape of every value.
    public var specs: [String: ValueSpec]

    /// Specializes `graph` for inputs of the given specs.
    ///
    /// - Parameters:
    ///   - graph: the graph to specialize.
    ///   - operators: one operator per node of `graph`, in the same order.
    ///   - inputs: the type and shape (and value, for constants) of every graph input.
    ///   - context: the execution context constant folding runs in.
    public init(graph: Graph, operators: [Operator], inputs: [String: ValueSpec],
                context: ExecutionContext) throws {
        var specs = inputs
        for (name, spec) in inputs {
            if let shape = spec.shape {
                try SizeLimits.checkedCount(shape, dtype: spec.dtype, what: "model input '\(name)'")
            }
        }
        for (name, tensor) in graph.initializers { specs[name] = ValueSpec(tensor) }
        var remaining: [(node: Node, op: Operator)] = []
        /// Every output shape is checked (overflow, memory) before anything of that size is allocated.
        func checkSizes(_ outputs: [ValueSpec], of node: Node) throws {
            for (index, spec) in outputs.enumerated() {
                guard let shape = spec.shape else { continue }
                let name = index < node.outputs.count ? node.outputs[index] : "#\(index)"
                try SizeLimits.checkedCount(shape, dtype: spec.dtype,
                                            what: "output '\(name)' of \(node.opType) node '\(node.name)'")
            }
        }
        for (node, op) in zip(graph.nodes, operators) {
            let inputSpecs: [ValueSpec?] = node.inputs.map { $0.isEmpty ? nil : specs[$0] }
            try Self.checkAxis(node, inputRank: inputSpecs.first??.shape?.count)
            let outputs: [ValueSpec]
            do {
                if inputSpecs.allSatisfy({ $0 == nil || $0?.constant != nil }) {
                    // Folding runs the kernel: check the sizes it would allocate first
                    // (where shape inference can tell them without running it).
                    if let predicted = try? op.inferOutputs(inputSpecs) { try checkSizes(predicted, of: node) }
                    let values = try op.run(inputSpecs.map { $0?.constant }, context: context)
                    outputs = values.map(ValueSpec.init)
                } else {
                    outputs = try op.inferOutputs(inputSpecs)
                }
            } catch let error as MPQError {
                throw error.located(at: node)
            }
            try checkSizes(outputs, of: node)
            guard outputs.count >= node.outputs.filter({ !$0.isEmpty }).count else {
                throw MPQError.invalidModel("\(node.opType) node '\(node.name)' declares \(node.outputs.count) outputs, the operator yields \(outputs.count)")
            }
            for (name, spec) in zip(node.outputs, outputs) where !name.isEmpty { specs[name] = spec }
            let folded = zip(node.outputs, outputs).allSatisfy { $0.0.isEmpty || $0.1.constant != nil }
            if !folded { remaining.append((node, op)) }
        }

        // Drop nodes whose outputs nothing needs; keep only the constants still read.
        var needed = Set(graph.outputs.map(\.name))
        var live: [(node: Node, op: Operator)] = []
        for entry in remaining.reversed() where entry.node.outputs.contains(where: needed.contains) {
            live.append(entry)
            needed.formUnion(entry.node.inputs)
        }
        nodes = live.reversed()
        var constants: [String: Tensor] = [:]
        for name in needed { if let c = specs[name]?.constant { constants[name] = c } }
        self.constants = constants
        self.specs = specs
    }

    /// ONNX ops whose `axis` attribute indexes the axes of their first input.
    static let opsWithInputAxis: Set<String> = [
        "Concat", "Gather", "GatherElements", "ScatterElements", "Split", "Softmax", "LogSoftmax", "Hardmax",
        "ArgMax", "ArgMin", "Flatten", "LayerNormalization", "Compress", "TopK", "OneHot",
    ]

    /// Checks a node's `axis` attribute against the rank of its first input before it
    /// is planned or run: [-r, r-1] for most ops, [-r, r] for Flatten, [-r-1, r] for
    /// OneHot (whose axis counts in the output). ONNX ops only; scalars are left to the op.
    static func checkAxis(_ node: Node, inputRank: Int?) throws {
        guard node.domain.isEmpty || node.domain == "ai.onnx", opsWithInputAxis.contains(node.opType),
              let rank = inputRank, rank > 0, case .int(let axis)? = node.attributes["axis"] else { return }
        let valid: ClosedRange<Int>
        switch node.opType {
        case "Flatten": valid = -rank...rank
        case "OneHot": valid = -(rank + 1)...rank
        default: valid = -rank...(rank - 1)
        }
        guard valid.contains(axis) else {
            throw MPQError.invalidModel("\(node.opType) node '\(node.name)': axis \(axis) is out of range for its rank-\(rank) input (valid: \(valid.lowerBound)...\(valid.upperBound))")
        }
    }

    /// Largest total size of values alive at once when nodes run in order and
    /// each value is freed after its last use (graph outputs stay alive);
    /// nil when some shape is unknown. Constants are not counted.
    public func peakLiveBytes(outputs: [String], inputs: [String]) -> Int? {
        var lastUse: [String: Int] = [:]
        for (index, entry) in nodes.enumerated() {
            for name in entry.node.inputs + entry.node.outputs where !name.isEmpty { lastUse[name] = index }
        }
        let pinned = Set(outputs)
        func bytes(_ name: String) -> Int? {
            guard let spec = specs[name], let shape = spec.shape else { return nil }
            return shape.reduce(1, *) * spec.dtype.byteSize
        }
        var live = 0
        for name in inputs where constants[name] == nil {
            guard let b = bytes(name) else { return nil }
            live += b
        }
        var peak = live
        for (index, entry) in nodes.enumerated() {
            for name in entry.node.outputs where !name.isEmpty {
                guard let b = bytes(name) else { return nil }
                live += b
            }
            peak = max(peak, live)
            let released = Set(entry.node.inputs + entry.node.outputs).filter {
                !$0.isEmpty && lastUse[$0] == index && !pinned.contains($0) && constants[$0] == nil
            }
            for name in released { live -= bytes(name) ?? 0 }
        }
        return peak
    }
}
