import ArgumentParser
import Foundation
import MPQ

/// Random float inputs, token ids in [0, 1000), masks of ones, type ids of zeros.
func generatedInputs(_ graph: Graph, batch: Int, dimensions: [String]) throws -> [String: Tensor] {
    let shapes = ModelSummary.inputShapes(graph, dimensions: try parseDimensions(dimensions, graph: graph))
    var rng = SystemRandomNumberGenerator()
    var feeds: [String: Tensor] = [:]
    var sized: [String: [Int]] = [:]
    for input in graph.inputs {
        var shape = shapes[input.name] ?? []
        if !shape.isEmpty { shape[0] = batch }
        do {
            try SizeLimits.checkedCount(shape, dtype: input.dtype, what: "generated input '\(input.name)'")
        } catch MPQError.limitExceeded(let message) {
            throw ValidationError("--batch \(batch)\(dimensions.isEmpty ? "" : " and --dim " + dimensions.joined(separator: " ")): \(message)")
        }
        sized[input.name] = shape
    }
    for input in graph.inputs {
        let shape = sized[input.name] ?? []
        let count = shape.reduce(1, *)
        let lower = input.name.lowercased()
        let values: [Int64] = lower.contains("mask") ? Array(repeating: 1, count: count)
            : lower.contains("type") ? Array(repeating: 0, count: count)
            : (0..<count).map { _ in Int64.random(in: 0..<1000, using: &rng) }
        switch input.dtype {
        case .float32:
            feeds[input.name] = Tensor(shape: shape, scalars: (0..<count).map { _ in Float.random(in: -1...1, using: &rng) })
        case .int64:
            feeds[input.name] = Tensor(shape: shape, scalars: values)
        default:
            feeds[input.name] = Tensor(shape: shape, scalars: values).converted(to: input.dtype)
        }
    }
    return feeds
}
