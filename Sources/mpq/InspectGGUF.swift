import Foundation
import MPQ

extension InspectCommand {
    /// `mpq inspect MODEL.gguf`: the GGUF's metadata and tensors (type, shape, bits per weight).
    /// Returns false for files that are not GGUF (the ONNX listing applies).
    func inspectGGUF() throws -> Bool {
        guard model.lowercased().hasSuffix(".gguf") else { return false }
        var speeds: [(GGUFSpeedModel.Phase, Double)] = []
        var table: GGMLTypeSpeedTable?
        if let speedTable {
            let loaded = try GGMLTypeSpeedTable(contentsOf: speedTable)
            let file = try GGUFFile(contentsOf: URL(fileURLWithPath: model))
            speeds = try GGUFSpeedModel.Phase.allCases.map { ($0, try GGUFSpeedModel.milliseconds(of: file, table: loaded, phase: $0)) }
            table = loaded
        }
        if json {
            let (_, tensors) = try GGUFSummary.read(path: model)
            let rows: [[String: Any]] = tensors.map {
                ["name": $0.name, "type": $0.type, "shape": $0.shape, "elements": $0.elements, "bytes": $0.bytes,
                 "bits_per_weight": $0.bitsPerWeight]
            }
            var object: [String: Any] = ["model": model, "tensors": rows]
            if !speeds.isEmpty {
                object["predicted_ms_per_token"] = Dictionary(uniqueKeysWithValues: speeds.map { ($0.0.rawValue, $0.1) })
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(try GGUFSummary.text(path: model))
            if let table {
                print("predicted llama.cpp speed (\(table.cpu), \(table.threads) thread(s), table measured on \(table.model)):")
                for (phase, ms) in speeds { print(String(format: "  %@: %.4f ms/token (%.0f tokens/s)", phase.rawValue, ms, 1000 / ms)) }
            }
        }
        return true
    }
}
