import Foundation
import MPQ

extension BenchCommand {
    /// Calibrates `--config`, then times the simulation and real int8 execution: every layer the
    /// int8 kernels run exactly, and the same without depthwise convolutions.
    func int8Timings(_ model: Model, _ feeds: [String: Tensor]) throws
        -> [(key: String, label: String, median: Double, lowered: Int)] {
        guard let config, let calib else { return [] }
        var options = QuantizationWorkflow.Options(model: self.model, calibrationData: calib, config: config)
        options.perChannel = true
        options.session = threadOptions.session
        let (quantized, _) = try QuantizationWorkflow(options).calibrate(model.graph, progress: TerminalProgress())
        let all = try Int8Lowering(quantized)
        for layer in all.skipped { FileHandle.standardError.write(Data("float32: \(layer.node): \(layer.reason)\n".utf8)) }
        let dense = try Int8Lowering(quantized) { (try? $0.int("group", default: 1)) == 1 }
        // As deployed: int8 where the kernels are exact, float32 without fake quantizers elsewhere.
        let deployed = try Int8Lowering(quantized, simulatingTheRest: false)
        let simulation = try InferenceSession(graph: quantized.simulationGraph, options: threadOptions.session)
        let int8 = try InferenceSession(graph: all.graph, options: threadOptions.session)
        let denseInt8 = try InferenceSession(graph: dense.graph, options: threadOptions.session)
        let deployedInt8 = try InferenceSession(graph: deployed.graph, options: threadOptions.session)
        return [
            ("simulation", "simulation (fake quantization)", try time(simulation, feeds).median, 0),
            ("int8", "int8", try time(int8, feeds).median, all.loweredNodes.count),
            ("int8_dense", "int8 except grouped/depthwise conv", try time(denseInt8, feeds).median, dense.loweredNodes.count),
            ("int8_deployed", "int8 deployed (other layers float32, not simulated)", try time(deployedInt8, feeds).median,
             deployed.loweredNodes.count),
        ]
    }
}
