import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Taylor-IP sensitivities (Markovich-Golan et al. 2025, arXiv 2505.13060;
/// docs/DESIGN.md method 2) and the true loss MSE they predict.
///
/// For sample n, loss head k, group g and candidate c the first-order change
/// of the loss is dL = sum over g's sites s of <grad_k L_n (s), Q_c(s) - s>,
/// and the group's sensitivity is the loss MSE, the mean over samples and heads
/// of dL^2. Assuming groups independent, a configuration's predicted loss MSE
/// is the sum of its groups' sensitivities.
///
/// Per-sample weight terms: a batched backward pass sums weight gradients over
/// the batch, and (sum_n g_n . dW)^2 is not sum_n (g_n . dW)^2. The analysis
/// therefore runs one forward and one backward pass per sample (batch 1):
/// activation and weight gradients are then both per sample, exactly the
/// paper's one forward+backward per calibration sample. Activation errors use
/// the sample's own activations (seen through the backward pass's `observe`);
/// weight errors are computed once per (weight, candidate).
///
/// The true loss MSE of a configuration runs the quantized model
/// (`QuantizedModel`) on the calibration batches: mean over samples and heads
/// of (L_quantized - L_fp32)^2. Pseudo-labels stay the FP32 model's.
public final class TaylorSensitivity: @unchecked Sendable {
    /// The FP32 graph.
    public let graph: Graph
    /// The calibration samples: one forward and backward pass each.
    public let data: CalibrationData
    /// Quantization parameters per (site, candidate format), giving the errors ΔW, ΔA.
    public let calibration: CandidateCalibration
    /// The loss as given (pseudo-label cross-entropy reads its labels from the FP32 outputs).
    public let loss: TaskLoss
    /// The graph output the loss reads (the first).
    public let lossOutput: String
    private let computation: GradientComputation
    /// Labels per sample of a `crossEntropy` loss (positions per sample), else nil.
    private let labelsPerSample: Int?
    /// Per calibration batch: the loss resolved for its samples and its FP32 head losses.
    private let batchLosses: [TaskLoss]
    private let referenceLosses: [[[Double]]]

    /// Checks the loss against the model's output (labels of the wrong count are
    /// `MPQError.shapeMismatch`) and that gradients exist (`GradientComputation`'s errors:
    /// no differentiable path, ops without a vector-Jacobian product).
    ///
    /// - Parameters:
    ///   - graph: the FP32 graph.
    ///   - data: the calibration samples the gradients are taken on.
    ///   - calibration: ranges for every candidate and the FP32 outputs of its batches.
    ///   - loss: the task loss L whose change E[ΔL²] is predicted.
    ///   - options: runtime settings (threads).
    public init(graph: Graph, data: CalibrationData, calibration: CandidateCalibration, loss: TaskLoss,
                options: SessionOptions = SessionOptions()) throws {
        guard let output = graph.outputs.first?.name else { throw MPQError.invalidModel("the graph has no outputs") }
        self.graph = graph
        self.data = data
        self.calibration = calibration
        self.loss = loss
        lossOutput = output
        computation = try GradientComputation(graph: graph, options: options)

        var perSample: Int?
        var losses: [TaskLoss] = []
        var references: [[[Double]]] = []
        var start = 0
        for (batch, outputs) in zip(calibration.batches, calibration.referenceOutputs) {
            guard let reference = outputs[output] else { throw MPQError.invalidModel("output '\(output)' was never computed") }
            let count = reference.shape.first ?? 0
            var resolved = loss
            switch loss {
            case .crossEntropy(let labels):
                let positions = reference.rank >= 2 ? reference.shape.dropFirst().dropLast().reduce(1, *) : 1
                guard labels.count == data.count * positions else {
                    let expected = positions == 1 ? "\(data.count) (one per sample)"
                        : "\(data.count * positions) (\(positions) positions per sample x \(data.count) samples)"
                    throw MPQError.shapeMismatch("\(labels.count) labels for \(data.count) calibration samples with output '\(output)' \(reference.shape): expected \(expected)")
                }
                perSample = positions
                resolved = .crossEntropy(labels: Array(labels[(start * positions)..<((start + count) * positions)]))
            case .pseudoLabelCrossEntropy:
                resolved = .crossEntropy(labels: try Self.argmaxLabels(reference))
            case .nextTokenCrossEntropy, .randomProjection:
                break
            }
            losses.append(resolved)
            references.append(try resolved.evaluate(output: reference, feeds: batch).headLosses)
            start += count
        }
        labelsPerSample = perSample
        batchLosses = losses
        referenceLosses = references
    }

    /// The argmax over the last axis of every row of `logits` [N, ..., C].
    static func argmaxLabels(_ logits: Tensor) throws -> [Int] {
        guard let classes = logits.shape.last, classes > 0, logits.rank >= 2 else {
            throw MPQError.shapeMismatch("pseudo-labels need logits [N, C] or [N, ..., C], got \(logits.shape)")
        }
        let values = try logits.rowMajor().floats()
        return stride(from: 0, to: values.count, by: classes).map { start in
            (0..<classes).max { values[start + $0] < values[start + $1] } ?? 0
        }
    }

    /// The loss MSE of every (group, candidate): `[group][candidate]`, candidates as given.
    /// One forward and one backward pass per calibration sample; `progress(done, total)` per sample.
    public func lossMSE(groups: [QuantizerGroups.Group], candidates: [[Candidate]],
                        progress: ((Int, Int) -> Void)? = nil) throws -> [[Double]] {
        guard groups.count == candidates.count else {
            throw MPQError.invalidInput("\(groups.count) groups but \(candidates.count) candidate lists")
        }
        let sites = groups.flatMap(\.sites)
        var wrt = Set(sites.map(\.value))
        // Weight errors do not depend on the sample; a refined format's (`CandidateCalibration.refinements`)
        // are its quantized refined weight's and its corrected bias's differences from FP32.
        var weightErrors: [String: [String: [String: Tensor]]] = [:]   // site, format, initializer
        for (group, allowed) in zip(groups, candidates) {
            for site in group.weights {
                guard let weight = graph.initializers[site.value] else { continue }
                for candidate in allowed where candidate.weights != .float32 && weightErrors[site.value]?[candidate.weights.name] == nil {
                    let p = try calibration.parameters(for: site.value, format: candidate.weights)
                    let refined = calibration.refinedInitializers(of: site.value, format: candidate.weights)
                    var errors: [String: Tensor] = [:]
                    for (name, value) in refined where name != site.value {
                        guard let original = graph.initializers[name] else { continue }
                        errors[name] = try Self.difference(value, original)
                        wrt.insert(name)
                    }
                    errors[site.value] = try Self.difference((refined[site.value] ?? weight).fakeQuantized(p), weight)
                    weightErrors[site.value, default: [:]][candidate.weights.name] = errors
                }
            }
        }
        var sums = candidates.map { [Double](repeating: 0, count: $0.count) }
        var terms = 0
        for sample in 0..<data.count {
            let feeds = data.inputs.mapValues { $0.rows(sample..<(sample + 1)) }
            var observed: [String: Tensor] = [:]
            let result = try computation.run(feeds, loss: sampleLoss(sample, feeds: feeds), wrt: wrt) { name, value in
                observed[name] = value
            }
            // Activation errors of this sample, per (site, format).
            var activationErrors: [String: [String: Tensor]] = [:]
            func activationError(_ value: String, _ format: QuantizationFormat) throws -> Tensor {
                if let error = activationErrors[value]?[format.name] { return error }
                guard let x = observed[value] else {
                    throw MPQError.invalidModel("the backward pass did not see activation '\(value)'")
                }
                let error = try Self.difference(x.fakeQuantized(calibration.parameters(for: value, format: format)), x)
                activationErrors[value, default: [:]][format.name] = error
                return error
            }
            for gradients in result.headGradients {
                terms += 1
                for (g, group) in groups.enumerated() {
                    for (c, candidate) in candidates[g].enumerated() {
                        var change = 0.0
                        for site in group.sites {
                            if site.role == .weight {
                                for (name, error) in weightErrors[site.value]?[candidate.weights.name] ?? [:] {
                                    guard let gradient = try gradients[name]?.rowMajor() else { continue }
                                    change += Self.dot(gradient, error)
                                }
                                continue
                            }
                            guard let gradient = try gradients[site.value]?.rowMajor() else { continue }
                            if candidate.activations != .float32 {
                                change += Self.dot(gradient, try activationError(site.value, candidate.activations))
                            }
                        }
                        sums[g][c] += change * change
                    }
                }
            }
            progress?(sample + 1, data.count)
        }
        return sums.map { $0.map { $0 / Double(max(terms, 1)) } }
    }

    /// The loss of one sample's run (batch 1).
    private func sampleLoss(_ sample: Int, feeds: [String: Tensor]) -> TaskLoss {
        if case .crossEntropy(let labels) = loss, let perSample = labelsPerSample {
            return .crossEntropy(labels: Array(labels[(sample * perSample)..<((sample + 1) * perSample)]))
        }
        return loss
    }

    /// The true loss MSE of a quantized model: mean over samples and loss heads of
    /// (L_quantized - L_fp32)^2 on the calibration batches.
    public func measuredLossMSE(_ model: QuantizedModel) throws -> Double {
        var total = 0.0
        var terms = 0
        for (index, batch) in calibration.batches.enumerated() {
            guard let output = try model.run(batch)[lossOutput] else {
                throw MPQError.invalidModel("the quantized model did not compute output '\(lossOutput)'")
            }
            let heads = try batchLosses[index].evaluate(output: output, feeds: batch).headLosses
            for (head, reference) in zip(heads, referenceLosses[index]) {
                for (quantized, fp32) in zip(head, reference) {
                    total += (quantized - fp32) * (quantized - fp32)
                    terms += 1
                }
            }
        }
        return total / Double(max(terms, 1))
    }

    /// a - b for float32 tensors of one shape.
    static func difference(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let x = try a.rowMajor(), y = try b.rowMajor()
        let result = Tensor(uninitialized: .float32, shape: x.shape)
        let p = x.pointer(as: Float.self), q = y.pointer(as: Float.self), r = result.pointer(as: Float.self)
        for i in 0..<x.count { r[i] = p[i] - q[i] }
        return result
    }

    /// <a, b> of two float32 tensors of equal element count, accumulated in double per chunk.
    static func dot(_ a: Tensor, _ b: Tensor) -> Double {
        let count = min(a.count, b.count)
        let x = a.pointer(as: Float.self), y = b.pointer(as: Float.self)
        var total = 0.0
        var start = 0
        while start < count {
            let end = min(start + 1024, count)
            var partial: Float = 0
            for i in start..<end { partial += x[i] * y[i] }
            total += Double(partial)
            start = end
        }
        return total
    }
}
