import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// The library workflows behind `mpq quantize` and `mpq search`: the same files as the tool,
/// all-or-nothing output folders, impossible targets rejected, and the opset-11 Softmax export.
@Suite(.serialized) struct WorkflowTests {
    let folder = temporaryFolder("mpq-workflows")

    /// The residual test model, 8 calibration and 8 held-out samples, as files.
    func files() throws -> (model: String, calib: String, eval: String) {
        let model = folder.appendingPathComponent("residual.onnx").path
        try Model(graph: residualTestGraph()).write(to: model)
        var rng = SeededGenerator(seed: 3)
        let calib = folder.appendingPathComponent("calib.npy").path, eval = folder.appendingPathComponent("eval.npy").path
        try NPY.write(.random([8, 3, 8, 8], in: -1...1, using: &rng), to: calib)
        try NPY.write(.random([8, 3, 8, 8], in: -1...1, using: &rng), to: eval)
        return (model, calib, eval)
    }

    /// Every file of a folder and its bytes.
    func contents(_ path: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            result[name] = try Data(contentsOf: URL(fileURLWithPath: path).appendingPathComponent(name))
        }
        return result
    }

    /// Names in `parent` other than the model and data files (staging folders left behind would show here).
    func leftovers(_ parent: URL, expected: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: parent.path).filter { !expected.contains($0) }.sorted()
    }

    @Test func quantizationWorkflowWritesWhatTheToolWrites() throws {
        let (model, calib, eval) = try files()
        let cli = folder.appendingPathComponent("cli-quantize").path, swift = folder.appendingPathComponent("swift-quantize").path
        let result = try mpq(["quantize", model, "--calib", calib, "--eval", eval, "--config", "w8a8", "--per-channel", "--out", cli])
        #expect(result.status == 0, "\(result.stderr)")
        var options = QuantizationWorkflow.Options(model: model, calibrationData: calib, config: "w8a8")
        options.evaluationData = eval
        options.perChannel = true
        options.output = swift
        let workflow = try QuantizationWorkflow(options).run()
        #expect(workflow.report.heldOut && result.stdout.contains(workflow.report.summary))
        let (a, b) = (try contents(cli), try contents(swift))
        #expect(Set(a.keys) == ["model.qdq.onnx", "encodings.json", "report.json"] && Set(b.keys) == Set(a.keys))
        for name in a.keys { #expect(a[name] == b[name], "\(name) differs between mpq quantize and QuantizationWorkflow") }
    }

    @Test func paretoWorkflowWritesWhatTheToolWritesAndChecksTheHeldOutData() throws {
        let (model, calib, eval) = try files()
        let cache = folder.appendingPathComponent("cache").path
        let cli = folder.appendingPathComponent("cli-pareto").path, swift = folder.appendingPathComponent("swift-pareto").path
        let result = try mpq(["search", "pareto", model, "--calib", calib, "--eval", eval, "--candidates", "w8a8,w4a8,w8a16,w16a16",
                              "--target-sqnr", "25", "--cache", cache, "--out", cli])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("held-out --eval data: sqnr"))
        var options = ParetoSearchWorkflow.Options(model: model, calibrationData: calib)
        options.evaluationData = eval
        options.candidates = ["w8a8", "w4a8", "w8a16", "w16a16"]
        options.target = .score(25)
        options.cacheFolder = cache
        options.output = swift
        let workflow = try ParetoSearchWorkflow(options).run()
        let (a, b) = (try contents(cli), try contents(swift))
        #expect(Set(a.keys) == Set(b.keys) && a.count == 9, "\(a.keys.sorted()) vs \(b.keys.sorted())")
        // pareto.json and report.html carry run times; everything else is the same bytes.
        for name in a.keys where !["pareto.json", "report.html"].contains(name) {
            #expect(a[name] == b[name], "\(name) differs between mpq search pareto and ParetoSearchWorkflow")
        }
        let report = try JSONSerialization.jsonObject(with: try #require(b["report.json"])) as? [String: Any]
        let search = try #require(report?["search"] as? [String: Any])
        let heldOut = try #require(search["held_out_score"] as? Double)
        #expect(abs(try #require(workflow.heldOutScore) - heldOut) <= 1e-9 * max(1, abs(heldOut)))
        #expect((search["target_held_on_held_out"] as? Bool) == (heldOut >= 25))
        #expect(report?["held_out"] as? Bool == true && search["calibration_score"] is Double)

        // `--method` is an alias of the subcommand.
        let alias = folder.appendingPathComponent("cli-alias").path
        let aliased = try mpq(["search", model, "--method", "pareto", "--calib", calib, "--eval", eval, "--candidates", "w8a8,w4a8,w8a16,w16a16",
                               "--target-sqnr", "25", "--cache", cache, "--out", alias])
        let aliasFiles = try contents(alias)
        #expect(aliased.status == 0 && aliasFiles["config.json"] == a["config.json"], "\(aliased.stderr)")
    }

    @Test func taylorWorkflowWritesWhatTheToolWritesAndChecksTheHeldOutData() throws {
        let model = folder.appendingPathComponent("small.onnx").path
        try Model(graph: TaylorSearchTests.smallClassifier()).write(to: model)
        var rng = SeededGenerator(seed: 4)
        let calib = folder.appendingPathComponent("small-calib.npy").path, eval = folder.appendingPathComponent("small-eval.npy").path
        try NPY.write(Tensor.random([6, 3, 12, 12], in: -2...2, using: &rng), to: calib)
        try NPY.write(Tensor.random([6, 3, 12, 12], in: -2...2, using: &rng), to: eval)
        let cache = folder.appendingPathComponent("cache-taylor").path
        let cli = folder.appendingPathComponent("cli-taylor").path, swift = folder.appendingPathComponent("swift-taylor").path
        let result = try mpq(["search", "taylor-ip", model, "--profile", "cpu-avx2", "--calib", calib, "--eval", eval,
                              "--batch-size", "3", "--max-loss-mse", "1e-3", "--cache", cache, "--out", cli])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("held-out --eval data: measured loss MSE"), "\(result.stdout)")
        var options = TaylorSearchWorkflow.Options(model: model, calibrationData: calib)
        options.profile = "cpu-avx2"
        options.evaluationData = eval
        options.batchSize = 3
        options.maxLossMSE = 1e-3
        options.cacheFolder = cache
        options.output = swift
        let workflow = try TaylorSearchWorkflow(options).run()
        let (a, b) = (try contents(cli), try contents(swift))
        #expect(Set(a.keys) == ["config.json", "predicted.csv", "latency.csv", "sensitivity.csv", "model.qdq.onnx", "encodings.json",
                                "report.json"] && Set(b.keys) == Set(a.keys), "\(a.keys.sorted()) vs \(b.keys.sorted())")
        // Block timings come from the cache; predicted.csv and report.json also hold the chosen model's fresh timing.
        for name in ["config.json", "latency.csv", "sensitivity.csv", "model.qdq.onnx", "encodings.json"] {
            #expect(a[name] == b[name], "\(name) differs between mpq search taylor-ip and TaylorSearchWorkflow")
        }
        let report = try JSONSerialization.jsonObject(with: try #require(b["report.json"])) as? [String: Any]
        let search = try #require(report?["search"] as? [String: Any])
        let heldOut = try #require(search["held_out_loss_mse"] as? Double)
        #expect(abs(try #require(workflow.heldOutLossMSE) - heldOut) <= 1e-12 * max(1, heldOut))
        #expect((search["target_held_on_held_out"] as? Bool) == (heldOut <= 1e-3))
        // How many timings stayed noisy is reported (a loaded machine warns; it does not fail).
        let noise = try #require(search["latency_noise"] as? [String: Any])
        #expect((noise["timings"] as? Int).map { $0 >= 1 } == true && noise["noisy"] is Int && noise["tolerance"] as? Double == 0.05)
        #expect(report?["held_out"] as? Bool == true)
    }

    @Test func aFailedRerunLeavesTheOutputFolderByteIdentical() throws {
        let (model, calib, _) = try files()
        let parent = folder.appendingPathComponent("rerun"), out = parent.appendingPathComponent("out").path
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let cache = folder.appendingPathComponent("cache-rerun").path
        let first = try mpq(["search", "pareto", model, "--calib", calib, "--target-sqnr", "25", "--cache", cache, "--out", out])
        #expect(first.status == 0, "\(first.stderr)")
        let before = try contents(out)
        #expect(before["model.qdq.onnx"] != nil)
        // Fails after the whole search: no point reaches 500 dB.
        let impossible = try mpq(["search", "pareto", model, "--calib", calib, "--target-sqnr", "500", "--cache", cache, "--out", out])
        #expect(impossible.status == 1 && impossible.stderr.contains("reachable"), "\(impossible.stderr)")
        // Fails on the data: a calibration file of the wrong shape.
        let wrong = parent.appendingPathComponent("wrong.npy").path
        try NPY.write(Tensor(zeros: .float32, shape: [2, 5]), to: wrong)
        let badData = try mpq(["quantize", model, "--calib", wrong, "--config", "w8a8", "--out", out])
        #expect(badData.status == 1, "\(badData.stderr)")
        #expect(try contents(out) == before, "a failed run changed --out")
        #expect(try leftovers(parent, expected: ["out", "wrong.npy"]).isEmpty)
        // A run without a target replaces the folder wholly: the chosen point's files go.
        let frontOnly = try mpq(["search", "pareto", model, "--calib", calib, "--cache", cache, "--out", out])
        #expect(frontOnly.status == 0, "\(frontOnly.stderr)")
        #expect(Set(try contents(out).keys) == ["pareto.csv", "pareto.json", "sensitivity.csv", "pareto.svg", "report.html"])
        #expect(try leftovers(parent, expected: ["out", "wrong.npy"]).isEmpty)
    }

    @Test func impossibleTargetsLeaveNothing() throws {
        let (model, calib, _) = try files()
        let parent = folder.appendingPathComponent("impossible")
        let out = parent.appendingPathComponent("deeper/out")
        let cache = folder.appendingPathComponent("cache-impossible").path
        var result = try mpq(["search", "pareto", model, "--calib", calib, "--target-sqnr", "500", "--cache", cache, "--out", out.path])
        #expect(result.status == 1 && result.stderr.contains("closest evaluated point") && result.stderr.contains("reachable: best sqnr"),
                "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: parent.path), "a failed search left \(parent.path)")
        result = try mpq(["search", "pareto", model, "--calib", calib, "--target-cost", "0.001", "--cache", cache, "--out", out.path])
        #expect(result.status == 1 && result.stderr.contains("below the cheapest") && result.stderr.contains("reachable:"), "\(result.stderr)")
        result = try mpq(["search", "taylor-ip", model, "--calib", calib, "--max-loss-mse", "1", "--budget", "memory=1",
                          "--cache", cache, "--out", out.path])
        #expect(result.status == 1 && result.stderr.contains("memory budget 1 is below") && result.stderr.contains("reachable:"),
                "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: parent.path), "a failed search left \(parent.path)")
    }

    /// An opset-11 model with Softmax along a middle axis and LogSoftmax along the last one: per-channel int8
    /// needs opset 13, whose single-axis Softmax differs; the export converts them and ONNX Runtime agrees.
    @Test func opset11SoftmaxExportRunsInOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 11)
        let graph = Graph(
            name: "softmax11",
            nodes: [
                Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["m"]),
                Node(name: "sm", opType: "Softmax", inputs: ["m"], outputs: ["p"], attributes: ["axis": .int(2)]),
                Node(name: "lsm", opType: "LogSoftmax", inputs: ["m"], outputs: ["q"], attributes: ["axis": .int(3)]),
                Node(name: "default", opType: "Softmax", inputs: ["m"], outputs: ["r"]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbolic("batch"), .fixed(3), .fixed(4), .fixed(6)])],
            outputs: ["p", "q", "r"].map { ValueInfo(name: $0, dtype: .float32, shape: nil) },
            initializers: ["w": .random([6, 6], in: -1...1, using: &rng)], opset: 11)
        let data = try CalibrationData(inputs: ["x": .random([8, 3, 4, 6], in: -2...2, using: &rng)], graph: graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let placement = QuantizerPlacement(graph: graph)
        let parameters = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: config, data: data)
        let quantized = try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters)
        let export = try QDQExport(quantized)
        #expect(export.notes.contains { $0.contains("opset raised from 11 to 13") })
        let ops = export.proto.graph.node.map(\.opType)
        #expect(ops.filter { $0 == "Flatten" }.count == 2 && ops.filter { $0 == "Reshape" }.count == 2, "\(ops)")
        let path = folder.appendingPathComponent("softmax11.qdq.onnx").path
        try export.write(to: path)
        let inputs = folder.appendingPathComponent("softmax-in.npz").path, outputs = folder.appendingPathComponent("softmax-out.npz").path
        try NPZ.write(data.inputs, to: inputs)
        try runPython(["Tests/Scripts/ort_run_model.py", path, inputs, outputs, "8", "--exact"])
        let ort = try NPZ.read(contentsOf: outputs)
        let simulated = try quantized.run(data.inputs)
        for name in ["p", "q", "r"] {
            let step = Double(try #require(parameters[name]).scales[0])
            let difference = maxAbsDifference(try #require(simulated[name]), try #require(ort[name]))
            #expect(difference <= 2.01 * step, "\(name): ONNX Runtime differs from the simulation by \(difference) (step \(step))")
        }

        // Hardmax along a middle axis converts the same way (structure only: the runtime has no Hardmax).
        var hardmax = graph
        hardmax.nodes = [Node(name: "hm", opType: "Hardmax", inputs: ["x"], outputs: ["h"], attributes: ["axis": .int(1)])]
        try QDQExport.raiseOpset(&hardmax, to: 13)
        #expect(hardmax.nodes.map(\.opType) == ["Flatten", "Hardmax", "Shape", "Reshape"] && hardmax.opset == 13)
        #expect(try QDQExport.checkExportable(graph, formats: [.float32], granularity: .perTensor) == 11)
    }
}
