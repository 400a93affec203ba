import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// A GGUF decoder LM opened for mpq: its configuration and float32 graph
/// (so the CLI needs only the MPQ module).
public struct GGUFLanguageModel {
    /// The GGUF file's path, as given.
    public let path: String
    /// The parsed GGUF file: metadata, tensor infos and tensor data.
    public let file: GGUFFile
    /// The decoder's hyper-parameters (see `DecoderGraphBuilder.configuration(of:)`).
    public let configuration: DecoderConfiguration

    /// Opens the GGUF at `path` and reads its configuration; throws `MPQError.fileNotFound`, or
    /// `MPQError.invalidModel` for a file that does not parse or an unsupported architecture.
    public init(contentsOf path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw MPQError.fileNotFound(path) }
        self.path = path
        do {
            file = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw MPQError.invalidModel("\(path): \(error)")
        }
        configuration = try DecoderGraphBuilder.configuration(of: file)
    }

    /// The decoder graph (weights dequantized to float32); see `DecoderGraphBuilder`. With
    /// `simulatingLlamaCpp`, activations are rounded as llama.cpp's CPU backend rounds them
    /// (`LlamaCppActivationRounding`), to predict llama-perplexity's figures.
    public func graph(maxSequenceLength: Int? = nil, simulatingLlamaCpp: Bool = false) throws -> Graph {
        try DecoderGraphBuilder.graph(from: file, maxSequenceLength: maxSequenceLength, simulatingLlamaCpp: simulatingLlamaCpp)
    }

    /// Token ids of `text` with the GGUF's own vocabulary (MPQGGUF's port of llama.cpp's tokenizer),
    /// BOS / EOS added as the metadata says (llama-perplexity's `add_special = true`).
    public func tokenize(_ text: String) throws -> [Int] {
        let tokenizer: GGUFTokenizer
        do { tokenizer = try GGUFTokenizer(metadata: file.metadata) } catch {
            throw MPQError.invalidModel("\(path): no usable tokenizer (\(error))")
        }
        return tokenizer.encode(text)
    }

    /// The BOS token llama-perplexity puts first in each chunk, nil when the vocabulary adds none.
    /// Taken from the GGUF tokenizer's defaults (llama.cpp's per-vocabulary add_bos) when it loads,
    /// else from `tokenizer.ggml.add_bos_token`.
    public var chunkBOS: Int? {
        if let tokenizer = try? GGUFTokenizer(metadata: file.metadata) { return tokenizer.addBOS ? tokenizer.bosID : nil }
        return configuration.addBOS ? configuration.bosToken : nil
    }
}

/// One tensor of a GGUF file as `mpq inspect` lists it.
public struct GGUFTensorSummary: Sendable {
    /// The tensor's GGUF name (e.g. blk.0.attn_q.weight).
    public var name: String
    /// numpy order (ne0 last).
    public var shape: [Int]
    /// The ggml type's name (e.g. q4_K, f16).
    public var type: String
    /// Weights in the tensor.
    public var elements: Int
    /// Bytes of the tensor's data in the file (unpadded).
    public var bytes: Int
    /// 8 x bytes / elements, as llama.cpp prints it; 0 for an empty tensor.
    public var bitsPerWeight: Double { elements > 0 ? Double(bytes) * 8 / Double(elements) : 0 }
}

/// `mpq inspect` for GGUF files: the metadata and a tensor listing with types and bits per weight.
public enum GGUFSummary {
    /// Every tensor of the file at `path`, in file order, with the file's metadata as text.
    public static func read(path: String) throws -> (metadata: [(String, String)], tensors: [GGUFTensorSummary]) {
        guard FileManager.default.fileExists(atPath: path) else { throw MPQError.fileNotFound(path) }
        let file: GGUFFile
        do { file = try GGUFFile(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw MPQError.invalidModel("\(path): \(error)")
        }
        let metadata = file.metadata.entries.map { entry -> (String, String) in
            switch entry.value {
            case .array(let array): return (entry.key, "[\(array.count) values]")
            case .string(let text): return (entry.key, text.string.count > 80 ? String(text.string.prefix(77)) + "..." : text.string)
            case .bool(let b): return (entry.key, String(b))
            default:
                if let i = entry.value.intValue { return (entry.key, String(i)) }
                if let d = entry.value.doubleValue { return (entry.key, String(d)) }
                return (entry.key, "?")
            }
        }
        let tensors = file.tensors.map {
            GGUFTensorSummary(name: $0.name, shape: $0.dimensions.reversed(), type: $0.type.name,
                              elements: $0.elementCount, bytes: $0.byteCount)
        }
        return (metadata, tensors)
    }

    /// The listing `mpq inspect MODEL.gguf` prints.
    public static func text(path: String) throws -> String {
        let (metadata, tensors) = try read(path: path)
        var lines = ["GGUF \(path)", "metadata:"]
        for (key, value) in metadata where !key.hasPrefix("tokenizer.ggml.") || !value.hasPrefix("[") {
            lines.append("  \(key) = \(value)")
        }
        let nameWidth = max(4, tensors.map(\.name.count).max() ?? 0)
        lines.append("tensors (\(tensors.count)):")
        lines.append("  " + "name".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  type    bpw     shape")
        for t in tensors {
            let bpw = String(format: "%6.3f", t.bitsPerWeight)
            lines.append("  " + t.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                         + t.type.padding(toLength: 6, withPad: " ", startingAt: 0) + "  \(bpw)  [" 
                         + t.shape.map(String.init).joined(separator: ", ") + "]")
        }
        let elements = tensors.reduce(0) { $0 + $1.elements }, bytes = tensors.reduce(0) { $0 + $1.bytes }
        var byType: [String: (Int, Int)] = [:]
        for t in tensors { byType[t.type, default: (0, 0)].0 += 1; byType[t.type, default: (0, 0)].1 += t.elements }
        lines.append("total: \(elements) weights, \(bytes) bytes, "
                     + String(format: "%.3f", elements > 0 ? Double(bytes) * 8 / Double(elements) : 0) + " bits per weight")
        lines.append("types: " + byType.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.0) tensors / \($0.value.1) weights" }
            .joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
