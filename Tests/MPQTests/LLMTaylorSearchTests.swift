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

/// `mpq search-lm --method taylor-ip` (GGUFTaylorSearch and friends) on examples/tiny-llama-jargon:
/// the tensors of layer 0, short texts and small chunks, so that it runs in well under a minute in debug.
@Suite(.serialized) struct LLMTaylorSearchTests {
    static let modelPath = tinyLlamaPath
    let folder = temporaryFolder("mpq-llmtaylor")

    func slice(_ name: String, from: Int, count: Int) throws -> String {
        try fixtureTextSlice(name, from: from, count: count, in: folder)
    }

    func options(target: GGUFSearchTarget, calibration: String) -> GGUFTypeSearchWorkflow.Options {
        var options = GGUFTypeSearchWorkflow.Options(model: Self.modelPath, calibrationText: calibration, target: target)
        options.method = .taylorIP
        options.types = [.q3_K, .q4_K, .q8_0]
        options.tensorPattern = #"^blk\.0\."#
        options.context = 128
        options.chunks = 4
        options.taylor.sensitivity.draws = 2
        options.evaluationContext = 128
        options.evaluationChunks = 3
        options.threads = 2
        options.cacheFolder = folder.appendingPathComponent("cache").path
        return options
    }

    func space(_ file: GGUFFile) throws -> GGUFSearchSpace {
        try GGUFSearchSpace(file: file, metadata: GGUFMixExport.metadata(of: file), types: [.q3_K, .q4_K, .q8_0],
                            include: { $0.hasPrefix("blk.0.") })
    }

