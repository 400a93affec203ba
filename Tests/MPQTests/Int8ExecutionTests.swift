import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Real int8 execution (`Int8Lowering`) computes what the simulation of the
/// same configuration computes.
@Suite(.serialized) struct Int8ExecutionTests {
    let folder = temporaryFolder("mpq-int8")

    func mobileNet(samples: Int, config: QuantizationConfig) throws -> (QuantizedModel, CalibrationData) {
        let calib = folder.appendingPathComponent("calib-\(samples).npy")
        if !FileManager.default.fileExists(atPath: calib.path) {
            try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "\(samples)"])
        }
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path).graph
        let data = try CalibrationData(contentsOf: calib.path, graph: graph)
        let placement = QuantizerPlacement(graph: graph)
        let parameters = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: config, data: data)
        return (try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters), data)
    }

    /// Weights of this CPU's exact int8 width, per channel; uint8 activations.
    var int8Config: QuantizationConfig {
        QuantizationConfig(weights: .integer(bits: CPUFeatures.current.int8WeightBits, signed: true, symmetric: true),
                           activations: .integer(bits: 8, signed: false, symmetric: false))
    }

    @Test func mobileNetLayersMatchSimulation() throws {
        let (model, data) = try mobileNet(samples: 16, config: int8Config)
        let lowering = try Int8Lowering(model)
        #expect(lowering.loweredNodes.count == 53, "lowered \(lowering.loweredNodes.count); skipped \(lowering.skipped.map { "\($0.node): \($0.reason)" })")
        #expect(!lowering.graph.nodes.contains { $0.domain.isEmpty && ["Conv", "Gemm"].contains($0.opType) })

        // Teacher-forced: every layer's float output before its output quantizer, from
        // the same inputs, within a small fraction of that quantizer's step.
        let feeds = data.inputs
        var simulated: [String: Tensor] = [:]
        _ = try InferenceSession(graph: model.simulationGraph).run(feeds) { name, value in
            simulated[name] = value
            return nil
        }
        var worst: [String: Double] = [:]
        _ = try InferenceSession(graph: lowering.graph).run(feeds) { name, value in
            guard name.hasSuffix("/float"), let reference = simulated[name] else { return nil }
            let site = String(name.dropLast("/float".count))
            worst[site] = maxAbsDifference(value, reference) / Double(model.parameters[site]!.scales[0])
            return reference
        }
        #expect(worst.count >= 50, "compared \(worst.count) layer outputs")
        let failing = worst.filter { $0.value > 0.02 }
        #expect(failing.isEmpty, "layer outputs off the simulation by more than 0.02 steps: \(failing.sorted { $0.value > $1.value }.prefix(5))")

        // End to end (fused int8 plan), codes that land on the other side of a rounding
        // boundary cascade through 52 layers like extra quantization noise: compare the
        // distance of both to FP32 rather than to each other.
        let fp32 = try InferenceSession(graph: model.original).run(feeds)
        var simulation = OutputComparison(), int8 = OutputComparison()
        simulation.add(reference: fp32, quantized: try model.run(feeds), feeds: feeds)
        int8.add(reference: fp32, quantized: try InferenceSession(graph: lowering.graph).run(feeds), feeds: feeds)
        print("vs FP32: simulation \(simulation.sqnr) dB top-1 \(simulation.top1Agreement!), int8 \(int8.sqnr) dB top-1 \(int8.top1Agreement!)")
        #expect(abs(int8.sqnr - simulation.sqnr) < 1.5)
    }

    /// In the fused plan (no hooks) activations stay uint8 between int8 layers:
    /// every int8 layer but the last convolution (read by the pooling) and the
    /// classifier emits codes, the residual Adds run on codes, no FakeQuantize
    /// is left but the graph output's; and the plan's result stays as close to
    /// FP32 as the simulation (the teacher-forced layer checks above run the
    /// unfused graph; the kernels' requantization is checked code by code in
    /// `Int8KernelTests`).
    @Test func fusedPlanChainsUInt8Codes() throws {
        let (model, data) = try mobileNet(samples: 8, config: int8Config)
        let lowering = try Int8Lowering(model)
        let session = try InferenceSession(graph: lowering.graph)
        let specialized = try session.specialize(inputShapes: data.inputs.mapValues(\.shape))
        let fused = try OperatorFusion.fuse(specialized, outputs: Set(lowering.graph.outputs.map(\.name)))
        let linear = fused.nodes.compactMap { $0.op as? QuantizedLinearOperator }
        let chained = linear.filter { $0.outputQuantization != nil }
        let adds = fused.nodes.filter { $0.op is QuantizedAddOperator }
        let fakeQuantizers = fused.nodes.filter { $0.op is FakeQuantizeOperator }
        print("fused int8 plan: \(linear.count) int8 layers, \(chained.count) emit codes, \(adds.count) integer Adds, "
              + "\(fakeQuantizers.count) FakeQuantize left, \(fused.nodes.count) steps")
        #expect(linear.count == 53)
        #expect(chained.count == 51, "int8 layers emitting codes: \(chained.count)")
        #expect(adds.count == 10)
        #expect(fakeQuantizers.count == 1, "\(fakeQuantizers.map(\.node.name))")
        // ReLU6 before a quantizer calibrated on [0, 6] clips for free.
        let clips = chained.flatMap { op in op.postOps.filter { if case .clip = $0 { return true } else { return false } }.map { (op, $0) } }
        let free = clips.filter { Int8Kernel.isRedundant($0.1, before: $0.0.outputQuantization!) }.count
        print("ReLU6 before requantization: \(clips.count), of which clip for free: \(free)")

        // Deployed (other quantizers dropped, as latency measurements time it): the quantizers of
        // the residual Adds stay, so the plan chains the same way.
        let deployed = try Int8Lowering(model, simulatingTheRest: false)
        let deployedPlan = try OperatorFusion.fuse(
            try InferenceSession(graph: deployed.graph).specialize(inputShapes: data.inputs.mapValues(\.shape)),
            outputs: Set(deployed.graph.outputs.map(\.name)))
        #expect(deployedPlan.nodes.compactMap { ($0.op as? QuantizedLinearOperator)?.outputQuantization }.count == 51)
        #expect(deployedPlan.nodes.filter { $0.op is QuantizedAddOperator }.count == 10)
        #expect(!deployedPlan.nodes.contains { $0.op is FakeQuantizeOperator })

        let fp32 = try InferenceSession(graph: model.original).run(data.inputs)
        var simulation = OutputComparison(), int8 = OutputComparison(), unchained = OutputComparison()
        simulation.add(reference: fp32, quantized: try model.run(data.inputs), feeds: data.inputs)
        int8.add(reference: fp32, quantized: try session.run(data.inputs), feeds: data.inputs)
        // The unfused graph (a hook disables fusion) reads float32 between layers.
        unchained.add(reference: fp32, quantized: try session.run(data.inputs) { _, _ in nil }, feeds: data.inputs)
        print("vs FP32: simulation \(simulation.sqnr) dB, int8 chained \(int8.sqnr) dB, int8 float32 between layers \(unchained.sqnr) dB")
        #expect(abs(int8.sqnr - simulation.sqnr) < 1.5)
    }

    /// The oneDNN per-tensor fake quantizer is bit for bit `Tensor.fakeQuantized`,
    /// at rounding ties, saturation and zero points of both parities.
    @Test func fakeQuantizeNodeEqualsReference() throws {
        var generator = SeededGenerator(seed: 7)
        for (format, minimum, maximum) in [("uint8", -1.3, 4.1), ("int8", -2.0, 2.0), ("uint4", -0.7, 0.4),
                                          ("int16", -5.0, 3.0), ("uint3-sym", -1.0, 1.0)] as [(String, Float, Float)] {
            let p = QuantizationParameters(format: try QuantizationFormat(parsing: format), granularity: .perTensor,
                                           minimums: [minimum], maximums: [maximum])
            let scale = p.scales[0]
            var values = (0..<3000).map { _ in Float.random(in: (2 * minimum)...(2 * maximum), using: &generator) }
            values += (-40...40).map { (Float($0) + 0.5) * scale }   // exact ties
            let x = Tensor(shape: [values.count], scalars: values)
            let node = Node.fakeQuantize("x", output: "y", parameters: p)
            let op = try OperatorRegistry.makeOperator(for: node, opset: 17)
            let ours = try op.run([x], context: ExecutionContext(threads: 2))[0].scalars(as: Float.self)
            let reference = try x.fakeQuantized(p).scalars(as: Float.self)
            let mismatches = zip(ours, reference).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(mismatches == 0, "\(format): \(mismatches) values differ")
        }
    }

    @Test func layersTheKernelsCannotRunExactlyStayInFloat() throws {
        var config = int8Config
        config.weights = .integer(bits: 8, signed: true, symmetric: true)
        let (model, data) = try mobileNet(samples: 2, config: config)
        let lowering = try Int8Lowering(model, weightBits: 7)
        #expect(lowering.loweredNodes.isEmpty)
        #expect(lowering.skipped.count == 53)
        #expect(lowering.skipped.first?.reason.contains("at most 7 bits") == true, "\(lowering.skipped.first?.reason ?? "")")
        // Deployed without int8 layers, the graph is the float graph on quantize-dequantized weights.
        let deployed = try Int8Lowering(model, weightBits: 7, simulatingTheRest: false)
        #expect(!deployed.graph.nodes.contains { !$0.domain.isEmpty })
        let expected = try InferenceSession(graph: model.graph).run(data.inputs)["logits"]!
        #expect(maxAbsDifference(try InferenceSession(graph: deployed.graph).run(data.inputs)["logits"]!, expected) == 0)
        let subset = try Int8Lowering(try mobileNet(samples: 2, config: int8Config).0) { (try? $0.int("group", default: 1)) == 1 }
        #expect(subset.loweredNodes.count == 53 - 17, "depthwise layers excluded: \(subset.loweredNodes.count)")
    }
}
