import ArgumentParser
import Foundation
import MPQ

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a model's inputs, outputs, operators, parameters and MACs per layer.")

    @Argument(help: "ONNX model file.")
    var model: String

    @Option(name: .customLong("dim"), help: ArgumentHelp("Bind a symbolic input dim (default: 1 for the leading axis, 128 elsewhere).", valueName: "NAME=N"))
    var dimensions: [String] = []

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "List the quantizer groups (quantizers that take one precision together) instead.")
    var groups = false

    @Option(name: .customLong("speed-table"), help: ArgumentHelp("GGUF: also predict llama.cpp's milliseconds per token from a per-type speed table (bench/ggml_type_speed.sh).", valueName: "FILE"))
    var speedTable: String?

    func validate() throws {
        _ = try parseDimensions(dimensions)
    }

    func run() throws {
        if try inspectGGUF() { return }
        let loaded = try Model(contentsOf: model)
        if groups {
            let placement = QuantizerPlacement(graph: loaded.graph)
            let found = try QuantizerGroups(graph: loaded.graph, placement: placement)
            print(json ? try groupsJSON(found) : groupsText(found))
            return
        }
        let summary = try ModelSummary(graph: loaded.graph, dimensions: try parseDimensions(dimensions, graph: loaded.graph))
        if json {
            print(try jsonText(summary, model: loaded))
        } else {
            print(text(summary, model: loaded))
        }
    }

    private func groupsText(_ found: QuantizerGroups) -> String {
        var lines = ["\(found.groups.count) quantizer groups (\(found.groups.reduce(0) { $0 + $1.sites.count }) quantizers):"]
        for (index, group) in found.groups.enumerated() {
            lines.append("  \(index) \(group.name) [\(group.opTypes.joined(separator: ", "))]")
            if !group.activations.isEmpty { lines.append("      activations: " + group.activations.map(\.value).joined(separator: ", ")) }
            if !group.weights.isEmpty { lines.append("      weights: " + group.weights.map(\.value).joined(separator: ", ")) }
        }
        return lines.joined(separator: "\n")
    }

    private func groupsJSON(_ found: QuantizerGroups) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: ["model": model, "groups": found.jsonObject()] as [String: Any],
                                              options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    private func shapeText(_ shape: [ShapeDimension]?) -> String {
        guard let shape else { return "?" }
        return "[" + shape.map(\.description).joined(separator: ", ") + "]"
    }

    private func text(_ s: ModelSummary, model loaded: Model) -> String {
        var lines = ["model: \(model)", "opset: \(loaded.graph.opset), producer: \(loaded.producer.isEmpty ? "?" : loaded.producer)", "inputs:"]
        for input in s.inputs {
            lines.append("  \(input.name): \(input.dtype) \(shapeText(input.shape))  (analysed as \(s.inputShapes[input.name] ?? []))")
        }
        lines.append("outputs:")
        for output in s.outputs {
            let concrete = s.outputShapes[output.name].flatMap { $0 }.map { "\($0)" } ?? "?"
            lines.append("  \(output.name): \(output.dtype) \(shapeText(output.shape))  (\(concrete))")
        }
        lines.append("operators (\(s.opHistogram.reduce(0) { $0 + $1.count }) nodes, \(s.nodesAfterFolding) after constant folding):")
        for (op, count) in s.opHistogram { lines.append("  \(op.padding(toLength: 24, withPad: " ", startingAt: 0)) \(count)") }
        lines.append("parameters: \(s.parameterCount) (\(formatBytes(s.weightBytes)))")
        lines.append("MACs per layer:")
        for layer in s.layers {
            lines.append("  \(layer.opType.padding(toLength: 14, withPad: " ", startingAt: 0)) \(layer.name.padding(toLength: 40, withPad: " ", startingAt: 0)) \(layer.outputShape)  \(formatCount(layer.macs))")
        }
        lines.append("total MACs: \(s.totalMACs) (\(formatCount(s.totalMACs)))")
        return lines.joined(separator: "\n")
    }

    private func jsonText(_ s: ModelSummary, model loaded: Model) throws -> String {
        func info(_ v: ValueInfo, _ concrete: [Int]?) -> [String: Any] {
            var entry: [String: Any] = ["name": v.name, "dtype": v.dtype.description,
                                        "shape": v.shape.map { $0.map { d -> Any in d.value.map { $0 as Any } ?? d.description } } ?? NSNull()]
            entry["analysed_shape"] = concrete ?? NSNull()
            return entry
        }
        let object: [String: Any] = [
            "model": model,
            "opset": loaded.graph.opset,
            "inputs": s.inputs.map { info($0, s.inputShapes[$0.name]) },
            "outputs": s.outputs.map { info($0, s.outputShapes[$0.name] ?? nil) },
            "op_histogram": Dictionary(uniqueKeysWithValues: s.opHistogram.map { ($0.opType, $0.count) }),
            "node_count": s.opHistogram.reduce(0) { $0 + $1.count },
            "nodes_after_folding": s.nodesAfterFolding,
            "parameters": s.parameterCount,
            "weight_bytes": s.weightBytes,
            "layers": s.layers.map { ["name": $0.name, "op_type": $0.opType, "output_shape": $0.outputShape, "macs": $0.macs] as [String: Any] },
            "total_macs": s.totalMACs,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
