import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Taylor-IP end to end: loss-MSE sensitivities against true loss changes, block latency
/// sums against whole-model timings, the integer program's choices and its errors.
@Suite(.serialized) struct TaylorSearchTests {
    /// A small residual CNN classifier: conv -> relu -> conv -> relu -> conv, + skip, pool, gemm.
    static func smallClassifier(seed: UInt64 = 3) -> Graph {
        var rng = SeededGenerator(seed: seed)
        let pads: [String: Attribute] = ["pads": .ints([1, 1, 1, 1]), "kernel_shape": .ints([3, 3])]
        let nodes = [
            Node(name: "conv1", opType: "Conv", inputs: ["image", "w1", "b1"], outputs: ["c1"], attributes: pads),
            Node(name: "relu1", opType: "Relu", inputs: ["c1"], outputs: ["r1"]),
            Node(name: "conv2", opType: "Conv", inputs: ["r1", "w2", "b2"], outputs: ["c2"], attributes: pads),
            Node(name: "relu2", opType: "Relu", inputs: ["c2"], outputs: ["r2"]),
            Node(name: "conv3", opType: "Conv", inputs: ["r2", "w3", "b3"], outputs: ["c3"], attributes: pads),
            Node(name: "add", opType: "Add", inputs: ["r1", "c3"], outputs: ["sum"]),
            Node(name: "pool", opType: "GlobalAveragePool", inputs: ["sum"], outputs: ["pooled"]),
            Node(name: "flatten", opType: "Flatten", inputs: ["pooled"], outputs: ["features"]),
            Node(name: "fc", opType: "Gemm", inputs: ["features", "w4", "b4"], outputs: ["logits"], attributes: ["transB": .int(1)]),
        ]
        let initializers: [String: Tensor] = [
            "w1": Tensor.random([16, 3, 3, 3], in: -0.4...0.4, using: &rng), "b1": Tensor.random([16], in: -0.1...0.1, using: &rng),
            "w2": Tensor.random([16, 16, 3, 3], in: -0.15...0.15, using: &rng), "b2": Tensor.random([16], in: -0.1...0.1, using: &rng),
            "w3": Tensor.random([16, 16, 3, 3], in: -0.15...0.15, using: &rng), "b3": Tensor.random([16], in: -0.1...0.1, using: &rng),
            "w4": Tensor.random([10, 16], in: -0.8...0.8, using: &rng), "b4": Tensor.random([10], in: -0.1...0.1, using: &rng),
        ]
        return Graph(name: "small", nodes: nodes,
                     inputs: [ValueInfo(name: "image", dtype: .float32, shape: [.symbolic("batch"), .fixed(3), .fixed(12), .fixed(12)])],
                     outputs: [ValueInfo(name: "logits", dtype: .float32, shape: [.symbolic("batch"), .fixed(10)])],
                     initializers: initializers, opset: 17)
    }

    static func randomImages(_ count: Int, graph: Graph, seed: UInt64 = 4) throws -> CalibrationData {
        var rng = SeededGenerator(seed: seed)
        return try CalibrationData(inputs: ["image": Tensor.random([count, 3, 12, 12], in: -2...2, using: &rng)], graph: graph)
    }

    static func fastOptions(_ cache: URL) -> TaylorIntegerProgramSearch.Options {
        var options = TaylorIntegerProgramSearch.Options()
        options.batchSize = 8
        options.cacheRoot = cache
        options.latency.warmup = 1
        options.latency.repetitions = 5
        return options
    }

    static let fineProfile = """
        {"name": "fine", "candidates": ["fp32", "w16a16", "w8a8"], "op_types": {"Output": ["fp32", "w16a16"]}}
        """

