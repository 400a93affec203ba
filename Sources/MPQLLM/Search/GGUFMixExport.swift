import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Writes a per-tensor type mix of a GGUF model as a GGUF file llama.cpp loads: the source's
/// metadata (general.file_type set to the llama_ftype of the type holding most searched weights,
/// general.quantization_version 2), the same tensors in the same order, each searched tensor
/// converted to its type as llama-quantize would (same quantisers, same importance matrix).
public enum GGUFMixExport {
    /// llama.cpp's `llama_ftype` for a model mostly of `type` (the _M mixes for K-quants).
    public static func fileType(_ type: GGMLType) -> UInt32 {
        switch type {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q5_0: 8
        case .q5_1: 9
        case .q2_K: 10
        case .q3_K: 12
        case .q4_K: 15
        case .q5_K: 17
        case .q6_K: 18
        case .iq4_nl: 25
        case .iq4_xs: 30
        case .bf16: 32
        default: 1024 // LLAMA_FTYPE_GUESSED
        }
    }

    /// The metadata of the written file (its size is fixed before the types are known).
    public static func metadata(of file: GGUFFile, dominant: GGMLType = .f16) -> GGUFMetadata {
        var metadata = file.metadata
        metadata[GGUFKey.fileType] = .uint32(fileType(dominant))
        metadata[GGUFKey.quantizationVersion] = .uint32(2)
        return metadata
    }

    /// The searched type holding the most weights under `types`.
    public static func dominantType(_ types: [String: GGMLType], file: GGUFFile) -> GGMLType {
        var weights: [GGMLType: Int] = [:]
        for (name, type) in types { weights[type, default: 0] += file.tensor(named: name)?.elementCount ?? 0 }
        return weights.max { ($0.value, $1.key.rawValue) < ($1.value, $0.key.rawValue) }?.key ?? .f16
    }

    /// Writes the mix to `url` (atomically); returns the file's size.
    @discardableResult
    public static func write(to url: URL, types: [String: GGMLType], weights: GGUFQuantizedWeights) throws -> Int {
        let file = weights.file
        let metadata = metadata(of: file, dominant: dominantType(types, file: file))
        let tensors = file.tensors.map { GGUFTensorInfo(name: $0.name, dimensions: $0.dimensions, type: types[$0.name] ?? $0.type) }
        do {
            try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors, version: file.version) { i in
                try weights.bytes(tensors[i].name, tensors[i].type)
            }
        } catch let error as MPQError {
            throw error
        } catch {
            throw MPQError.io("cannot write \(url.path): \(error)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
        return size ?? 0
    }

    /// The types as llama-quantize's `--tensor-type-file`: one `regex=type` per line (the regex
    /// anchored to the whole tensor name), searched tensors in file order.
    public static func tensorTypeFile(_ types: [String: GGMLType], file: GGUFFile) -> String {
        var lines: [String] = []
        for t in file.tensors {
            guard let type = types[t.name] else { continue }
            let pattern = "^" + NSRegularExpression.escapedPattern(for: t.name) + "$"
            lines.append("\(pattern)=\(type.name)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