    @Test func badBudgetsAndOptionsGetClearErrors() throws {
        let calibration = try slice("jargon.txt", from: 0, count: 4000)
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: Self.modelPath))
        let space = try space(file)
        let low = space.fileBytes(space.smallest), high = space.fileBytes(space.largest)
        // The same errors as the Pareto path, before any computation.
        for target in [GGUFSearchTarget.fileBytes(low - 1), .fileBytes(high + 1), .bitsPerWeight(1), .bitsPerWeight(40), .maxKLD(0), .maxKLD(-1)] {
            var messages: [String] = []
            for method in GGUFTypeSearchWorkflow.Method.allCases {
                var o = options(target: target, calibration: calibration)
                o.method = method
                do {
                    _ = try GGUFTypeSearchWorkflow(o).prepare()
                    Issue.record("\(method) accepted target \(target)")
                } catch MPQError.invalidInput(let message) {
                    messages.append(message)
                }
            }
            #expect(messages.count == 2 && messages[0] == messages[1], "\(messages)")
            if case .maxKLD = target { #expect(messages.first?.contains("positive") == true) } else {
                #expect(messages.first?.contains("reachable") == true, "\(messages)")
            }
        }
        #expect(throws: MPQError.self) { try GGUFRandomAllocation.choice(space: space, target: .fileBytes(low - 1), seed: 1) }
        // Bad Taylor settings.
        var bad = options(target: .fileBytes(high), calibration: calibration)
        bad.taylor.sensitivity.draws = 0
        #expect(throws: MPQError.self) { try GGUFTypeSearchWorkflow(bad).prepare() }
        bad.taylor.sensitivity.draws = 65
        #expect(throws: MPQError.self) { try GGUFTypeSearchWorkflow(bad).prepare() }
        // The next-token loss has fixed labels: one pass per chunk whatever `draws` says.
        var nextToken = GGUFTaylorSensitivity.Options()
        nextToken.loss = .nextToken
        #expect(nextToken.passesPerChunk == 1 && GGUFTaylorSensitivity.Options().passesPerChunk == 16)
        bad.taylor.sensitivity = .init()
        bad.taylor = .init()
        bad.taylor.validationConfigurations = 1
        #expect(throws: MPQError.self) { try GGUFTypeSearchWorkflow(bad).prepare() }
        // Options of one method are rejected under the other, naming both.
        let common = ["search-lm", Self.modelPath, "--text", calibration, "--target-size", "\(high)", "--out", folder.appendingPathComponent("x").path]
        var r = try mpq(common + ["--method", "pareto", "--loss", "kl"])
        #expect(r.status != 0 && r.stderr.contains("--loss is a taylor-ip option"), "\(r.stderr)")
        r = try mpq(common + ["--method", "taylor-ip", "--measure", "2"])
        #expect(r.status != 0 && r.stderr.contains("--measure is a pareto option"), "\(r.stderr)")
        r = try mpq(common + ["--method", "taylor-ip", "--loss", "entropy"])
        #expect(r.status != 0 && r.stderr.contains("--loss must be kl or next-token"), "\(r.stderr)")
    }

    @Test func searchMeetsBudgetOptimallyBeatsUniformAndRandomAndResumes() throws {
        // Calibration from the body of the Jargon File (its first pages are front matter), held-out from its tail.
        let calibration = try slice("jargon.txt", from: 200_000, count: 12_000)
        let heldOut = try slice("jargon.txt", from: 1_300_000, count: 12_000)
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: Self.modelPath))
        let space = try space(file)
        let uniform = try #require(space.uniform(.q4_K))
        let budget = space.fileBytes(uniform)
        var options = options(target: .fileBytes(budget), calibration: calibration)
        options.evaluationText = heldOut
        options.randomControlSeed = 7
        options.taylor.validationConfigurations = 5
        options.output = folder.appendingPathComponent("out").path
        let start = Date()
        let result = try GGUFTypeSearchWorkflow(options).run()
        print("search-lm taylor-ip test run: \(Date().timeIntervalSince(start)) s")
        print(result.summary)
        let taylor = try #require(result.taylor)

        // Budget met, and the program's mix is the optimum of the predicted costs (brute force over 3^7 mixes).
        #expect(result.fileBytes <= budget)
        let program = try GGUFTaylorSearch.program(space: space, sensitivity: taylor.sensitivity, target: .fileBytes(budget))
        let optimum = try program.bruteForce()
        #expect(abs(optimum.objective - taylor.solution.objective) <= 1e-12 * max(1, abs(optimum.objective)),
                "CBC \(taylor.solution.objective) vs brute force \(optimum.objective)")
        #expect(taylor.solution.status == .optimal)
        #expect(abs(taylor.predictedKLD - zip(taylor.sensitivity, taylor.choice).reduce(0) { $0 + $1.0[$1.1] }) < 1e-15)
        // Every sensitivity is a finite non-negative KLD, and a cheaper type of a tensor is predicted worse.
        for row in taylor.sensitivity {
            #expect(row.allSatisfy { $0.isFinite && $0 >= 0 })
            #expect(row[0] > row[2], "q3_K \(row[0]) vs q8_0 \(row[2])")
        }

        // The written file round-trips with the chosen types; its calibration KLD is the one reported.
        let out = URL(fileURLWithPath: options.output!)
        let written = out.appendingPathComponent("model.gguf")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: written.path)[.size] as? Int)
        #expect(size == result.fileBytes)
        let mixed = try GGUFFile(contentsOf: written)
        #expect(mixed.tensors.map(\.name) == file.tensors.map(\.name))
        for tensor in mixed.tensors {
            #expect(tensor.type == (result.types[tensor.name] ?? file.tensor(named: tensor.name)!.type), "\(tensor.name)")
        }
        for name in ["tensor-types.txt", "imatrix.gguf", "sensitivity.csv", "validation.csv", "random-control.gguf", "report.md",
                     "front.svg", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), "\(name)")
        }
        let base = try GGUFLanguageModel(contentsOf: Self.modelPath)
        let tokens = try base.tokenize(try String(contentsOfFile: calibration, encoding: .utf8))
        let evaluation = LanguageModelEvaluation(
            model: try InferenceSession(graph: try GGUFLanguageModel(contentsOf: written.path).graph(maxSequenceLength: 128),
                                        options: SessionOptions(threads: 2)),
            reference: try InferenceSession(graph: try base.graph(maxSequenceLength: 128), options: SessionOptions(threads: 2)))
        let measured = try #require(try evaluation.evaluate(tokens: tokens, options: .init(context: 128, chunks: 4, bos: base.chunkBOS)).kld?.mean)
        #expect(abs(measured - result.measuredKLD) <= 1e-9 + 1e-6 * measured, "eval \(measured) vs search \(result.measuredKLD)")
        #expect(result.summary.contains("predicted (sum of Taylor sensitivities)") && result.summary.contains("measured"))
        print(String(format: "calibration KLD: predicted %.6f, measured %.6f", result.predictedKLD, result.measuredKLD))

        // The additive prediction ranks random mixes.
        let validation = try #require(result.validation)
        print("validation Spearman \(validation.spearman), median measured / predicted \(validation.medianRatio)")
        #expect(validation.rows.count == 5)
        #expect(validation.spearman > 0.6)

        // Held-out: better than uniform q4_K at equal or larger size, and than the random mix at equal size.
        #expect(result.heldOut.map(\.name) == ["mpq", "uniform q4_K", "random control"])
        if result.heldOut.count == 3 {
            let (mine, flat, random) = (result.heldOut[0], result.heldOut[1], result.heldOut[2])
            #expect(mine.fileBytes <= flat.fileBytes && random.fileBytes <= mine.fileBytes)
            #expect(mine.result.kld!.mean <= flat.result.kld!.mean, "held-out KLD mpq \(mine.result.kld!.mean) vs uniform \(flat.result.kld!.mean)")
            #expect(mine.result.kld!.mean < random.result.kld!.mean, "held-out KLD mpq \(mine.result.kld!.mean) vs random \(random.result.kld!.mean)")
        }
        let control = try #require(result.randomControl)
        #expect(control.choice == (try GGUFRandomAllocation.choice(space: space, target: .fileBytes(result.fileBytes), seed: 7)))
        #expect(result.measuredKLD < control.measuredKLD)
        #expect(control.choice != result.choice && space.fileBytes(control.choice) <= result.fileBytes)
        #expect(space.groups.indices.allSatisfy { g in
            var raised = control.choice
            raised[g] += 1
            return raised[g] == space.groups[g].candidates.count || space.fileBytes(raised) > result.fileBytes
        }, "the random mix is not just under the size")

        // Interrupted run: drop the cached dL of two passes, as if killed part-way; the rerun
        // recomputes them and gives the identical result.
        let cacheFile = try #require(FileManager.default.enumerator(atPath: options.cacheFolder!)?
            .compactMap { $0 as? String }.first { $0.hasSuffix("scores.json") })
        let cacheURL = URL(fileURLWithPath: options.cacheFolder!).appendingPathComponent(cacheFile)
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: cacheURL)) as? [String: Any])
        var entries = try #require(json["entries"] as? [String: Any])
        let before = entries.count
        entries = entries.filter { !($0.key.hasPrefix("taylor|2|") || $0.key.hasPrefix("taylor|5|")) }
        #expect(entries.count < before)
        json["entries"] = entries
        try JSONSerialization.data(withJSONObject: json).write(to: cacheURL)
        options.output = folder.appendingPathComponent("out2").path
        options.evaluationText = nil
        options.taylor.validationConfigurations = 0
        options.randomControlSeed = nil
        let again = try GGUFTypeSearchWorkflow(options).run()
        #expect(again.taylor?.sensitivity == taylor.sensitivity)
        #expect(again.types == result.types)
        #expect(again.measuredKLD == result.measuredKLD)
        #expect(try Data(contentsOf: written) == Data(contentsOf: URL(fileURLWithPath: options.output!).appendingPathComponent("model.gguf")))

        // A decode-speed limit from the measured per-type table, halfway from the program's mix to the
        // fastest: the program meets both it and the size, from the same (cached) sensitivities.
        options.speedTable = repositoryRoot.appendingPathComponent("bench/reference/tiny-llama-speed.json").path
        let speeds = try GGUFTypeSearchWorkflow(options).prepare().speeds
        let speed = try #require(speeds.first)
        #expect(speed.phase == .decode && speeds.count == 2)
        let programMilliseconds = speed.milliseconds(taylor.solution.choice)
        try #require(programMilliseconds > speed.reachable.lowerBound * (1 + 1e-6), "the program's mix is already the fastest")
        options.maxMillisecondsPerToken = (programMilliseconds + speed.reachable.lowerBound) / 2
        options.output = folder.appendingPathComponent("out3").path
        let fast = try GGUFTypeSearchWorkflow(options).run()
        let fastProgram = try #require(fast.taylor?.solution.choice)
        #expect(fast.taylor?.sensitivity == taylor.sensitivity)
        #expect(speed.milliseconds(fast.choice) <= options.maxMillisecondsPerToken! && fast.fileBytes <= budget)
        #expect(speed.milliseconds(fastProgram) <= options.maxMillisecondsPerToken! && fastProgram != taylor.solution.choice)
        #expect(fast.summary.contains("speed limit: predicted decode <=") && fast.summary.contains("ms/token"))
        let csv = try String(contentsOf: URL(fileURLWithPath: options.output!).appendingPathComponent("sensitivity.csv"), encoding: .utf8)
        #expect(csv.hasPrefix("group,") && csv.split(separator: "\n")[0].hasSuffix(",decode_ms_per_token,prefill_ms_per_token"))
    }
}
