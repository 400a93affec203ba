// The README's "Use from Swift" example: quantize a model to W8A8, export it for ONNX Runtime,
// then search per-layer precisions for the cheapest configuration with output SQNR >= 30 dB.
// Usage: swift run QuickStart MODEL.onnx CALIB.npy OUT.qdq.onnx
import MPQ

let arguments = CommandLine.arguments
let graph = try Model(contentsOf: arguments[1]).graph
let calibration = try CalibrationData(contentsOf: arguments[2], graph: graph)
let placement = QuantizerPlacement(graph: graph)
var config = try QuantizationConfig(preset: "w8a8")
config.weightGranularity = .perChannel
config = DeploymentTarget.host.adapted(config, placement: placement, graph: graph).config
let parameters = try QuantizationCalibrator.parameters(graph: graph, placement: placement, config: config, data: calibration)
let quantized = try QuantizedModel(graph: graph, placement: placement, config: config, parameters: parameters)
try QDQExport(quantized).write(to: arguments[3])
print("W8A8 output SQNR", try QuantizationReport(model: quantized, data: calibration).output.sqnr, "dB")

let profile = try HardwareProfile.load("default").restricted(to: ["w8a8", "w16a16"])
let result = try ParetoGreedySearch(graph: graph, data: calibration, profile: profile).run(target: .score(30))
if let chosen = result.chosen { print("cheapest point with SQNR >= 30 dB: relative BOPs", result.front[chosen].relativeCost) }
