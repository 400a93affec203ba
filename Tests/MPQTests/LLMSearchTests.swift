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

/// `mpq search-lm` (Sources/MPQLLM/Search) on examples/tiny-llama-jargon: short texts, small
/// chunks and the tensors of two layers, so that it runs in about a minute in debug.
@Suite(.serialized) struct LLMSearchTests {
    static let modelPath = tinyLlamaPath
    let folder = temporaryFolder("mpq-llmsearch")

    func slice(_ name: String, from: Int, count: Int) throws -> String {
        try fixtureTextSlice(name, from: from, count: count, in: folder)
    }

    func options(target: GGUFSearchTarget, calibration: String) -> GGUFTypeSearchWorkflow.Options {
        var options = GGUFTypeSearchWorkflow.Options(model: Self.modelPath, calibrationText: calibration, target: target)
        options.types = [.q3_K, .q4_K, .q8_0]
        options.tensorPattern = #"^blk\.0\."#
        options.context = 64
        options.chunks = 2
        options.evaluationContext = 128
        options.evaluationChunks = 2
        options.threads = 2
        options.measuredCandidates = 2
        options.cacheFolder = folder.appendingPathComponent("cache").path
        return options
    }

    @Test func badBudgetsNameTheReachableRange() throws {
        let calibration = try slice("jargon.txt", from: 0, count: 4000)
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: Self.modelPath))
        let space = try GGUFSearchSpace(file: file, metadata: GGUFMixExport.metadata(of: file), types: [.q3_K, .q4_K, .q8_0],
                                        include: { $0.hasPrefix("blk.0.") })
        #expect(space.groups.count == 7)
        #expect(space.groups.allSatisfy { $0.candidates.map(\.type) == [.q3_K, .q4_K, .q8_0] })
        let low = space.fileBytes(space.smallest), high = space.fileBytes(space.largest)
        for target in [GGUFSearchTarget.fileBytes(low - 1), .fileBytes(high + 1), .bitsPerWeight(1), .bitsPerWeight(40), .maxKLD(0), .maxKLD(-1)] {
            let workflow = GGUFTypeSearchWorkflow(options(target: target, calibration: calibration))
            do {
                _ = try workflow.prepare()
                Issue.record("target \(target) was accepted")
            } catch MPQError.invalidInput(let message) {
                if case .maxKLD = target { #expect(message.contains("positive")) } else {
                    #expect(message.contains("reachable"), "\(message)")
                }
                print("rejected \(target): \(message)")
            }
        }
        #expect(try GGUFSearchTarget.parseSize("90MB") == 90_000_000)
        #expect(try GGUFSearchTarget.parseSize("6.5MiB") == 6_815_744)
        #expect(throws: MPQError.self) { try GGUFSearchTarget.parseSize("lots") }
        // llama.cpp's fallback table.
        #expect(GGUFSearchSpace.fallback(.q4_K, rowLength: 96) == .q5_0)
        #expect(GGUFSearchSpace.fallback(.q3_K, rowLength: 96) == .q4_0)
        #expect(GGUFSearchSpace.fallback(.q6_K, rowLength: 96) == .q8_0)
        #expect(GGUFSearchSpace.fallback(.q4_K, rowLength: 100) == .f16)
        #expect(GGUFSearchSpace.fallback(.q4_K, rowLength: 512) == .q4_K)
    }

    @Test func searchWritesLoadableMixWithinBudgetAndResumes() throws {
        let calibration = try slice("jargon.txt", from: 0, count: 6000)
        let heldOut = try slice("tempest_gut.txt", from: 20_000, count: 8000)
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: Self.modelPath))
        let space = try GGUFSearchSpace(file: file, metadata: GGUFMixExport.metadata(of: file), types: [.q3_K, .q4_K, .q8_0],
                                        include: { $0.hasPrefix("blk.0.") })
        let uniform = try #require(space.uniform(.q4_K))
        let budget = space.fileBytes(uniform)
        var options = options(target: .fileBytes(budget), calibration: calibration)
        options.evaluationText = heldOut
        options.output = folder.appendingPathComponent("out").path
        let start = Date()
        let result = try GGUFTypeSearchWorkflow(options).run()
        print("search-lm test run: \(Date().timeIntervalSince(start)) s")
        print(result.summary)

        // Budget met, exact size predicted, file readable with the same tensors in the same order.
        let written = URL(fileURLWithPath: options.output!).appendingPathComponent("model.gguf")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: written.path)[.size] as? Int)
        #expect(size == result.fileBytes)
        #expect(size <= budget)
        let mixed = try GGUFFile(contentsOf: written)
        #expect(mixed.tensors.map(\.name) == file.tensors.map(\.name))
        for tensor in mixed.tensors {
            #expect(tensor.type == (result.types[tensor.name] ?? file.tensor(named: tensor.name)!.type), "\(tensor.name)")
        }
        #expect(mixed.metadata[GGUFKey.fileType] != nil)
        for name in ["tensor-types.txt", "imatrix.gguf", "front.csv", "sensitivity.csv", "report.md", "front.svg", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: URL(fileURLWithPath: options.output!).appendingPathComponent(name).path), "\(name)")
        }
        let svg = try String(contentsOfFile: URL(fileURLWithPath: options.output!).appendingPathComponent("front.svg").path, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("chosen") && svg.contains("measured"))
        let imatrix = try IMatrix(contentsOf: URL(fileURLWithPath: options.output!).appendingPathComponent("imatrix.gguf"))
        #expect(imatrix.entries["blk.0.attn_q.weight"]?.sums.count == 256)
        #expect(imatrix.entries["blk.0.ffn_down.weight"]?.counts == [128])

        // The written file evaluates to the search's measured calibration KLD.
        let base = try GGUFLanguageModel(contentsOf: Self.modelPath)
        let tokens = try base.tokenize(try String(contentsOfFile: calibration, encoding: .utf8))
        let reread = try GGUFLanguageModel(contentsOf: written.path)
        let evaluation = LanguageModelEvaluation(
            model: try InferenceSession(graph: try reread.graph(maxSequenceLength: 64), options: SessionOptions(threads: 2)),
            reference: try InferenceSession(graph: try base.graph(maxSequenceLength: 64), options: SessionOptions(threads: 2)))
        let check = try evaluation.evaluate(tokens: tokens, options: .init(context: 64, chunks: 2, bos: base.chunkBOS))
        let measured = try #require(check.kld?.mean)
        #expect(abs(measured - result.measuredKLD) <= 1e-9 + 1e-6 * measured, "eval \(measured) vs search \(result.measuredKLD)")

        // The search beats uniform q4_K at equal or lower size on the held-out text.
        #expect(result.heldOut.count == 2)
        if result.heldOut.count == 2 {
            let mine = result.heldOut[0], uniformResult = result.heldOut[1]
            #expect(mine.fileBytes <= uniformResult.fileBytes)
            #expect(mine.result.kld!.mean <= uniformResult.result.kld!.mean,
                    "held-out KLD mpq \(mine.result.kld!.mean) vs uniform q4_K \(uniformResult.result.kld!.mean)")
        }

        // A second run (as after a kill) reads every score from the cache and gives the same result.
        options.output = folder.appendingPathComponent("out2").path
        options.evaluationText = nil
        let again = try GGUFTypeSearchWorkflow(options).run()
        #expect(again.types == result.types)
        #expect(again.measuredKLD == result.measuredKLD)
        #expect(again.search?.sensitivity == result.search?.sensitivity)
        #expect(again.search?.evaluations == result.search?.evaluations)
        let first = try Data(contentsOf: written)
        let second = try Data(contentsOf: URL(fileURLWithPath: options.output!).appendingPathComponent("model.gguf"))
        #expect(first == second)

        // A decode-speed limit the chosen mix misses: the choice moves to a front point within it, and
        // front.csv carries the prediction of every point. On this CPU q4_K is the fastest candidate, so
        // the table here says otherwise (the measured one drives LLMTaylorSearchTests' limit).
        let table = folder.appendingPathComponent("slow-q4_K.json")
        let rows = ["q3_K": 0.3, "q4_K": 0.9, "q8_0": 0.6, "f16": 0.7].mapValues { ["decode_ms_per_token": $0, "prefill_ms_per_token": $0 / 3] }
        try JSONSerialization.data(withJSONObject: ["format": "mpq-ggml-type-speed-1", "threads": 1, "matmul_weights": 8_388_608,
                                                    "types": rows] as [String: Any]).write(to: table)
        options.speedTable = table.path
        let speed = try #require(try GGUFTypeSearchWorkflow(options).prepare().speeds.first)
        let front = try #require(result.search?.front)
        let fitting = front.filter { $0.fileBytes <= budget }.map { speed.milliseconds($0.choice) }
        let limit = try #require(fitting.filter { $0 < speed.milliseconds(result.choice) }.max(), "no faster fitting front point")
        options.maxMillisecondsPerToken = limit
        options.output = folder.appendingPathComponent("out3").path
        let fast = try GGUFTypeSearchWorkflow(options).run()
        #expect(speed.milliseconds(fast.choice) <= limit && fast.fileBytes <= budget && fast.choice != result.choice)
        let csv = try String(contentsOf: URL(fileURLWithPath: options.output!).appendingPathComponent("front.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n")[0].hasSuffix(",predicted_decode_ms_per_token"))
    }
}
