import Foundation
import Testing
@testable import MPQ

/// Simulation equals runtime: ONNX Runtime running our exported QDQ model
/// gives the outputs our fake-quantized simulation gives, within one step of
/// the output quantizer.
@Suite(.serialized) struct QuantizationExportTests {
    let folder = temporaryFolder("mpq-qdq")

    func simulateAndExport(_ modelPath: String, data: CalibrationData, config: QuantizationConfig) throws
        -> (simulated: [String: Tensor], exported: [String: Tensor], model: QuantizedModel) {
        let model = try Model(contentsOf: modelPath)
        let placement = QuantizerPlacement(graph: model.graph)
        let parameters = try QuantizationCalibrator.parameters(graph: model.graph, placement: placement, config: config, data: data)
        let quantized = try QuantizedModel(graph: model.graph, placement: placement, config: config, parameters: parameters)
        var parts: [String: [Tensor]] = [:]
        for batch in data.batches(of: 16) {
            for (name, value) in try quantized.run(batch) { parts[name, default: []].append(value) }
        }
        let simulated = try parts.mapValues { try Tensor.concatenate($0, axis: 0) }
        let qdq = folder.appendingPathComponent("model.qdq.onnx").path
        try QDQExport(quantized).write(to: qdq)
        let inputs = folder.appendingPathComponent("inputs.npz").path, outputs = folder.appendingPathComponent("outputs.npz").path
        try NPZ.write(data.inputs, to: inputs)
        try runPython(["Tests/Scripts/ort_run_model.py", qdq, inputs, outputs, "16"])
        return (simulated, try NPZ.read(contentsOf: outputs), quantized)
    }

    /// Largest difference in units of the output quantizer's step.
    func steps(_ a: Tensor, _ b: Tensor, _ p: QuantizationParameters) -> Double {
        maxAbsDifference(a, b) / Double(p.scales[0])
    }

    @Test func mobileNetW8A8PerChannelMatchesOnnxRuntime() throws {
        let calib = folder.appendingPathComponent("calib.npy")
        try runPython([sharedFolder.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "64"])
        let modelPath = sharedFolder.appendingPathComponent("models/mobilenetv2.onnx").path
        let data = try CalibrationData(contentsOf: calib.path, graph: Model(contentsOf: modelPath).graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let (simulated, exported, model) = try simulateAndExport(modelPath, data: data, config: config)
        let p = model.parameters["logits"]!
        let difference = steps(simulated["logits"]!, exported["logits"]!, p)
        #expect(difference <= 1.0, "max difference \(difference) output steps")
        #expect(top1(simulated["logits"]!) == top1(exported["logits"]!))
    }

    @Test func miniLMW8A8MatchesOnnxRuntime() throws {
        let tokens = folder.appendingPathComponent("tokens.npz")
        try runPython(["Tests/Scripts/make_text_inputs.py",
                       sharedFolder.appendingPathComponent("models/all-MiniLM-L6-v2-tokenizer/tokenizer.json").path,
                       sharedFolder.appendingPathComponent("data/text/hamlet_gut.txt").path, tokens.path, "64"])
        let modelPath = sharedFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path
        let data = try CalibrationData(contentsOf: tokens.path, graph: Model(contentsOf: modelPath).graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let (simulated, exported, model) = try simulateAndExport(modelPath, data: data, config: config)
        let p = model.parameters["last_hidden_state"]!
        let difference = steps(simulated["last_hidden_state"]!, exported["last_hidden_state"]!, p)
        #expect(difference <= 1.0, "max difference \(difference) output steps")
    }

    /// Formats ONNX has no type for are still exported faithfully (Clip + wider container);
    /// int4 weights use opset 21's INT4; per-group scales its block_size.
    @Test func narrowAndGroupedFormatsMatchOnnxRuntime() throws {
        let calib = folder.appendingPathComponent("calib-small.npy")
        try runPython([sharedFolder.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "16"])
        let modelPath = sharedFolder.appendingPathComponent("models/mobilenetv2.onnx").path
        let data = try CalibrationData(contentsOf: calib.path, graph: Model(contentsOf: modelPath).graph)
        for (name, config) in [
            ("w4a6 per-channel", QuantizationConfig(weights: try .init(parsing: "int4"), activations: try .init(parsing: "uint6"))),
            ("w8a16", QuantizationConfig(weights: try .init(parsing: "int8"), activations: try .init(parsing: "uint16"))),
            ("w4a8 per-group 16", QuantizationConfig(weights: try .init(parsing: "int4"), activations: try .init(parsing: "uint8"),
                                                     weightGranularity: .perGroup(size: 16))),
        ] {
            let (simulated, exported, model) = try simulateAndExport(modelPath, data: data, config: config)
            let difference = steps(simulated["logits"]!, exported["logits"]!, model.parameters["logits"]!)
            #expect(difference <= 1.0, "\(name): max difference \(difference) output steps")
        }
    }
}
