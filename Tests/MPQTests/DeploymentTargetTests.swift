import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// What mpq reports is what ONNX Runtime delivers as users run it: the exported model gives the same
/// output SQNR in ORT's default session (graph optimisations on, fused integer kernels) as with the
/// optimisations off, and as mpq's own simulation.
@Suite(.serialized) struct DeploymentTargetTests {
    let folder = temporaryFolder("mpq-deploy")
    static let modelPath = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path

    struct Figures {
        var simulated: Double, ortDefault: Double, ortExact: Double
    }

    /// Calibrates on 16 crops (seed 0), exports for `target`, and scores 16 held-out crops (seed 1)
    /// against FP32 in mpq's simulation and in ONNX Runtime with and without its optimisations.
    func exportedFigures(_ config: QuantizationConfig, target: DeploymentTarget, name: String) throws -> Figures {
        let calib = folder.appendingPathComponent("calib.npy"), held = folder.appendingPathComponent("held.npy")
        if !FileManager.default.fileExists(atPath: held.path) {
            try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "16", "--seed", "0"])
            try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, held.path, "--count", "16", "--seed", "1"])
        }
        let graph = try Model(contentsOf: Self.modelPath).graph
        let placement = QuantizerPlacement(graph: graph)
        let adapted = target.adapted(config, placement: placement, graph: graph).config
        let calibration = try CalibrationData(contentsOf: calib.path, graph: graph)
        let evaluation = try CalibrationData(contentsOf: held.path, graph: graph)
        let parameters = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: adapted, data: calibration)
        let quantized = try QuantizedModel(graph: graph, placement: placement, config: adapted, parameters: parameters)
        let qdq = folder.appendingPathComponent("\(name).qdq.onnx").path
        try QDQExport(quantized).write(to: qdq)

        let reference = try InferenceSession(graph: graph)
        var simulated = OutputComparison()
        var fp32: [String: [Tensor]] = [:]
        for batch in evaluation.batches(of: 16) {
            let expected = try reference.run(batch)
            for (k, v) in expected { fp32[k, default: []].append(v) }
            simulated.add(reference: expected, quantized: try quantized.run(batch), feeds: batch)
        }
        let fp32Outputs = try fp32.mapValues { try Tensor.concatenate($0, axis: 0) }
        let inputs = folder.appendingPathComponent("held.npz").path
        try NPZ.write(evaluation.inputs, to: inputs)
        func ortSQNR(exact: Bool) throws -> Double {
            let outputs = folder.appendingPathComponent("\(name)-\(exact ? "exact" : "default").npz").path
            try runPython(["Tests/Scripts/ort_run_model.py", qdq, inputs, outputs, "16"] + (exact ? ["--exact"] : []))
            var comparison = OutputComparison()
            comparison.add(reference: fp32Outputs, quantized: try NPZ.read(contentsOf: outputs), feeds: evaluation.inputs)
            return comparison.sqnr
        }
        return Figures(simulated: simulated.sqnr, ortDefault: try ortSQNR(exact: false), ortExact: try ortSQNR(exact: true))
    }

    @Test("W8A8 per-channel for the host target: ORT default = ORT exact = simulation (0.5 dB)")
    func hostTargetW8A8() throws {
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let figures = try exportedFigures(config, target: .host, name: "w8a8")
        #expect(abs(figures.ortDefault - figures.ortExact) <= 0.5, "\(figures)")
        #expect(abs(figures.ortDefault - figures.simulated) <= 0.5, "\(figures)")
        #expect(figures.ortDefault > 10, "\(figures)")
    }

    /// 16-bit activations with 16-bit weights are the case whose int32 bias overflowed in ORT's
    /// default session (|bias| / (s_x * s_w) up to 1.6e10 on mobilenetv2).
    @Test("Every profile format exports with the same figures in ORT's default and exact sessions", arguments: [
        "w8a16", "w16a16", "w16a8", "w4a8",
    ])
    func formatsAgreeAcrossSessions(preset: String) throws {
        var config = try QuantizationConfig(preset: preset)
        config.weightGranularity = .perChannel
        let figures = try exportedFigures(config, target: .host, name: preset)
        #expect(abs(figures.ortDefault - figures.ortExact) <= 0.5, "\(preset): \(figures)")
    }

    @Test("ort-x86 narrows int8 kernel weights to 7 bits without VNNI, keeps them with VNNI; generic never")
    func weightNarrowing() throws {
        let graph = try Model(contentsOf: Self.modelPath).graph
        let placement = QuantizerPlacement(graph: graph)
        let config = try QuantizationConfig(preset: "w8a8")
        let plain = CPUFeatures(hasAVX2: true, hasAVXVNNI: false, hasAVX512VNNI: false, oneDNNUsesVNNI: false)
        let vnni = CPUFeatures(hasAVX2: true, hasAVXVNNI: true, hasAVX512VNNI: false, oneDNNUsesVNNI: true)
        let narrowed = DeploymentTarget.ortX86.adapted(config, placement: placement, graph: graph, features: plain)
        #expect(narrowed.config.overrides.count == placement.weights.count)
        #expect(narrowed.config.overrides.values.allSatisfy { $0 == .integer(bits: 7, signed: true, symmetric: true) })
        #expect(narrowed.notes.count == 1)
        #expect(DeploymentTarget.ortX86.adapted(config, placement: placement, graph: graph, features: vnni).notes.isEmpty)
        #expect(DeploymentTarget.generic.adapted(config, placement: placement, graph: graph, features: plain).config == config)
        let w4 = try QuantizationConfig(preset: "w4a8")
        #expect(DeploymentTarget.ortX86.adapted(w4, placement: placement, graph: graph, features: plain).config == w4)
    }
}
