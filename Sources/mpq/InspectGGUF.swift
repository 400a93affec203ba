import Foundation
import MPQ

extension InspectCommand {
    /// `mpq inspect MODEL.gguf`: the GGUF's metadata and tensors (type, shape, bits per weight).
    /// Returns false for files that are not GGUF (the ONNX listing applies).
    func inspectGGUF() throws -> Bool {
        guard model.lowercased().hasSuffix(".gguf") else { return false }
        if json {
            let (_, tensors) = try GGUFSummary.read(path: model)
            let rows: [[String: Any]] = tensors.map {
                ["name": $0.name, "type": $0.type, "shape": $0.shape, "elements": $0.elements, "bytes": $0.bytes,
                 "bits_per_weight": $0.bitsPerWeight]
            }
            let data = try JSONSerialization.data(withJSONObject: ["model": model, "tensors": rows] as [String: Any],
                                                  options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(try GGUFSummary.text(path: model))
        }
        return true
    }
}
