import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Quantization techniques (CLE, SmoothQuant, range search, AdaRound, bias
/// correction): FP32-preserving transforms preserve FP32 outputs, each technique
/// lowers the error of a real model on held-out data, and the transformed model
/// exports as QDQ ONNX that ONNX Runtime runs as our simulation does.
@Suite(.serialized) struct QuantizationTechniqueTests {
    let folder = temporaryFolder("mpq-techniques")
    var mobileNetPath: String { fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path }
    var miniLMPath: String { fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path }

    func crops(_ count: Int, seed: Int, graph: Graph) throws -> CalibrationData {
        let path = folder.appendingPathComponent("crops-\(count)-\(seed).npy").path
        if !FileManager.default.fileExists(atPath: path) {
            try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, path,
                           "--count", "\(count)", "--seed", "\(seed)"])
        }
        return try CalibrationData(contentsOf: path, graph: graph)
    }

    func sentences(_ count: Int, graph: Graph) throws -> CalibrationData {
        let path = folder.appendingPathComponent("tokens-\(count).npz").path
        if !FileManager.default.fileExists(atPath: path) {
            try runPython(["Tests/Scripts/make_text_inputs.py",
                           fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2-tokenizer/tokenizer.json").path,
                           fixturesFolder.appendingPathComponent("data/text/hamlet_gut.txt").path, path, "\(count)"])
        }
        return try CalibrationData(contentsOf: path, graph: graph)
    }

    /// Largest |a - b| over all outputs, relative to the largest |a|.
    func relativeDifference(_ a: [String: Tensor], _ b: [String: Tensor]) -> Double {
        var worst = 0.0, scale = 0.0
        for (name, x) in a {
            guard let y = b[name] else { return .infinity }
            worst = max(worst, maxAbsDifference(x, y))
            scale = max(scale, x.doubles().map(abs).max() ?? 0)
        }
        return worst / max(scale, 1e-30)
    }

    /// Output comparison of a quantized model with the FP32 `reference` over `data`.
    func evaluate(_ model: QuantizedModel, reference: Graph, data: CalibrationData) throws -> OutputComparison {
        let session = try InferenceSession(graph: reference)
        var comparison = OutputComparison()
        for batch in data.batches(of: 16) {
            comparison.add(reference: try session.run(batch), quantized: try model.run(batch), feeds: batch)
        }
        return comparison
    }

    func quantize(_ graph: Graph, config: QuantizationConfig, techniques: QuantizationTechniques, data: CalibrationData)
        throws -> (QuantizedModel, QuantizationTechniques.Report) {
        let placement = QuantizerPlacement(graph: graph)
        let result = try techniques.apply(to: graph, placement: placement, config: config, data: data)
        return (try result.quantizedModel(reference: graph, config: config, data: data), result.report)
    }

    /// Output SQNR on `heldOut` of `graph` quantized with `techniques` calibrated on `calibration`.
    func heldOutSQNR(_ graph: Graph, config: QuantizationConfig, techniques: QuantizationTechniques,
                     calibration: CalibrationData, heldOut: CalibrationData) throws -> Double {
        let (model, report) = try quantize(graph, config: config, techniques: techniques, data: calibration)
        if techniques.techniques.contains(.adaRound) {
            #expect(report.layers.filter { $0.adaRoundError?.isFinite == true }.count >= 50)
        }
        return try evaluate(model, reference: graph, data: heldOut).sqnr
    }

    @Test func crossLayerEqualizationPreservesMobileNet() throws {
        let graph = try Model(contentsOf: mobileNetPath).graph
        let data = try crops(8, seed: 1, graph: graph)
        let result = try CrossLayerEqualization.apply(to: graph)
        #expect(result.pairs.count >= 30, "equalized pairs: \(result.pairs.count)")
        #expect(result.rewrittenClips >= 20)
        let before = try InferenceSession(graph: graph).run(data.inputs)
        let after = try InferenceSession(graph: result.graph).run(data.inputs)
        let difference = relativeDifference(before, after)
        #expect(difference < 1e-5, "relative output difference \(difference)")
        // The weights really changed: the spread of per-channel ranges of the first depthwise conv shrinks.
        let name = graph.nodes.first { $0.opType == "Conv" && ((try? $0.int("group", default: 1)) ?? 1) > 1 }!.inputs[1]
        func spread(_ t: Tensor) -> Float {
            let v = t.floats(), per = v.count / t.shape[0]
            let ranges = (0..<t.shape[0]).map { c in v[(c * per)..<((c + 1) * per)].map(abs).max()! }
            return ranges.max()! / max(ranges.min()!, 1e-12)
        }
        #expect(spread(result.graph.initializers[name]!) < spread(graph.initializers[name]!))
    }

    /// High-bias absorption after CLE on MobileNetV2: biases move from the depthwise convolutions into the 1x1
    /// projections, the FP32 outputs on the calibration samples stay within 1e-5, and between each absorbing
    /// pair the channels' maxima come down while the per-tensor range never widens.
    @Test func highBiasAbsorptionPreservesMobileNetAndLowersChannelMaxima() throws {
        let graph = try Model(contentsOf: mobileNetPath).graph
        let data = try crops(8, seed: 1, graph: graph)
        let equalized = try CrossLayerEqualization.apply(to: graph)
        let result = try HighBiasAbsorption.apply(to: equalized.graph, pairs: equalized.pairs, data: data)
        #expect(result.pairs.count >= 4, "absorbing pairs: \(result.pairs.map(\.conv1))")
        let outputsBefore = try InferenceSession(graph: equalized.graph).run(data.inputs)
        let outputsAfter = try InferenceSession(graph: result.graph).run(data.inputs)
        let difference = relativeDifference(outputsBefore, outputsAfter)
        #expect(difference < 1e-5, "relative output difference \(difference)")
        // Per input of an absorbing Conv2: the per-tensor range and the sum of per-channel maxima.
        func ranges(_ graph: Graph) throws -> [String: (range: Float, channelMaxima: Float)] {
            let inputs = Set(result.pairs.compactMap { pair in graph.nodes.first { $0.name == pair.conv2 }?.inputs[0] })
            var ranges: [String: (range: Float, channelMaxima: Float)] = [:]
            _ = try InferenceSession(graph: graph).run(data.inputs) { name, value in
                guard inputs.contains(name) else { return nil }
                let x = value.floats(), channels = value.shape[1], inner = value.shape.dropFirst(2).reduce(1, *)
                var maxima = [Float](repeating: -.infinity, count: channels)
                for (i, v) in x.enumerated() { maxima[(i / inner) % channels] = max(maxima[(i / inner) % channels], v) }
                ranges[name] = (x.max()! - x.min()!, maxima.reduce(0, +))
                return nil
            }
            return ranges
        }
        let (before, after) = (try ranges(equalized.graph), try ranges(result.graph))
        #expect(!after.isEmpty && after.keys.sorted() == before.keys.sorted())
        for (name, a) in after {
            let b = before[name]!
            #expect(a.range <= b.range * (1 + 1e-5), "\(name): range \(b.range) -> \(a.range)")
            #expect(a.channelMaxima < b.channelMaxima, "\(name): summed channel maxima \(b.channelMaxima) -> \(a.channelMaxima)")
        }
    }

    /// SmoothQuant on MobileNetV2's linear streams (the projections' outputs and residual sums read by 1x1
    /// expansions): the FP32 outputs stay within 1e-5, every smoothed stream's proxy error drops, the widest
    /// stream's channel maxima come closer together, and W8A8 per-channel gains held-out output SQNR.
    @Test func streamSmoothingPreservesMobileNetAndRaisesW8A8() throws {
        let graph = try Model(contentsOf: mobileNetPath).graph
        let calibration = try crops(16, seed: 0, graph: graph), heldOut = try crops(16, seed: 1, graph: graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let result = try StreamSmoothing.apply(to: graph, config: config, data: calibration)
        let applied = result.smoothed.filter { $0.alpha != nil }
        // Seven streams (16, 24, 32, 64, 96, 160 and 320 channels); the residual ones hold 3-7 values.
        #expect(result.smoothed.count == 7 && result.smoothed.map(\.values).max() == 7,
                "streams: \(result.smoothed.map { "\($0.stream) \($0.values)" })")
        #expect(applied.count >= 4, "smoothed: \(result.smoothed.map { "\($0.stream) \($0.alpha ?? -1)" })")
        for s in applied { #expect(s.errorAfter < s.errorBefore) }
        let before = try InferenceSession(graph: graph).run(heldOut.inputs)
        let after = try InferenceSession(graph: result.graph).run(heldOut.inputs)
        let difference = relativeDifference(before, after)
        #expect(difference < 1e-5, "relative output difference \(difference)")
        // The 160-channel residual sum: largest over median channel maximum.
        let sum = "/features/features.16/Add_output_0"
        func channelSpread(_ graph: Graph) throws -> Float {
            var spread: Float = 0
            _ = try InferenceSession(graph: graph).run(calibration.batches(of: 16).first!) { name, value in
                guard name == sum else { return nil }
                let x = value.floats(), channels = value.shape[1], inner = value.shape[2] * value.shape[3]
                var maxima = [Float](repeating: 0, count: channels)
                for (i, v) in x.enumerated() { maxima[(i / inner) % channels] = max(maxima[(i / inner) % channels], abs(v)) }
                spread = maxima.max()! / maxima.sorted()[channels / 2]
                return nil
            }
            return spread
        }
        let (spreadBefore, spreadAfter) = (try channelSpread(graph), try channelSpread(result.graph))
        #expect(spreadAfter < 0.75 * spreadBefore, "channel max / median \(spreadBefore) -> \(spreadAfter)")
        let plainSQNR = try heldOutSQNR(graph, config: config, techniques: QuantizationTechniques(), calibration: calibration,
                                        heldOut: heldOut)
        let smoothedSQNR = try heldOutSQNR(graph, config: config, techniques: QuantizationTechniques([.smoothQuant]),
                                           calibration: calibration, heldOut: heldOut)
        print("MobileNetV2 w8a8 held-out SQNR: nearest \(plainSQNR) dB, smoothquant \(smoothedSQNR) dB")
        #expect(smoothedSQNR > plainSQNR + 0.5)
    }

    /// AdaRound's asymmetric reconstruction (the FP32 layer output on the FP32 input as the target) against
    /// the symmetric one (the float weights on the quantized input) at W4A8 on MobileNetV2: a held-out
    /// output SQNR higher by more than 2 dB.
    @Test func asymmetricReconstructionLiftsMobileNetW4A8() throws {
        let graph = try Model(contentsOf: mobileNetPath).graph
        let calibration = try crops(16, seed: 0, graph: graph), heldOut = try crops(16, seed: 1, graph: graph)
        var config = try QuantizationConfig(preset: "w4a8")
        config.weightGranularity = .perChannel
        var techniques = try QuantizationTechniques(parsing: "seq-mse,adaround")
        techniques.reconstruction.iterations = 20
        techniques.reconstruction.positions = 512
        var symmetricTechniques = techniques
        symmetricTechniques.reconstruction.asymmetricReconstruction = false
        let asymmetricSQNR = try heldOutSQNR(graph, config: config, techniques: techniques, calibration: calibration, heldOut: heldOut)
        let symmetricSQNR = try heldOutSQNR(graph, config: config, techniques: symmetricTechniques, calibration: calibration,
                                            heldOut: heldOut)
        print("MobileNetV2 w4a8 held-out SQNR: symmetric AdaRound \(symmetricSQNR) dB, asymmetric \(asymmetricSQNR) dB")
        #expect(asymmetricSQNR > symmetricSQNR + 2)
    }

    @Test func smoothQuantPreservesMiniLM() throws {
        let graph = try Model(contentsOf: miniLMPath).graph
        let data = try sentences(16, graph: graph)
        let config = try QuantizationConfig(preset: "w8a8")
        let result = try SmoothQuant.apply(to: graph, config: config, data: data)
        let applied = result.smoothed.filter { $0.alpha != nil }
        #expect(applied.count >= 6, "smoothed: \(result.smoothed.map { "\($0.layerNorm) \($0.alpha ?? -1)" })")
        for s in applied { #expect(s.errorAfter < s.errorBefore) }
        let before = try InferenceSession(graph: graph).run(data.inputs)
        let after = try InferenceSession(graph: result.graph).run(data.inputs)
        let difference = relativeDifference(before, after)
        #expect(difference < 1e-5, "relative output difference \(difference)")
    }

    /// W8A8 per-channel on MiniLM: SmoothQuant keeps the held-out sentence embeddings at cosine
    /// similarity >= 0.99 to FP32 (issue 12's target) and closer than plain rounding.
    @Test func smoothQuantKeepsMiniLMW8A8Embeddings() throws {
        let graph = try Model(contentsOf: miniLMPath).graph
        let sentences = try sentences(64, graph: graph)
        let calibration = try CalibrationData(inputs: sentences.inputs.mapValues { $0.rows(0..<32) }, graph: graph)
        let heldOut = try CalibrationData(inputs: sentences.inputs.mapValues { $0.rows(32..<64) }, graph: graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        let (plain, _) = try quantize(graph, config: config, techniques: QuantizationTechniques(), data: calibration)
        let (smoothed, _) = try quantize(graph, config: config, techniques: QuantizationTechniques([.smoothQuant]),
                                         data: calibration)
        let plainCosine = try evaluate(plain, reference: graph, data: heldOut).cosineSimilarity!
        let smoothedCosine = try evaluate(smoothed, reference: graph, data: heldOut).cosineSimilarity!
        print("MiniLM w8a8 held-out cosine: nearest \(plainCosine), smoothquant \(smoothedCosine)")
        #expect(smoothedCosine >= 0.99)
        #expect(smoothedCosine > plainCosine)
    }

    @Test func techniqueNamesParse() throws {
        let t = try QuantizationTechniques(parsing: "cle, adaround,bias-correction")
        #expect(t.techniques == [.crossLayerEqualization, .adaRound, .biasCorrection])
        #expect(try QuantizationTechniques(parsing: "none").isEmpty)
        #expect(try QuantizationTechniques(parsing: "gptq,seq-mse").techniques == [.gptq, .rangeSearch])
        #expect(throws: MPQError.self) { try QuantizationTechniques(parsing: "cle,obq") }
    }

    /// GPTQ on MiniLM's MatMuls at 4-bit weights: every layer's output error at most nearest
    /// rounding's, the sum well below it, and the held-out embedding closer to FP32's. Bias
    /// correction, asked for too, leaves these token-sequence layers alone and says so.
    @Test func gptqLowersMiniLMLayerAndOutputErrors() throws {
        let graph = try Model(contentsOf: miniLMPath).graph
        let calibration = try sentences(16, graph: graph)
        let heldOut = try CalibrationData(inputs: try sentences(32, graph: graph).inputs.mapValues { $0.rows(16..<32) }, graph: graph)
        var config = try QuantizationConfig(preset: "w4a8")
        config.weightGranularity = .perChannel
        let (plain, _) = try quantize(graph, config: config, techniques: QuantizationTechniques(), data: calibration)
        let (refined, report) = try quantize(graph, config: config, techniques: try QuantizationTechniques(parsing: "gptq,bias-correction"),
                                             data: calibration)
        let layers = report.layers.filter { $0.gptqError != nil }
        #expect(layers.count >= 36, "GPTQ layers: \(layers.count)")
        let uncorrected = report.layers.filter(\.skippedBiasCorrection)
        #expect(uncorrected.count >= 36 && uncorrected.allSatisfy { $0.biasCorrection == nil })
        #expect(report.notes.contains { $0.contains("\(uncorrected.count) MatMul / Gemm layers over token sequences left uncorrected") },
                "\(report.notes)")
        for layer in layers { #expect(layer.gptqError!.isFinite) }
        let before = layers.reduce(0) { $0 + $1.nearestError }, after = layers.reduce(0) { $0 + min($1.gptqError!, $1.nearestError) }
        #expect(after < 0.7 * before, "summed layer output MSE \(before) -> \(after)")
        let plainCosine = try evaluate(plain, reference: graph, data: heldOut).cosineSimilarity!
        let gptqCosine = try evaluate(refined, reference: graph, data: heldOut).cosineSimilarity!
        print("MiniLM w4a8 held-out cosine: nearest \(plainCosine), gptq \(gptqCosine); \(report.notes)")
        #expect(gptqCosine > plainCosine)
    }

    /// The transformed, refined model exports as QDQ ONNX and ONNX Runtime (exact session) agrees with the simulation.
    @Test func transformedModelExportsAndMatchesOnnxRuntime() throws {
        let graph = try Model(contentsOf: mobileNetPath).graph
        let calibration = try crops(16, seed: 0, graph: graph), heldOut = try crops(16, seed: 1, graph: graph)
        var config = try QuantizationConfig(preset: "w8a8")
        config.weightGranularity = .perChannel
        // GPTQ rounds the classifier (the one Gemm), AdaRound the convolutions.
        var techniques = try QuantizationTechniques(parsing: "cle,smoothquant,seq-mse,adaround,gptq,bias-correction")
        techniques.reconstruction.iterations = 30
        techniques.reconstruction.positions = 1024
        let (model, report) = try quantize(graph, config: config, techniques: techniques, data: calibration)
        #expect(report.entries.count == 6)
        #expect(report.layers.filter { $0.gptqError != nil }.count == 1 && report.layers.filter { $0.adaRoundError != nil }.count >= 50)
        let qdq = folder.appendingPathComponent("techniques.qdq.onnx").path
        try QDQExport(model).write(to: qdq)
        let inputs = folder.appendingPathComponent("heldout.npz").path, outputs = folder.appendingPathComponent("ort.npz").path
        try NPZ.write(heldOut.inputs, to: inputs)
        try runPython(["Tests/Scripts/ort_run_model.py", qdq, inputs, outputs, "16", "--exact"])
        let exported = try NPZ.read(contentsOf: outputs)
        var simulated: [Tensor] = []
        for batch in heldOut.batches(of: 16) { simulated.append(try model.run(batch)["logits"]!) }
        let ours = try Tensor.concatenate(simulated, axis: 0)
        var comparison = OutputComparison()
        comparison.add(reference: ["logits": ours], quantized: ["logits": exported["logits"]!], feeds: [:])
        // ORT delivers the top-1 agreement with FP32 that the simulation predicts (within 2 of 16 crops: near-tied
        // logits flip with the rounding differences below).
        let reference = try InferenceSession(graph: graph).run(heldOut.inputs)["logits"]!
        func agreementWithFP32(_ logits: Tensor) -> Double {
            var comparison = OutputComparison()
            comparison.add(reference: ["logits": reference], quantized: ["logits": logits], feeds: [:])
            return comparison.top1Agreement!
        }
        let (simulatedAgreement, exportedAgreement) = (agreementWithFP32(ours), agreementWithFP32(exported["logits"]!))
        #expect(abs(simulatedAgreement - exportedAgreement) <= 0.125,
                "top-1 agreement with FP32: simulation \(simulatedAgreement), ONNX Runtime \(exportedAgreement)")
        // End to end, one-step rounding flips from other summation orders cascade through 52 layers
        // (as QuantizationExportTests notes for the plain model); measured 18.6 dB between the runtimes,
        // above the 15-16 dB between either and FP32.
        #expect(comparison.sqnr > 15, "simulation vs ORT SQNR \(comparison.sqnr) dB")
    }
}
