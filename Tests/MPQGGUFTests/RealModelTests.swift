import Foundation
import Testing
@testable import MPQGGUF

/// The project's tiny llama model (F16 GGUF written by llama.cpp's convert_hf_to_gguf.py / gguf-py).
let tinyLlama = repoRoot.appendingPathComponent("examples/tiny-llama-jargon/model-F16.gguf")

@Suite
struct RealModelTests {
    /// Reading a real model and writing it back reproduces it byte for byte.
    @Test func rewritesTinyLlamaByteIdentically() throws {
        let file = try GGUFFile(contentsOf: tinyLlama)
        #expect(file.metadata[GGUFKey.architecture]?.stringValue == "llama")
        if case .array(.string(let tokens))? = file.metadata["tokenizer.ggml.tokens"] {
            #expect(tokens.count == 8192)
        } else {
            Issue.record("tokenizer.ggml.tokens missing")
        }
        #expect(file.tensors.count == 75)
        #expect(file.tensor(named: "blk.0.ffn_down.weight")?.dimensions == [768, 256])
        let folder = makeTemporaryFolder("mpq-gguf-real")
        defer { try? FileManager.default.removeItem(at: folder) }
        let copy = folder.appendingPathComponent("copy.gguf")
        try file.write(to: copy)
        #expect(try Data(contentsOf: copy) == Data(contentsOf: tinyLlama))
    }

    /// Quantising the model's first-block matrices to a K-quant and writing a GGUF that gguf-py reads back.
    @Test func quantizesTinyLlamaToQ4_K() throws {
        let file = try GGUFFile(contentsOf: tinyLlama)
        var tensors: [GGUFTensorInfo] = []
        var payloads: [Data] = []
        var err = 0.0, sig = 0.0
        let start = Date()
        for t in file.tensors {
            let x = try file.floats(t)
            // The first block's matrices (keeps the debug-build test short); everything else as F32.
            let type: GGMLType = t.name.hasPrefix("blk.0.") && t.dimensions.count == 2 && t.rowLength % 256 == 0 ? .q4_K : .f32
            let q = try GGMLQuants.quantize(type, values: x, rowLength: t.rowLength)
            if type == .q4_K {
                let y = try GGMLQuants.dequantize(type, data: q, count: x.count)
                for i in x.indices { err += Double((x[i] - y[i]) * (x[i] - y[i])); sig += Double(x[i] * x[i]) }
            }
            tensors.append(GGUFTensorInfo(name: t.name, dimensions: t.dimensions, type: type))
            payloads.append(Data(q))
        }
        let seconds = Date().timeIntervalSince(start)
        print("tiny-llama Q4_K (block 0) and F32: \(file.tensors.count) tensors in \(String(format: "%.2f", seconds)) s, relative RMSE \((err / sig).squareRoot())")
        #expect((err / sig).squareRoot() < 0.1)
        var metadata = file.metadata
        metadata[GGUFKey.fileType] = .uint32(15)  // LLAMA_FTYPE_MOSTLY_Q4_K_M
        let folder = makeTemporaryFolder("mpq-gguf-q4k")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model-Q4_K.gguf")
        try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors) { payloads[$0] }
        let back = try GGUFFile(contentsOf: url)
        #expect(back.tensors.map(\.type) == tensors.map(\.type))
        #expect(try runReference(["check-gguf", url.path, url.path]).contains("ok"))
    }
}
