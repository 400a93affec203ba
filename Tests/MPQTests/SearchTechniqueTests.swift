import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQQuantization
@testable import MPQRuntime
@testable import MPQSearch

/// Techniques inside the searches (`--techniques`): CLE transforms the model before calibration and
/// phase 1, bias correction refines each candidate weight format once, sensitivities see both, the
/// chosen point exports as QDQ ONNX that ONNX Runtime runs as our simulation does, and report.json
/// lists the techniques. On mobilenetv2's first four blocks (features.0 to features.3, 9 convolutions
/// and a residual Add) with 4 crops and two candidates: phase 1 on the whole model costs about 1 s per
/// (group, candidate) in debug, 110 for two candidates; bench/search_techniques.sh runs the whole model.
@Suite(.serialized) struct SearchTechniqueTests {
    static let folder = temporaryFolder("mpq-search-techniques")

    /// mobilenetv2 up to the residual Add of features.3, as a model file.
    func modelPath() throws -> String {
        let path = Self.folder.appendingPathComponent("mobilenetv2-features0-3.onnx").path
        if FileManager.default.fileExists(atPath: path) { return path }
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path).graph
        let end = try #require(graph.nodes.firstIndex { $0.name == "/features/features.3/Add" })
        let nodes = Array(graph.nodes[...end])
        let read = Set(nodes.flatMap(\.inputs))
        let prefix = Graph(name: graph.name, nodes: nodes, inputs: graph.inputs,
                           outputs: [ValueInfo(name: nodes[end].outputs[0], dtype: .float32, shape: nil)],
                           initializers: graph.initializers.filter { read.contains($0.key) }, opset: graph.opset)
        try Model(graph: prefix).write(to: path)
        return path
    }

    func crops() throws -> String {
        let path = Self.folder.appendingPathComponent("calib4.npy").path
        if !FileManager.default.fileExists(atPath: path) {
            _ = try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, path, "--count", "4"])
        }
        return path
    }

    func options(_ techniques: String, output: String) throws -> ParetoSearchWorkflow.Options {
        var options = ParetoSearchWorkflow.Options(model: try modelPath(), calibrationData: try crops())
        options.candidates = ["w8a8", "w4a8"]
        options.batchSize = 4
        options.cacheFolder = Self.folder.appendingPathComponent("cache").path
        options.techniques = try QuantizationTechniques(parsing: techniques)
        options.target = .relativeCost(0.75)
        options.output = output
        return options
    }

    @Test func paretoSearchWithTechniquesScoresTheTransformedModelAndExportsIt() throws {
        let plain = try ParetoSearchWorkflow(options("none", output: Self.folder.appendingPathComponent("plain").path)).run()
        let out = Self.folder.appendingPathComponent("techniques").path
        let result = try ParetoSearchWorkflow(options("cle,bias-correction", output: out)).run()
        #expect(plain.search.sensitivities.count == result.search.sensitivities.count)
        #expect(plain.search.sensitivities != result.search.sensitivities)

        // The chosen model holds the equalized, bias-corrected float weights and is compared with the model as loaded.
        let model = try #require(result.model)
        let original = try Model(contentsOf: try modelPath()).graph
        #expect(model.reference?.initializers.count == original.initializers.count)
        let conv = try #require(original.nodes.first { $0.opType == "Conv" }?.input(1))
        #expect(model.original.initializers[conv]?.floats() != original.initializers[conv]?.floats())

        // report.json: the techniques, what each did and its run time.
        let report = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("report.json"))) as? [String: Any])
        let search = try #require(report["search"] as? [String: Any])
        let entries = try #require(search["techniques"] as? [[String: Any]])
        #expect(entries.map { $0["technique"] as? String } == ["cle", "bias-correction", "bias-correction"])
        #expect(entries.allSatisfy { ($0["seconds"] as? Double ?? -1) >= 0 && !($0["summary"] as? String ?? "").isEmpty })
        #expect((entries[0]["summary"] as? String ?? "").contains("pairs equalized"))
        #expect((entries[1]["summary"] as? String ?? "").hasPrefix("int8 weights:"))

        // The exported QDQ model, run by ONNX Runtime as written, agrees with the simulation (the tolerance
        // of ParetoSearchTests: one-step rounding flips from other summation orders, at most half the
        // power of the quantization noise).
        let data = try CalibrationData(contentsOf: try crops(), graph: original)
        let inputs = Self.folder.appendingPathComponent("inputs.npz").path, outputs = Self.folder.appendingPathComponent("ort.npz").path
        try NPZ.write(data.inputs, to: inputs)
        _ = try runPython(["Tests/Scripts/ort_run_model.py", (out as NSString).appendingPathComponent("model.qdq.onnx"),
                           inputs, outputs, "4", "--exact"])
        let ort = try NPZ.read(contentsOf: outputs)
        let ours = try model.run(data.inputs)
        let reference = try InferenceSession(graph: original).run(data.inputs)
        var ortVersusFP32 = OutputComparison(), oursVersusORT = OutputComparison()
        ortVersusFP32.add(reference: reference, quantized: ort, feeds: data.inputs)
        oursVersusORT.add(reference: ort, quantized: ours, feeds: data.inputs)
        #expect(oursVersusORT.sqnr >= ortVersusFP32.sqnr + 3, "ours vs ORT \(oursVersusORT.sqnr) dB, ORT vs FP32 \(ortVersusFP32.sqnr) dB")
    }

    /// Taylor-IP takes the same inputs: its weight terms are the refined format's quantized weight and
    /// corrected bias against FP32, and its models carry the refined float values of each site's format.
    @Test func taylorSensitivitiesSeeTheRefinedWeightsAndBiases() throws {
        var shared = SearchOptions(model: try modelPath(), calibrationData: try crops())
        shared.candidates = ["w8a8", "w4a8"]
        shared.techniques = try QuantizationTechniques(parsing: "bias-correction")
        let inputs = try SearchInputs(shared, progress: SilentProgress())
        #expect(inputs.refinements.map(\.format) == inputs.profile.candidates.map(\.weights))
        var options = TaylorIntegerProgramSearch.Options()
        options.batchSize = 4
        options.cacheRoot = Self.folder.appendingPathComponent("cache")
        let plain = try TaylorIntegerProgramSearch(graph: inputs.graph, data: inputs.data, profile: inputs.profile,
                                                   loss: .randomProjection(count: 4, seed: 1), options: options)
        options.refinements = inputs.refinements
        let refined = try TaylorIntegerProgramSearch(graph: inputs.graph, data: inputs.data, profile: inputs.profile,
                                                     loss: .randomProjection(count: 4, seed: 1), options: options)
        let before = try plain.lossMSE(), after = try refined.lossMSE()
        #expect(before != after)
        // The activation-only output group has no weights: unchanged.
        let outputGroup = try #require(refined.groups.groups.firstIndex { $0.weights.isEmpty })
        #expect(before[outputGroup] == after[outputGroup])

        // Every weight site at int4: the model's float biases are the int4 refinement's.
        let int4 = refined.candidates.map { allowed in allowed.firstIndex { $0.name == "w4a8" } ?? 0 }
        let model = try refined.quantizedModel(int4)
        let refinement = try #require(inputs.refinements.last)
        let (weight, bias) = try #require(refinement.biases.first)
        #expect(model.original.initializers[bias.name]?.floats() == bias.value.floats())
        #expect(model.original.initializers[bias.name]?.floats() != inputs.graph.initializers[bias.name]?.floats())
        #expect(refined.formats(int4)[weight] == refinement.format)
    }
}
