import Foundation
import MPQGGUF
import MPQGraph

/// Milliseconds per token of a model with every matrix in one ggml type, measured on this CPU by
/// llama.cpp itself (`bench/ggml_type_speed.sh`: `llama-quantize --pure` copies timed by
/// `llama-bench`), for decoding (one token at a time: matrix-vector products) and prompt
/// processing (batched: matrix-matrix products).
///
/// Per-type speed is not a function of bits: on an AVX-512 CPU llama.cpp repacks q4_0 and q4_K into
/// interleaved layouts with fast kernels, so a q4_K decoder decodes faster than a q3_K or q5_K one,
/// and q6_K faster than q5_K. A byte budget alone cannot see that; the table lets a search see it
/// (`GGUFSpeedModel`).
///
/// The file is JSON: `format` "mpq-ggml-type-speed-1", `cpu`, `threads`, `model`, `matmul_weights`
/// (the weights of the model's matrix products, which the times are spread over), `source`, and
/// `types`: per ggml type name, `decode_ms_per_token` and `prefill_ms_per_token` (plus their spreads
/// and run counts).
public struct GGMLTypeSpeedTable: Sendable, Equatable {
    /// One type's figures.
    public struct Entry: Sendable, Equatable {
        /// Milliseconds per generated token (median of the runs).
        public var decodeMilliseconds: Double
        /// Milliseconds per prompt token in a batched prompt (median of the runs).
        public var prefillMilliseconds: Double
    }

    /// The CPU the table was measured on (/proc/cpuinfo's model name).
    public var cpu: String
    /// Threads llama-bench ran with.
    public var threads: Int
    /// File name of the model the table was measured on.
    public var model: String
    /// Weights of that model's matrix products.
    public var matmulWeights: Int
    /// What measured it (llama-bench and the llama.cpp version).
    public var source: String
    /// Figures per type.
    public var types: [GGMLType: Entry]

    /// A table from its parts (checked as a file's would be).
    public init(cpu: String, threads: Int, model: String, matmulWeights: Int, source: String,
                types: [GGMLType: Entry]) throws {
        guard threads >= 1, matmulWeights >= 1 else {
            throw MPQError.invalidInput("speed table: threads and matmul_weights must be positive (got \(threads), \(matmulWeights))")
        }
        guard !types.isEmpty else { throw MPQError.invalidInput("speed table: no types") }
        for (type, entry) in types {
            for (what, value) in [("decode", entry.decodeMilliseconds), ("prefill", entry.prefillMilliseconds)]
            where !(value.isFinite && value > 0 && value < 1e7) {
                throw MPQError.invalidInput("speed table: \(type.name) \(what) time \(value) ms is not a positive number")
            }
        }
        self.cpu = cpu
        self.threads = threads
        self.model = model
        self.matmulWeights = matmulWeights
        self.source = source
        self.types = types
    }

    /// Reads and checks a table written by `bench/ggml_type_speed.sh`.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw MPQError.fileNotFound(path) }
        guard data.count <= 1 << 20 else { throw MPQError.invalidInput("speed table \(path) is over 1 MiB") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw MPQError.invalidInput("speed table \(path) is not a JSON object")
        }
        guard object["format"] as? String == "mpq-ggml-type-speed-1" else {
            throw MPQError.invalidInput("speed table \(path): format is not mpq-ggml-type-speed-1 (bench/ggml_type_speed.sh writes it)")
        }
        func integer(_ key: String) throws -> Int {
            guard let n = object[key] as? NSNumber, let value = Int(exactly: n.doubleValue) else {
                throw MPQError.invalidInput("speed table \(path): \(key) is not an integer")
            }
            return value
        }
        guard let rows = object["types"] as? [String: Any] else { throw MPQError.invalidInput("speed table \(path): no types object") }
        var types: [GGMLType: Entry] = [:]
        for (name, value) in rows {
            guard let type = GGMLType(name: name) else { throw MPQError.invalidInput("speed table \(path): unknown ggml type '\(name)'") }
            guard let row = value as? [String: Any],
                  let decode = (row["decode_ms_per_token"] as? NSNumber)?.doubleValue,
                  let prefill = (row["prefill_ms_per_token"] as? NSNumber)?.doubleValue else {
                throw MPQError.invalidInput("speed table \(path): \(name) needs decode_ms_per_token and prefill_ms_per_token numbers")
            }
            types[type] = Entry(decodeMilliseconds: decode, prefillMilliseconds: prefill)
        }
        try self.init(cpu: object["cpu"] as? String ?? "unknown", threads: try integer("threads"),
                      model: object["model"] as? String ?? "unknown", matmulWeights: try integer("matmul_weights"),
                      source: object["source"] as? String ?? "unknown", types: types)
    }
}
