import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// What both searches take (`ParetoSearchWorkflow.Options.shared`, `TaylorSearchWorkflow.Options.shared`):
/// the model, its data, the hardware profile and candidates, range estimators, the runtime and the
/// output. One struct, so that the two searches read, check and load these the same way.
public struct SearchOptions: Sendable {
    /// The ONNX model searched.
    public var model: String
    /// Ranges and sensitivities come from this data.
    public var calibrationData: String
    /// Held-out data: the chosen point's report and the check that the target holds on it.
    public var evaluationData: String?
    /// Candidates to consider (default: the profile's).
    public var candidates: [String]?
    /// Hardware profile: "default", "cpu-avx2" or a JSON file.
    public var profile = "default"
    /// The runtime the export is shaped for (`--deploy`); default this machine (`host`).
    public var deployment: DeploymentTarget = .host
    /// Class labels (.npy), one per calibration sample: Pareto's accuracy metric, Taylor-IP's labels loss.
    public var labels: String?
    /// Score and latency cache folder (default ~/.cache/mpq).
    public var cacheFolder: String?
    /// How activation ranges are estimated from the calibration data; default MSE-optimal clipping.
    public var activationRange: RangeMethod = .mse
    /// How weight ranges are estimated; default min-max.
    public var weightRange: RangeMethod = .minMax
    /// Calibration samples per forward pass; default 16.
    public var batchSize = 16
    /// Techniques applied before calibration and before phase 1 / the Taylor pass (`--techniques`): graph
    /// transforms (CLE, SmoothQuant) to the FP32 model, per-layer ones (range search, AdaRound, bias
    /// correction) once per candidate weight format; default none.
    public var techniques = QuantizationTechniques()
    /// Runtime settings (threads).
    public var session = SessionOptions()
    /// The output folder (replaced wholly on success); nil: write nothing.
    public var output: String?

    /// Options for searching `model` calibrated on `calibrationData`; the rest at defaults.
    public init(model: String, calibrationData: String) {
        self.model = model
        self.calibrationData = calibrationData
    }

    /// Rejects what no search can run with: a batch size below 1, percentile weight ranges,
    /// output and cache folders that cannot be written.
    func check() throws {
        guard batchSize >= 1 else { throw MPQError.invalidInput("batch size \(batchSize) must be at least 1") }
        if weightRange == .percentile { throw MPQError.invalidInput("weight range percentile: weights take minmax or mse") }
        if let output { try OutputFolder.check(output) }
        if let cacheFolder { try OutputFolder.check(cacheFolder, option: "--cache") }
    }
}

/// A search's options: the shared `SearchOptions` plus the method's own, with the shared ones
/// readable and writable as if they were the method's (`options.batchSize = 8`).
@dynamicMemberLookup
public protocol SearchWorkflowOptions {
    var shared: SearchOptions { get set }
}

extension SearchWorkflowOptions {
    /// A shared option, read or written through the method's options.
    public subscript<Value>(dynamicMember path: WritableKeyPath<SearchOptions, Value>) -> Value {
        get { shared[keyPath: path] }
        set { shared[keyPath: path] = newValue }
    }
}

/// What both search workflows load before searching: the model, the calibration data (ranges and
/// sensitivities), the held-out data (scores of the chosen point and the final check) and the
/// hardware profile restricted to the candidates and adapted to the deployment target.
///
/// With techniques, `graph` is the transformed model (`QuantizationTechniques.transformed`, with a zero bias
/// on each layer bias correction may correct) that the search calibrates and scores, `refinements` hold the
/// per-layer techniques' results per candidate weight format, and `reference` stays the model as loaded:
/// the FP32 model the chosen point's report compares with.
struct SearchInputs {
    var graph: Graph
    var reference: Graph
    var data: CalibrationData
    var heldOut: CalibrationData?
    var profile: HardwareProfile
    var refinements: [WeightRefinement] = []
    var techniques = QuantizationTechniques.Report()

