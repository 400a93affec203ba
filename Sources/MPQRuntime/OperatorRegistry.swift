import Foundation
import MPQGraph

/// The operators mpq executes: the ONNX operators of the default domain, and
/// the node domains and plan rewrites higher layers register (MPQQuantization
/// registers its "mpq" domain of quantization operators and int8 chaining).
///
/// The registry is the runtime's extension point, so the runtime never names
/// a higher layer's types (docs/DESIGN.md, "Architecture").
public enum OperatorRegistry {
    static let factories: [String: OperatorFactory] = {
        var all: [String: OperatorFactory] = [:]
        for family in [
            elementwiseOperators, shapeOperators, reductionOperators, resizeOperators,
            convolutionOperators, matrixOperators, poolingOperators, normalizationOperators,
            rmsNormalizationOperators, recurrentOperators,
        ] {
            all.merge(family) { first, _ in first }
        }
        return all
    }()

    private static let lock = NSLock()
    nonisolated(unsafe) private static var domains: [String: [String: OperatorFactory]] = [:]
    nonisolated(unsafe) private static var rewrites: [String: PlanRewrite] = [:]

    /// Registers the operators of node domain `domain`, and optionally a
    /// rewrite of fused plans that their operators need; registering a domain
    /// again replaces it. The default ONNX domain ("" or "ai.onnx") is the
    /// runtime's own and cannot be registered.
    public static func register(domain: String, factories: [String: OperatorFactory], planRewrite: PlanRewrite? = nil) {
        lock.lock()
        defer { lock.unlock() }
        domains[domain] = factories
        rewrites[domain] = planRewrite
    }

    /// The registered plan rewrites, in domain-name order.
    static var planRewrites: [PlanRewrite] {
        lock.lock()
        defer { lock.unlock() }
        return rewrites.sorted { $0.key < $1.key }.map(\.value)
    }

    /// Sorted names of every supported op type.
    public static var supportedOpTypes: [String] { factories.keys.sorted() }

    /// Operators for every node of `graph`, in order; throws once, listing every
    /// unsupported node (op type, name, opset, reason).
    static func makeOperators(for graph: Graph) throws -> [Operator] {
        var operators: [Operator] = []
        var unsupportedNodes: [UnsupportedNode] = []
        for node in graph.nodes {
            do {
                operators.append(try makeOperator(for: node, opset: graph.opset))
            } catch MPQError.unsupportedNodes(let nodes) {
                unsupportedNodes += nodes
            }
        }
        guard unsupportedNodes.isEmpty else { throw MPQError.unsupportedNodes(unsupportedNodes) }
        return operators
    }

    /// Creates the operator for `node`, or throws naming the op, node and opset.
    public static func makeOperator(for node: Node, opset: Int) throws -> Operator {
        let family: [String: OperatorFactory]
        switch node.domain {
        case "", "ai.onnx": family = factories
        default:
            lock.lock()
            family = domains[node.domain] ?? [:]
            lock.unlock()
        }
        guard let factory = family[node.opType] else {
            let domain = node.domain.isEmpty ? "" : " in domain '\(node.domain)'"
            throw MPQError.unsupportedNodes([UnsupportedNode(
                opType: node.opType, nodeName: node.name, opset: opset,
                reason: "no kernel for this op type\(domain)")])
        }
        do {
            return try factory(node, opset)
        } catch MPQError.invalidAttribute(_, _, let message) {
            throw MPQError.unsupportedNodes([UnsupportedNode(
                opType: node.opType, nodeName: node.name, opset: opset, reason: message)])
        }
    }
}
