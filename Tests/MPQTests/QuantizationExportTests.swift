import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Simulation equals runtime: every quantizer of our fake-quantized
/// simulation gives what ONNX Runtime gives on our exported QDQ model, within
/// one step, and the end-to-end outputs agree.
@Suite(.serialized) struct QuantizationExportTests {
    let folder = temporaryFolder("mpq-qdq")

    /// Quantizes `modelPath` on `data`, exports QDQ, and checks every activation
    /// quantizer against ONNX Runtime running the exported graph as written
    /// (optimizations off) on the first `probes` samples, teacher-forced: each
    /// of our quantized values is compared with ORT's and then replaced by it,
    /// so a rounding flip from a different float summation order in one layer
    /// is checked there instead of cascading through the rest of the network.
    /// Returns the worst difference per quantizer in units of its step, and
    /// the end-to-end outputs of both runtimes over all samples.
    func checkQuantizers(_ modelPath: String, data: CalibrationData, config: QuantizationConfig, probes: Int = 4) throws
        -> (worstSteps: [String: Double], simulated: [String: Tensor], exported: [String: Tensor]) {
        let model = try Model(contentsOf: modelPath)
        let placement = QuantizerPlacement(graph: model.graph)
        let parameters = try QuantizationCalibrator.parameters(graph: model.graph, placement: placement, config: config, data: data)
        let quantized = try QuantizedModel(graph: model.graph, placement: placement, config: config, parameters: parameters)
        let qdq = folder.appendingPathComponent("model.qdq.onnx").path
        try QDQExport(quantized).write(to: qdq)

        let sites = placement.activations.map(\.value)
        let probe = data.inputs.mapValues { $0.rows(0..<min(probes, data.count)) }
        let probePath = folder.appendingPathComponent("probe.npz").path, sitesPath = folder.appendingPathComponent("sites.txt").path
        let ortSitesPath = folder.appendingPathComponent("ort-sites.npz").path
        try NPZ.write(probe, to: probePath)
        try sites.joined(separator: "\n").write(toFile: sitesPath, atomically: true, encoding: .utf8)
        try runPython(["Tests/Scripts/ort_qdq_sites.py", qdq, probePath, sitesPath, ortSitesPath])
        let reference = try NPZ.read(contentsOf: ortSitesPath)
        var worst: [String: Double] = [:]
        _ = try quantized.run(probe) { site, _, ours in
            guard let index = sites.firstIndex(of: site), let theirs = reference["site\(index)"] else { return nil }
            worst[site] = maxAbsDifference(ours, theirs) / Double(parameters[site]!.scales[0])
            return theirs
        }
        #expect(worst.count == sites.count, "ORT values for \(worst.count) of \(sites.count) quantizers")

        var parts: [String: [Tensor]] = [:]
        for batch in data.batches(of: 16) {
            for (name, value) in try quantized.run(batch) { parts[name, default: []].append(value) }
        }
        let inputs = folder.appendingPathComponent("inputs.npz").path, outputs = folder.appendingPathComponent("outputs.npz").path
        try NPZ.write(data.inputs, to: inputs)
        try runPython(["Tests/Scripts/ort_run_model.py", qdq, inputs, outputs, "16", "--exact"])
        return (worst, try parts.mapValues { try Tensor.concatenate($0, axis: 0) }, try NPZ.read(contentsOf: outputs))
    }

    func expectWithinOneStep(_ worst: [String: Double], _ label: String) {
        // One step, plus the float32 rounding of (q - zero point) * scale, which
        // reaches ~levels x 2^-24 steps: 0.004 steps for 16-bit codes.
        let failing = worst.filter { $0.value > 1.01 }
        #expect(failing.isEmpty, "\(label): quantizers more than one step off ONNX Runtime: \(failing.sorted { $0.value > $1.value }.prefix(5))")
    }

    @Test func mobileNetW8A8PerChannelMatchesOnnxRuntime() throws {
        let calib = folder.appendingPathComponent("calib.npy")
        try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "64"])
        let modelPath = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path
        let data = try CalibrationData(contentsOf: calib.path, graph: Model(contentsOf: modelPath).graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let (worst, simulated, exported) = try checkQuantizers(modelPath, data: data, config: config)
        expectWithinOneStep(worst, "mobilenetv2 w8a8")
        // End to end, rounding flips cascade through 52 layers; the classes still agree
        // (measured: 56+ of 64 on an AVX2 CPU, 53 on an AVX-512 VNNI CPU, whose kernels sum in another order).
        let agreement = zip(top1(simulated["logits"]!), top1(exported["logits"]!)).filter { $0 == $1 }.count
        #expect(agreement >= 52, "top-1 of simulation and ONNX Runtime agree on \(agreement) of 64")
    }

    @Test func miniLMW8A8MatchesOnnxRuntime() throws {
        let tokens = folder.appendingPathComponent("tokens.npz")
        try runPython(["Tests/Scripts/make_text_inputs.py",
                       fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2-tokenizer/tokenizer.json").path,
                       fixturesFolder.appendingPathComponent("data/text/hamlet_gut.txt").path, tokens.path, "64"])
        let modelPath = fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path
        let data = try CalibrationData(contentsOf: tokens.path, graph: Model(contentsOf: modelPath).graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let (worst, simulated, exported) = try checkQuantizers(modelPath, data: data, config: config)
        expectWithinOneStep(worst, "MiniLM w8a8")
        var comparison = OutputComparison()
        comparison.add(reference: exported, quantized: simulated, feeds: data.inputs)
        #expect(comparison.cosineSimilarity! > 0.99, "end-to-end sentence embeddings: cosine \(comparison.cosineSimilarity!)")
    }

    /// Formats ONNX has no type for are still exported faithfully (Clip + wider container);
    /// int4 weights use opset 21's INT4, 16-bit activations its UINT16, per-group scales its block_size.
    @Test func narrowAndGroupedFormatsMatchOnnxRuntime() throws {
        let calib = folder.appendingPathComponent("calib-small.npy")
        try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "16"])
        let modelPath = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path
        let data = try CalibrationData(contentsOf: calib.path, graph: Model(contentsOf: modelPath).graph)
        for (name, config) in [
            ("w4a6 per-channel", QuantizationConfig(weights: try .init(parsing: "int4"), activations: try .init(parsing: "uint6"))),
            ("w8a16", QuantizationConfig(weights: try .init(parsing: "int8"), activations: try .init(parsing: "uint16"))),
            ("w4a8 per-group 16", QuantizationConfig(weights: try .init(parsing: "int4"), activations: try .init(parsing: "uint8"),
                                                     weightGranularity: .perGroup(size: 16))),
        ] {
            let (worst, _, _) = try checkQuantizers(modelPath, data: data, config: config, probes: 2)
            expectWithinOneStep(worst, name)
        }
    }
}