    init(_ options: SearchOptions, progress: ProgressReporter) throws {
        var hardware = try HardwareProfile.load(options.profile)
        if let candidates = options.candidates { hardware = try hardware.restricted(to: candidates) }
        let deployed = hardware.deployed(on: options.deployment)
        for note in deployed.notes { progress.note("warning: \(note)") }
        profile = deployed.profile
        graph = try Model(contentsOf: options.model).graph
        reference = graph
        // The export at the most demanding candidate formats, before any calibration.
        _ = try QDQExport.checkExportable(graph, formats: profile.candidates.flatMap { [$0.weights, $0.activations] },
                                          granularity: .perChannel)
        data = try CalibrationData(contentsOf: options.calibrationData, graph: graph)
        heldOut = try options.evaluationData.map { try CalibrationData(contentsOf: $0, graph: graph) }
        if !options.techniques.isEmpty { try applyTechniques(options, progress: progress) }
    }

    /// The graph transforms to `graph` (SmoothQuant tuned for the profile's first candidate), then the
    /// per-layer pass once per integer weight format among the candidates, every layer at that format and
    /// activations in float: a refinement then corrects weight quantization alone, right for every
    /// activation format a group may take with it (one pass with 8-bit activations over-corrects the
    /// 16-bit ones by the 8-bit activation shift).
    private mutating func applyTechniques(_ options: SearchOptions, progress: ProgressReporter) throws {
        let selected = options.techniques
        guard let first = profile.candidates.first else { return }
        let config = QuantizationConfig(weights: first.weights, activations: first.activations, weightGranularity: .perChannel,
                                        weightRange: options.weightRange, activationRange: options.activationRange)
        let transformed = try selected.transformed(graph, config: config, data: data, options: options.session)
        graph = transformed.graph
        techniques = transformed.report
        defer { for note in techniques.notes { progress.note(note) } }
        guard !selected.layerTechniques.isEmpty else { return }
        if selected.techniques.contains(.biasCorrection) {
            graph = LayerReconstruction.addingBiases(to: graph, placement: QuantizerPlacement(graph: graph))
        }
        let placement = QuantizerPlacement(graph: graph)
        var formats: [QuantizationFormat] = []
        for candidate in profile.candidates where candidate.weights.isInteger && !formats.contains(candidate.weights) {
            formats.append(candidate.weights)
        }
        for format in formats {
            guard let refinement = try selected.refinement(of: graph, placement: placement, format: format, activations: .float32,
                                                             config: config, data: data, options: options.session) else { continue }
            refinements.append(refinement)
            techniques.layers += refinement.report.layers
            techniques.entries += refinement.report.entries.map { entry in
                var entry = entry
                entry.summary = "\(format.name) weights: " + entry.summary
                return entry
            }
        }
    }

    /// Marks a model the search chose: compared in its report with `reference`, the techniques' notes in
    /// report.json and their entries (technique, seconds, summary, details) in its search section.
    func describe(_ model: QuantizedModel, in section: inout [String: Any]) {
        guard !techniques.entries.isEmpty else { return }
        model.reference = reference
        model.techniqueNotes = techniques.notes
        section["techniques"] = techniques.jsonObject
    }

    /// The data the chosen point's report is measured on.
    var evaluated: CalibrationData { heldOut ?? data }
}

/// The configuration that takes, group by group, the candidate of lowest `cost` given the groups
/// before it: the floor that both searches check a cost target or budget against before searching.
func cheapestAssignment(_ candidates: [[Candidate]], cost: ([Int]) -> Double) -> [Int] {
    var cheapest = [Int](repeating: 0, count: candidates.count)
    for (group, allowed) in candidates.enumerated() {
        cheapest[group] = allowed.indices.min { a, b in
            var x = cheapest, y = cheapest
            x[group] = a
            y[group] = b
            return cost(x) < cost(y)
        } ?? 0
    }
    return cheapest
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
