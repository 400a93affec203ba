import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Taylor loss-MSE sensitivities of ggml types on a GGUF decoder (Markovich-Golan et al. 2025,
/// arXiv 2505.13060; docs/DESIGN.md method 2), expressed as a predicted calibration KLD.
///
/// For calibration pass n and group g at type c the first-order change of the loss is
/// dL_n = sum over the group's tensors W of <grad_W L_n, delta_c(W)>, with
/// delta_c(W) = dequant(quant_c(W, imatrix)) - W from MPQGGUF's bit-exact ggml quantisers and the
/// calibration text's importance matrix (the bytes llama-quantize and `GGUFMixExport` write).
/// The group's sensitivity is the loss MSE E_n[dL_n^2]; assuming groups independent, a mix's
/// prediction is the sum over its groups. One forward and one backward pass per pass n gives
/// grad_W L_n for every searched tensor at once.
///
/// The loss is read on the positions the KLD scores (the second half of each chunk, P of them),
/// L = (1/P) sum_t CE(z_t, y_t) over the logits z_t:
/// - `.kl` (default): KL(base || model) has zero gradient at the base model, so its own
///   first-order term vanishes; its second-order term is 1/2 dz^T F dz with F = diag(p) - p p^T,
///   the softmax's Fisher matrix. Labels y_t drawn from the base distribution p_t give seeds
///   p_t - e_{y_t} whose covariance is F_t, and independent draws per position cancel the cross
///   terms in expectation, so E_y[dL^2] = (1/P^2) sum_t dz_t^T F_t dz_t ~ (2/P) x mean KLD.
/// - `.nextToken`: the text's next tokens as labels (the empirical Fisher), scaled the same way.
///
/// The sensitivity reported is therefore (P/2) E_n[dL_n^2], in units of mean KLD.
public final class GGUFTaylorSensitivity: @unchecked Sendable {
    /// The labels the cross-entropy of each pass is taken against.
    public enum Loss: String, Sendable, CaseIterable {
        /// Labels drawn from the base (F16) model's distributions: predicts the KLD to the base model.
        case kl
        /// The text's next tokens as labels.
        case nextToken = "next-token"
    }

    /// How the sensitivities are estimated.
    public struct Options: Sendable, Equatable {
        /// The labels of the passes; default `.kl` (drawn from the base model: predicts KLD to it).
        public var loss: Loss = .kl
        /// Forward and backward passes per chunk, each with fresh label draws (`.kl` only: the
        /// next-token loss has fixed labels and runs one pass per chunk); default 16:
        /// on tiny-llama at Q4_K_M's size, 4 draws left the held-out KLD 20% below the preset's, 16 draws 52%.
        public var draws = 16
        /// Seed of the label draws.
        public var seed: UInt64 = 1
        /// Default options: the KL loss, 16 draws, seed 1.
        public init() {}

        /// Forward and backward passes per calibration chunk: `draws` for `.kl`, 1 for `.nextToken`.
        public var passesPerChunk: Int { loss == .kl ? draws : 1 }

        /// Throws `MPQError.invalidInput` for draws outside 1...64.
        public func check() throws {
            guard (1...64).contains(draws) else { throw MPQError.invalidInput("taylor draws must be 1...64, got \(draws)") }
        }

        /// Settings that change the sensitivities (for the cache key).
        var cacheSettings: [String] { ["taylor-loss=\(loss.rawValue)", "taylor-draws=\(passesPerChunk)", "taylor-seed=\(seed)"] }
    }

    /// The groups and candidate types whose sensitivities are estimated.
    public let space: GGUFSearchSpace
    /// The calibration chunks and the base model's logits on them.
    public let calibration: GGUFCalibration
    /// The base weights and their quantization to each candidate type (δ = dequant(quant(W)) − W).
    public let weights: GGUFQuantizedWeights
    /// How the sensitivities are estimated.
    public let options: Options
    /// Where per-pass results are kept, so a killed run resumes; nil: none.
    public let cache: SensitivityCache?
    /// Where the passes report progress.
    public let progress: ProgressReporter
    /// Seconds of the last `lossMSE()` spent in forward and backward passes.
    public private(set) var passSeconds = 0.0
    private let computation: GradientComputation
    private let first: Int
    private let positions: Int

    /// Builds the gradient graph: the decoder with its logits sliced to the scored positions.
    public init(space: GGUFSearchSpace, calibration: GGUFCalibration, weights: GGUFQuantizedWeights,
                options: Options = Options(), cache: SensitivityCache?, progress: ProgressReporter = SilentProgress()) throws {
        try options.check()
        self.space = space
        self.calibration = calibration
        self.weights = weights
        self.options = options
        self.cache = cache
        self.progress = progress
        first = calibration.context / 2
        positions = calibration.context - 1 - first
        var graph = calibration.graph
        let scored = "taylor.scored_logits"
        graph.initializers["taylor.starts"] = Tensor(shape: [1], scalars: [Int64(first)])
        graph.initializers["taylor.ends"] = Tensor(shape: [1], scalars: [Int64(calibration.context - 1)])
        graph.initializers["taylor.axes"] = Tensor(shape: [1], scalars: [Int64(1)])
        graph.nodes.append(Node(name: scored, opType: "Slice",
                                inputs: [DecoderGraphBuilder.outputName, "taylor.starts", "taylor.ends", "taylor.axes"],
                                outputs: [scored]))
        graph.outputs = [ValueInfo(name: scored, dtype: .float32, shape: nil)]
        computation = try GradientComputation(graph: graph, options: SessionOptions(threads: calibration.threads))
    }

    /// Whether every tensor of `group` already has `type` in the base file (no change, no cost).
    func unchanged(_ group: GGUFSearchSpace.Group, _ type: GGMLType) -> Bool {
        group.tensors.allSatisfy { weights.file.tensor(named: $0)?.type == type }
    }

    func key(pass: Int, group: GGUFSearchSpace.Group, type: GGMLType) -> String { "taylor|\(pass)|\(group.name)|\(type.name)" }

    /// The labels of pass `pass` (chunk pass / draws), one per scored position.
    func labels(pass: Int) -> [Int] {
        let chunk = pass / options.passesPerChunk
        let ids = calibration.chunks[chunk]
        switch options.loss {
        case .nextToken:
            return (first..<(calibration.context - 1)).map { ids[$0 + 1] }
        case .kl:
            var generator = SplitMix64(seed: options.seed &* 0x100_0000_01B3 &+ UInt64(pass))
            let reference = calibration.reference[chunk]
            let vocabulary = reference.count / positions
            return (0..<positions).map { k in
                let u = generator.nextUnit()
                var total = 0.0
                for i in 0..<vocabulary {
                    total += Foundation.exp(reference[k * vocabulary + i])
                    if total >= u { return i }
                }
                return vocabulary - 1
            }
        }
    }

    /// Predicted mean KLD of every (group, candidate), `[group][candidate]` as in `space`; 0 for a
    /// candidate that keeps the base type. Per-pass dL values are cached, so a killed run resumes
    /// with the passes it finished.
    public func lossMSE() throws -> [[Double]] {
        let passes = calibration.chunks.count * options.passesPerChunk
        var dots: [String: Double] = [:]
        var pending: [Int] = []
        for pass in 0..<passes {
            var complete = true
            for group in space.groups {
                for candidate in group.candidates where !unchanged(group, candidate.type) {
                    let key = key(pass: pass, group: group, type: candidate.type)
                    if let value = cache?.score(key) { dots[key] = value } else { complete = false }
                }
            }
            if !complete { pending.append(pass) }
        }
        if !pending.isEmpty {
            if pending.count < passes { progress.note("taylor: \(passes - pending.count) of \(passes) passes cached") }
            let errors = try quantizationErrors()
            let wrt = Set(space.groups.flatMap(\.tensors))
            let start = Date()
            for (done, pass) in pending.enumerated() {
                let ids = calibration.chunks[pass / options.passesPerChunk]
                let feeds = [DecoderGraphBuilder.inputName: Tensor(shape: [1, ids.count], scalars: ids.map { Int64($0) })]
                let result = try computation.run(feeds, loss: TaskLoss.crossEntropy(labels: labels(pass: pass)), wrt: wrt)
                var gradients: [String: Tensor] = [:]
                for name in wrt {
                    guard let g = result.gradients[name] else { throw MPQError.invalidModel("no gradient reached '\(name)'") }
                    gradients[name] = try g.rowMajor()
                }
                var values: [String: Double] = [:]
                for group in space.groups {
                    for candidate in group.candidates where !unchanged(group, candidate.type) {
                        var change = 0.0
                        for name in group.tensors {
                            guard let delta = errors[name]?[candidate.type] else { continue }
                            change += Self.dot(gradients[name]!, delta)
                        }
                        values[key(pass: pass, group: group, type: candidate.type)] = change
                    }
                }
                dots.merge(values) { $1 }
                try cache?.store(values)
                progress.progress("taylor pass", done: done + 1, total: pending.count)
            }
            passSeconds = Date().timeIntervalSince(start)
        }
        let scale = Double(positions) / 2 / Double(passes)
        return space.groups.map { group in
            group.candidates.map { candidate in
                guard !unchanged(group, candidate.type) else { return 0 }
                return (0..<passes).reduce(0.0) { sum, pass in
                    let d = dots[key(pass: pass, group: group, type: candidate.type)] ?? 0
                    return sum + d * d
                } * scale
            }
        }
    }

    /// delta_c(W) = dequant(quant_c(W, imatrix)) - W of every searched tensor and candidate type.
    func quantizationErrors() throws -> [String: [GGMLType: [Float]]] {
        let total = space.groups.reduce(0) { $0 + $1.candidates.count * $1.tensors.count }
        var done = 0
        var errors: [String: [GGMLType: [Float]]] = [:]
        for group in space.groups {
            for name in group.tensors {
                guard let base = calibration.graph.initializers[name] else {
                    throw MPQError.invalidModel("the decoder graph has no weight '\(name)'")
                }
                let w = try base.rowMajor().floats()
                for candidate in group.candidates {
                    done += 1
                    guard weights.file.tensor(named: name)?.type != candidate.type else { continue }
                    let q = try weights.values(name, candidate.type).floats()
                    errors[name, default: [:]][candidate.type] = zip(q, w).map { $0 - $1 }
                }
                progress.progress("quantization errors", done: done, total: total)
            }
        }
        return errors
    }

    /// <g, delta>, accumulated in double.
    static func dot(_ g: Tensor, _ delta: [Float]) -> Double {
        let x = g.pointer(as: Float.self)
        return delta.withUnsafeBufferPointer { d in
            var total = 0.0
            for i in 0..<min(g.count, d.count) { total += Double(x[i]) * Double(d[i]) }
            return total
        }
    }
}
