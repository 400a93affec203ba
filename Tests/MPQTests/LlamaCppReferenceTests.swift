import Foundation
import MPQGGUF
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// mpq's LLM evaluation against llama.cpp's own figures, stored by bench/llm_reference.sh in
/// bench/reference/llama_cpp_reference.json (llama-perplexity of the llama.cpp build named there);
/// runs without llama.cpp. On examples/tiny-llama-jargon and the Jargon File's held-out tail
/// (context 512, the stored number of chunks): the F16 model and llama-quantize's Q4_K_M of it,
/// which the test rebuilds with mpq's quantizers from the F16, the stored imatrix and the stored
/// per-tensor types, byte for byte (checked against a checksum of llama-quantize's tensor data).
/// Targets of the project (issue 13): perplexity within 0.5 %, mean KL divergence within 2 %.
/// llama.cpp's CPU matmuls round activations (q8_K blocks against K-quant weights, f16 against F16
/// weights and in the KV cache), which raises its KLD by about 4 % here; mpq evaluates with the same
/// rounding (`LlamaCppActivationRounding`, `mpq eval-lm --llama-cpp`), as a user predicting
/// llama.cpp's figures would.
@Suite(.serialized) struct LlamaCppReferenceTests {
    static let referencePath = repositoryRoot.appendingPathComponent("bench/reference/llama_cpp_reference.json")
    let folder = temporaryFolder("mpq-llama-cpp-ref")

    /// The `ci` section of the stored reference.
    func reference() throws -> [String: Any] {
        let data = try Data(contentsOf: Self.referencePath)
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let llama = try #require(json["llama_cpp"] as? [String: Any])
        #expect((llama["commit"] as? String)?.count == 40, "the stored figures name the llama.cpp commit")
        return try #require(json["ci"] as? [String: Any])
    }

    /// The Jargon File's held-out tail as examples/tiny-llama-jargon/prep_data.py and
    /// bench/llm_reference.py make it: lines stripped, from the first line break after the 75 % mark.
    static func jargonTail() throws -> String {
        let text = try String(contentsOf: fixturesFolder.appendingPathComponent("data/text/jargon.txt"), encoding: .utf8)
        let data = text.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: "\n")
        let scalars = Array(data.unicodeScalars)
        var cut = Int(Double(scalars.count) * 0.75)
        while scalars[cut] != "\n" { cut += 1 }
        var tail = String.UnicodeScalarView()
        tail.append(contentsOf: scalars[(cut + 1)...])
        return String(tail)
    }

    /// ggml tensor data of a GGUF, tensors by name (llama-quantize writes them in llama.cpp's order),
    /// hashed like bench/llm_reference.py (FNV-1a, 64 bits).
    static func tensorChecksum(_ file: GGUFFile) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in file.tensors.sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }) {
            file.withTensorBytes(t) { bytes in
                for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            }
        }
        return String(format: "%016llx", h)
    }

    @Test func tinyLlamaMatchesLlamaPerplexity() throws {
        let ci = try reference()
        let context = try #require(ci["context"] as? Int), chunks = try #require(ci["chunks"] as? Int)
        let llama = try #require(ci["llama_cpp"] as? [String: Double])
        let q4 = try #require(ci["q4_k_m"] as? [String: Any])
        let modelPath = repositoryRoot.appendingPathComponent(try #require(ci["model"] as? String)).path
        let imatrixURL = repositoryRoot.appendingPathComponent(try #require(ci["imatrix"] as? String))

        // llama-quantize's Q4_K_M, rebuilt: same types, same imatrix, mpq's bit-exact quantizers.
        let base = try GGUFLanguageModel(contentsOf: modelPath)
        var types: [String: GGMLType] = [:]
        for (name, type) in try #require(q4["tensor_types"] as? [String: String]) {
            types[name] = try #require(GGMLType(name: type), "type \(type)")
        }
        let quantizedURL = folder.appendingPathComponent("tiny-Q4_K_M.gguf")
        let weights = GGUFQuantizedWeights(file: base.file, imatrix: try IMatrix(contentsOf: imatrixURL))
        try GGUFMixExport.write(to: quantizedURL, types: types, weights: weights)
        let quantized = try GGUFLanguageModel(contentsOf: quantizedURL.path)
        #expect(Self.tensorChecksum(quantized.file) == q4["tensor_data_fnv1a64"] as? String,
                "the rebuilt Q4_K_M's tensors differ from llama-quantize's")

        // The tail's first chunks, tokenized with the GGUF vocabulary as llama-perplexity does (a prefix
        // of the text long enough for the chunks gives the same first tokens as the whole text).
        let tail = try Self.jargonTail()
        #expect(tail.unicodeScalars.count == ci["text_characters"] as? Int, "the Jargon tail differs from the stored one")
        let needed = context * chunks
        let tokens = try base.tokenize(String(tail.prefix(needed * 8)))
        try #require(tokens.count > needed)

        // Both models with llama.cpp's CPU activation rounding (8-bit blocks before the quantized products,
        // the f16 KV cache): what `mpq eval-lm --llama-cpp` predicts llama-perplexity's figures with.
        let options = SessionOptions(threads: 2)
        let evaluation = LanguageModelEvaluation(
            model: try InferenceSession(graph: try quantized.graph(maxSequenceLength: context, simulatingLlamaCpp: true),
                                        options: options),
            reference: try InferenceSession(graph: try base.graph(maxSequenceLength: context, simulatingLlamaCpp: true),
                                            options: options))
        let result = try evaluation.evaluate(tokens: Array(tokens[..<needed]),
                                             options: .init(context: context, chunks: chunks, bos: base.chunkBOS))
        let kld = try #require(result.kld)
        let f16 = try #require(result.referencePerplexity)
        let expected = (f16: try #require(llama["f16_perplexity"]), q4: try #require(llama["q4_k_m_perplexity"]),
                        kld: try #require(llama["q4_k_m_kld"]))
        print(String(format: "tiny-llama, %d chunks of %d, llama.cpp's activation rounding: F16 perplexity mpq %.4f llama.cpp %.4f; "
                     + "Q4_K_M mpq %.4f llama.cpp %.4f; KLD mpq %.6f llama.cpp %.6f", chunks, context, f16, expected.f16,
                     result.perplexity, expected.q4, kld.mean, expected.kld))
        #expect(result.chunks == chunks)
        #expect(abs(f16 / expected.f16 - 1) < 0.005, "F16 perplexity \(f16), llama.cpp \(expected.f16)")
        #expect(abs(result.perplexity / expected.q4 - 1) < 0.005, "Q4_K_M perplexity \(result.perplexity), llama.cpp \(expected.q4)")
        #expect(abs(kld.mean / expected.kld - 1) < 0.02, "Q4_K_M KLD \(kld.mean), llama.cpp \(expected.kld)")
    }
}