    @Test func groupSensitivitiesMatchTrueLossMSEForSmallErrors() throws {
        let graph = Self.smallClassifier()
        let data = try Self.randomImages(8, graph: graph)
        let profile = try HardwareProfile(json: Self.fineProfile)
        let search = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: profile, loss: TaskLoss.pseudoLabelCrossEntropy,
                                                    options: Self.fastOptions(temporaryFolder("mpq-taylor-first-order")))
        let table = try search.lossMSE()
        #expect(search.groups.groups.count >= 4)
        for (g, group) in search.groups.groups.enumerated() {
            #expect(search.candidates[g][0].name == "fp32")
            #expect(table[g][0] == 0, "fp32 changes nothing")
            // One group at 16 bits, the rest fp32: the loss change is first order.
            var assignment = [Int](repeating: 0, count: search.groups.groups.count)
            assignment[g] = 1
            let predicted = table[g][1], measured = try search.measuredLossMSE(assignment)
            #expect(measured > 0, "\(group.name)")
            #expect(abs(predicted - measured) <= 0.2 * measured, "\(group.name) at w16a16: predicted \(predicted), measured \(measured)")
            if search.candidates[g].count > 2 {
                assignment[g] = 2
                let coarse = try search.measuredLossMSE(assignment)
                #expect(abs(table[g][2] - coarse) <= 0.5 * coarse, "\(group.name) at w8a8: predicted \(table[g][2]), measured \(coarse)")
            }
        }
    }

    @Test func integerProgramMeetsTheThresholdAndExplainsInfeasibleOnes() throws {
        let graph = Self.smallClassifier()
        let data = try Self.randomImages(8, graph: graph)
        let search = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: try HardwareProfile.load("cpu-avx2"),
                                                    loss: TaskLoss.pseudoLabelCrossEntropy,
                                                    options: Self.fastOptions(temporaryFolder("mpq-taylor-ip")))
        let blocks = try search.blockTimings()
        #expect(!blocks.isEmpty)
        for block in blocks {
            #expect(block.floatMilliseconds > 0 && block.floatMilliseconds.isFinite)
            for factor in block.factors { #expect(factor.milliseconds.allSatisfy { $0 > 0 && $0.isFinite }) }
        }
        // Every group is chosen by exactly one choice set.
        let covered = try search.choiceSets().flatMap(\.groups).sorted()
        #expect(covered == Array(search.groups.groups.indices))

        let int8 = search.uniformAssignment(try Candidate(parsing: "w7a8"))
        let threshold = try search.predictedLossMSE(int8) / 3
        let choice = try search.solve(objective: .latency, budgets: .init(maxLossMSE: threshold))
        #expect(choice.status == .optimal)
        #expect(choice.predictedLossMSE <= threshold * (1 + 1e-9))
        #expect(choice.predictedMilliseconds > 0)
        // The same program by brute force gives the same gain.
        let (program, _) = try search.program(objective: .latency, budgets: .init(maxLossMSE: threshold))
        let exact = try program.bruteForce()
        let solved = try program.solve()
        #expect(abs(exact.objective - solved.objective) <= 1e-9 * max(1, abs(exact.objective)))

        // Memory objective within a memory budget.
        let memoryChoice = try search.solve(objective: .memory, budgets: .init(maxLossMSE: threshold))
        #expect(memoryChoice.predictedLossMSE <= threshold * (1 + 1e-9))

        // Below zero nothing is reachable: the error names the smallest reachable loss MSE.
        #expect {
            _ = try search.solve(objective: .latency, budgets: .init(maxLossMSE: -1))
        } throws: { error in
            "\(error)".contains("smallest reachable is 0") && "\(error)".contains("predicted loss MSE")
        }
        let sweep = try search.sweep(objective: .latency, budgets: .init(maxLossMSE: 0), count: 3)
        #expect(!sweep.isEmpty)
        for point in sweep {
            #expect(point.choice.predictedLossMSE <= point.threshold * (1 + 1e-9))
            #expect(point.measuredLossMSE >= 0 && point.measuredMilliseconds > 0)
        }
    }

    @Test func additiveBlocksPredictPositiveTimesAndTheProgramOptimisesThem() throws {
        let graph = Self.smallClassifier()
        let data = try Self.randomImages(8, graph: graph)
        var options = Self.fastOptions(temporaryFolder("mpq-taylor-additive"))
        // Every block with more than one configuration is timed one group at a time.
        options.latency.maxConfigurations = 1
        let search = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: try HardwareProfile.load("cpu-avx2"),
                                                    loss: TaskLoss.pseudoLabelCrossEntropy, options: options)
        let blocks = try search.blockTimings()
        #expect(blocks.contains { !$0.isExhaustive })
        for block in blocks where !block.isExhaustive {
            let fastest = try #require(block.fastestMilliseconds)
            #expect(fastest > 0 && block.changeScale >= 0)
        }
        #expect(search.latency.noise.timings > 0)
        var rng = SeededGenerator(seed: 12)
        for _ in 0..<16 {
            let assignment = search.candidates.map { Int.random(in: 0..<$0.count, using: &rng) }
            let predicted = try search.predictedMilliseconds(assignment)
            let floor = blocks.reduce(0.0) { total, block in
                total + (block.isExhaustive ? block.factors.flatMap(\.milliseconds).reduce(block.baseMilliseconds, min)
                                            : min(block.baseMilliseconds, block.fastestMilliseconds ?? block.baseMilliseconds))
            }
            #expect(predicted >= floor * (1 - 1e-12) && predicted > 0, "\(assignment): \(predicted) ms")
        }
        // The program's gain is the prediction's saving against every group at its first candidate; the
        // choice comes within the timing resolution of the optimal saving.
        let base = [Int](repeating: 0, count: search.groups.groups.count)
        let threshold = try search.predictedLossMSE(search.uniformAssignment(try Candidate(parsing: "w7a8"))) / 2
        let (program, _) = try search.program(objective: .latency, budgets: .init(maxLossMSE: threshold))
        let solution = try program.solve()
        let choice = try search.solve(objective: .latency, budgets: .init(maxLossMSE: threshold))
        let slack = options.latency.resolution * (try search.predictedMilliseconds(base) - solution.objective)
        #expect(try search.predictedMilliseconds(base) - choice.predictedMilliseconds >= solution.objective - slack - 1e-9)
        // Among the choices within the timing resolution of the optimal gain, the solve keeps the least predicted loss MSE.
        var leastLoss = Double.infinity
        var current = [Int](repeating: 0, count: program.blocks.count)
        while true {
            let options = zip(program.blocks, current).map { $0[$1] }
            let gain = options.reduce(0.0) { $0 + $1.gain }, loss = options.reduce(0.0) { $0 + $1.costs[0] }
            if loss <= threshold * (1 + 1e-9) && gain >= solution.objective - slack - 1e-9 { leastLoss = min(leastLoss, loss) }
            guard let b = current.indices.last(where: { current[$0] + 1 < program.blocks[$0].count }) else { break }
            current[b] += 1
            for later in (b + 1)..<current.count { current[later] = 0 }
        }
        #expect(abs(choice.predictedLossMSE - leastLoss) <= 1e-9 * max(1, leastLoss), "\(choice.predictedLossMSE) vs \(leastLoss)")
    }

    @Test func onlyEightBitCandidatesMakeSmallThresholdsInfeasible() throws {
        let graph = Self.smallClassifier()
        let data = try Self.randomImages(4, graph: graph)
        let profile = try HardwareProfile.load("default").restricted(to: ["w8a8", "w4a8"])
        let search = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: profile, loss: TaskLoss.pseudoLabelCrossEntropy,
                                                    options: Self.fastOptions(temporaryFolder("mpq-taylor-infeasible")))
        let smallest = try search.predictedLossMSE(search.uniformAssignment(try Candidate(parsing: "w8a8")))
        #expect(smallest > 0)
        #expect {
            _ = try search.solve(objective: .bops, budgets: .init(maxLossMSE: smallest / 2))
        } throws: { error in
            "\(error)".contains("no configuration meets predicted loss MSE") && "\(error)".contains(String(format: "%.4g", smallest))
        }
    }

    @Test func badLabelsAndModelsWithoutGradientsAreClearErrors() throws {
        let graph = Self.smallClassifier()
        let data = try Self.randomImages(4, graph: graph)
        let options = Self.fastOptions(temporaryFolder("mpq-taylor-errors"))
        let profile = try HardwareProfile.load("cpu-avx2")
        #expect(throws: MPQError.shapeMismatch("3 labels for 4 calibration samples with output 'logits' [4, 10]: expected 4 (one per sample)")) {
            _ = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: profile, loss: TaskLoss.crossEntropy(labels: [1, 2, 3]),
                                               options: options)
        }
        // The output depends on the input only through its shape.
        let shapeOnly = Graph(name: "shape", nodes: [
            Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
            Node(name: "cast", opType: "Cast", inputs: ["s"], outputs: ["y"], attributes: ["to": .int(1)]),
        ], inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbolic("n"), .fixed(3)])],
           outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)], initializers: [:], opset: 17)
        var rng = SeededGenerator(seed: 1)
        let shapeData = try CalibrationData(inputs: ["x": Tensor.random([2, 3], using: &rng)], graph: shapeOnly)
        #expect(throws: MPQError.invalidInput("no differentiable path from the model's float inputs and weights to output 'y'")) {
            _ = try TaylorIntegerProgramSearch(graph: shapeOnly, data: shapeData, profile: profile,
                                               loss: TaskLoss.randomProjection(count: 2, seed: 1), options: options)
        }
    }

    static let mobileNetCache = temporaryFolder("mpq-taylor-mobilenet")

    /// Pseudo-label cross-entropy (the classifier default) and random projections of the logits on
    /// 8 images. The cross-entropy's own curvature makes its loss change second order for the most
    /// sensitive layer (features.1's depthwise convolution at 7 bits: measured about 4x predicted with
    /// 64 images, within 3% at 12 bits, so the gradients are right), so its Spearman stays near 0.8;
    /// the projections are linear in the logits (that layer alone: predicted 210, measured 206) and
    /// reach 0.94 with 64 images. Few images add sampling noise to both (bench/taylor_validation.sh
    /// gives the 64-image numbers).
    @Test func mobileNetPredictedLossMSERanksRandomConfigurations() throws {
        let calib = Self.mobileNetCache.appendingPathComponent("calib8.npy")
        if !FileManager.default.fileExists(atPath: calib.path) {
            _ = try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "8"])
        }
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path).graph
        let data = try CalibrationData(contentsOf: calib.path, graph: graph)
        var options = Self.fastOptions(Self.mobileNetCache)
        options.session = SessionOptions(threads: 2)
        var spearman: [String: Double] = [:]
        for (name, loss) in [("pseudo-label", TaskLoss.pseudoLabelCrossEntropy), ("random-projection", .randomProjection(count: 4, seed: 1))] {
            let search = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: try HardwareProfile.load("cpu-avx2"),
                                                        loss: loss, options: options)
            let validation = try TaylorValidation.measure(search, count: 20, measuresLatency: false, singleGroupCount: 0)
            #expect(validation.rows.count == 20)
            #expect(validation.rows.allSatisfy { $0.predictedLossMSE >= 0 && $0.measuredLossMSE >= 0 })
            spearman[name] = validation.lossSpearman
            print("mobilenetv2, 8 images, \(name), 20 random configurations: Spearman(predicted, measured loss MSE) = \(validation.lossSpearman)")
        }
        // Reached (debug, 8 images): 0.795 and 0.860 on an AVX2 CPU, 0.738 and 0.857 on an AVX-512 VNNI
        // CPU (oneDNN's kernels sum in another order there). The 0.9 target is met by the projections with
        // 64 images (0.944 in release); pseudo-label cross-entropy stays at 0.82 there (see above).
        #expect(try #require(spearman["pseudo-label"]) >= 0.7)
        #expect(try #require(spearman["random-projection"]) >= 0.8)
    }

    @Test func commandLineWritesTheChosenConfigurationAndTheFront() throws {
        let folder = temporaryFolder("mpq-taylor-cli")
        let modelPath = folder.appendingPathComponent("small.onnx").path
        try Model(graph: Self.smallClassifier()).write(to: modelPath)
        let calib = folder.appendingPathComponent("calib.npy").path
        var rng = SeededGenerator(seed: 4)
        try NPY.write(Tensor.random([6, 3, 12, 12], in: -2...2, using: &rng), to: calib)
        let out = folder.appendingPathComponent("out").path
        let common = ["search", modelPath, "--method", "taylor-ip", "--profile", "cpu-avx2", "--calib", calib,
                      "--batch-size", "3", "--cache", folder.appendingPathComponent("cache").path, "--out", out]
        let result = try mpq(common + ["--max-loss-mse", "1e-3", "--sweep", "--sweep-points", "3"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("CBC: optimal"), "\(result.stdout)")
        for name in ["config.json", "model.qdq.onnx", "encodings.json", "report.json", "predicted.csv", "latency.csv",
                     "sensitivity.csv", "front.csv", "front.svg"] {
            #expect(FileManager.default.fileExists(atPath: (out as NSString).appendingPathComponent(name)), "\(name)")
        }
        let graph = Self.smallClassifier()
        let config = try QuantizationConfig.load((out as NSString).appendingPathComponent("config.json"),
                                                 placement: QuantizerPlacement(graph: graph))
        #expect(!config.overrides.isEmpty)
        let predicted = try String(contentsOfFile: (out as NSString).appendingPathComponent("predicted.csv"), encoding: .utf8)
        #expect(predicted.contains("loss_mse,") && predicted.contains("latency_ms,"))

        // Labels of the wrong shape: one line naming the shapes.
        let labels = folder.appendingPathComponent("labels.npy").path
        try NPY.write(Tensor(shape: [4], scalars: [Int64](repeating: 1, count: 4)), to: labels)
        try CommandLineErrorTests().expectCleanFailure(common + ["--max-loss-mse", "1e-3", "--loss", "labels", "--labels", labels],
                                   mentions: ["labels.npy", "[4]", "6"])
    }

    @Test func miniLMBlockLatenciesSumToTheDeployedModel() throws {
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path).graph
        var rng = SeededGenerator(seed: 8)
        let (count, length) = (2, 8)
        let ids = (0..<(count * length)).map { _ in Int64.random(in: 1000..<30000, using: &rng) }
        let data = try CalibrationData(inputs: [
            "input_ids": Tensor(shape: [count, length], scalars: ids),
            "attention_mask": Tensor(shape: [count, length], scalars: [Int64](repeating: 1, count: count * length)),
            "token_type_ids": Tensor(shape: [count, length], scalars: [Int64](repeating: 0, count: count * length)),
        ], graph: graph)
        let placement = QuantizerPlacement(graph: graph)
        let profile = try HardwareProfile.load("cpu-avx2")
        let groups = try QuantizerGroups(graph: graph, placement: placement)
        let candidates = try groups.groups.map { try profile.allowedCandidates(for: $0).sorted { $0.isMorePrecise(than: $1) } }
        let calibration = try CandidateCalibration(graph: graph, placement: placement, data: data, batchSize: count)
        var options = BlockLatency.Options()
        // One thread: on a loaded 2-core machine, two OpenMP threads stall at barriers in 4 ms scheduler ticks.
        options.session = SessionOptions(threads: 1)
        options.warmup = 2
        options.repetitions = 7
        let latency = try BlockLatency(graph: graph, groups: groups.groups, candidates: candidates, calibration: calibration,
                                       feeds: data.inputs.mapValues { $0.rows(0..<1) }, options: options,
                                       cacheRoot: temporaryFolder("mpq-taylor-minilm"))
        let blocks = try latency.measure()
        #expect(blocks.count == latency.partition.blocks.count)
        #expect(Set(blocks.flatMap(\.groups) + latency.unplacedGroups) == Set(groups.groups.indices))
        let int8 = try Candidate(parsing: "w7a8")
        for (name, assignment) in [("fp32", candidates.map { $0.firstIndex { $0.name == "fp32" } ?? 0 }),
                                   ("w7a8", candidates.map { $0.firstIndex(of: int8) ?? 0 })] {
            let predicted = latency.predictedMilliseconds(assignment, blocks: blocks)
            let measured = try latency.measuredMilliseconds(assignment)
            #expect(predicted > 0 && predicted.isFinite && measured > 0 && measured.isFinite)
            print(String(format: "MiniLM (1 x 8 tokens, debug build) %@: sum of blocks %.3f ms, whole model %.3f ms, error %.1f%%",
                         name, predicted, measured, abs(predicted - measured) / measured * 100))
        }
    }
}
