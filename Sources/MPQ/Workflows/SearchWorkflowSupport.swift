import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// The options both search workflows share (`ParetoSearchWorkflow.Options`, `TaylorSearchWorkflow.Options`).
public protocol SearchWorkflowOptions {
    var model: String { get set }
    var calibrationData: String { get set }
    var evaluationData: String? { get set }
    var candidates: [String]? { get set }
    var profile: String { get set }
    var deployment: DeploymentTarget { get set }
    var labels: String? { get set }
    var cacheFolder: String? { get set }
    var activationRange: RangeMethod { get set }
    var weightRange: RangeMethod { get set }
    var batchSize: Int { get set }
    var session: SessionOptions { get set }
    var output: String? { get set }
}

extension ParetoSearchWorkflow.Options: SearchWorkflowOptions {}
extension TaylorSearchWorkflow.Options: SearchWorkflowOptions {}

/// What both search workflows load before searching: the model, the calibration data (ranges and
/// sensitivities), the held-out data (scores of the chosen point and the final check) and the
/// hardware profile restricted to the candidates and adapted to the deployment target.
struct SearchInputs {
    var graph: Graph
    var data: CalibrationData
    var heldOut: CalibrationData?
    var profile: HardwareProfile

    init(_ options: some SearchWorkflowOptions, progress: ProgressReporter) throws {
        var hardware = try HardwareProfile.load(options.profile)
        if let candidates = options.candidates { hardware = try hardware.restricted(to: candidates) }
        let deployed = hardware.deployed(on: options.deployment)
        for note in deployed.notes { progress.note("warning: \(note)") }
        profile = deployed.profile
        graph = try Model(contentsOf: options.model).graph
        // The export at the most demanding candidate formats, before any calibration.
        _ = try QDQExport.checkExportable(graph, formats: profile.candidates.flatMap { [$0.weights, $0.activations] },
                                          granularity: .perChannel)
        data = try CalibrationData(contentsOf: options.calibrationData, graph: graph)
        heldOut = try options.evaluationData.map { try CalibrationData(contentsOf: $0, graph: graph) }
    }

    /// The data the chosen point's report is measured on.
    var evaluated: CalibrationData { heldOut ?? data }
}

/// Checks shared by both searches' options.
enum SearchOptionChecks {
    static func check(_ options: some SearchWorkflowOptions) throws {
        let (batchSize, weightRange, cacheFolder, output) = (options.batchSize, options.weightRange, options.cacheFolder, options.output)
        guard batchSize >= 1 else { throw MPQError.invalidInput("batch size \(batchSize) must be at least 1") }
        if weightRange == .percentile { throw MPQError.invalidInput("weight range percentile: weights take minmax or mse") }
        if let output { try OutputFolder.check(output) }
        if let cacheFolder { try OutputFolder.check(cacheFolder, option: "--cache") }
    }
}

/// A metric of quantized models against FP32 on fixed data (the held-out check of a Pareto search).
struct HeldOutScorer {
    let metric: SearchMetric
    let batches: [[String: Tensor]]
    let references: [[String: Tensor]]

    init(graph: Graph, data: CalibrationData, metric: SearchMetric, batchSize: Int, session: SessionOptions) throws {
        self.metric = metric
        batches = data.batches(of: batchSize)
        let reference = try InferenceSession(graph: graph, options: session)
        references = try batches.map { try reference.run($0) }
    }

    func score(_ model: QuantizedModel) throws -> Double {
        var accumulator = ScoreAccumulator(metric: metric)
        for (batch, reference) in zip(batches, references) {
            accumulator.add(reference: reference, quantized: try model.run(batch), feeds: batch, labels: nil)
        }
        return try accumulator.value()
    }
}
