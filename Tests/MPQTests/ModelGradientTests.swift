import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Whole-model gradients: MobileNetV2 against finite differences and batch
/// consistency, MiniLM-L6 with the random-projection loss at its quantizer sites.
@Suite struct ModelGradientTests {
    static let mobileNetPath = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path
    static let miniLMPath = fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path

    private static func pseudoLoss(_ logits: Tensor, labels: [Int]) throws -> Double {
        try TaskLoss.crossEntropy(labels: labels).evaluate(output: logits, feeds: [:]).headLosses[0].reduce(0, +)
    }

    /// d loss / d value along `direction` by central differences, the value replaced
    /// through a hook (activations) or in the initializers (weights).
    private static func directional(_ graph: Graph, feeds: [String: Tensor], name: String, base: Tensor,
                                    direction: [Float], step: Float, labels: [Int]) throws -> Double {
        var losses: [Double] = []
        for sign: Float in [1, -1] {
            let scalars = zip(base.floats(), direction).map { $0 + sign * step * $1 }
            let perturbed = Tensor(shape: base.shape, scalars: scalars)
            var variant = graph
            let output: Tensor
            if variant.initializers[name] != nil {
                variant.initializers[name] = perturbed
                output = try #require(try InferenceSession(graph: variant).run(feeds)["logits"])
            } else {
                output = try #require(try InferenceSession(graph: variant).run(feeds) { value, _ in value == name ? perturbed : nil }["logits"])
            }
            losses.append(try pseudoLoss(output, labels: labels))
        }
        return (losses[0] - losses[1]) / (2 * Double(step))
    }

    @Test func mobileNetGradientsMatchFiniteDifferences() throws {
        let graph = try Model(contentsOf: Self.mobileNetPath).graph
        var rng = SeededGenerator(seed: 11)
        let image = Tensor.random([1, 3, 224, 224], in: -2...2, using: &rng)
        let feeds = ["input": image]
        let convs = graph.nodes.filter { $0.opType == "Conv" }
        // An early and a late activation (Conv inputs), a depthwise and a pointwise weight, the classifier weight.
        let activations = [convs[3].inputs[0], convs[40].inputs[0]]
        let weights = [convs[4].inputs[1], convs[45].inputs[1], try #require(graph.nodes.last { $0.opType == "Gemm" }).inputs[1]]
        var observed: [String: Tensor] = [:]
        let computation = try GradientComputation(graph: graph)
        let result = try computation.run(feeds, loss: TaskLoss.pseudoLabelCrossEntropy, wrt: Set(activations + weights)) { name, value in
            observed[name] = value
        }
        #expect(Set(observed.keys) == Set(activations))
        let logits = try #require(result.outputs["logits"])
        let label = logits.floats().indices.max { logits.floats()[$0] < logits.floats()[$1] }!
        #expect(abs(result.loss[0] - (try Self.pseudoLoss(logits, labels: [label]))) < 1e-6)
        for name in activations + weights {
            let gradient = try #require(result.gradients[name])
            let base = try #require(observed[name] ?? graph.initializers[name])
            #expect(gradient.shape == base.shape)
            let g = gradient.floats()
            let norm = g.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
            #expect(norm > 0, "gradient of \(name) is zero")
            // Along the normalised gradient the derivative is |g|; along a random unit direction, g . v.
            let unit = g.map { Float(Double($0) / norm) }
            var random = (0..<g.count).map { _ in Float.random(in: -1...1, using: &rng) }
            let randomNorm = random.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
            random = random.map { Float(Double($0) / randomNorm) }
            let projected = zip(g, random).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let scale = base.floats().map(abs).max() ?? 1
            let step = 1e-3 * max(scale, 1)
            let alongGradient = try Self.directional(graph, feeds: feeds, name: name, base: base, direction: unit, step: step, labels: [label])
            #expect(abs(alongGradient - norm) <= 0.05 * norm, "\(name): |g| = \(norm), finite differences \(alongGradient)")
            let alongRandom = try Self.directional(graph, feeds: feeds, name: name, base: base, direction: random, step: step, labels: [label])
            #expect(abs(alongRandom - projected) <= 0.05 * norm, "\(name): g . v = \(projected), finite differences \(alongRandom)")
        }
    }

    @Test func mobileNetBatchGradientsAreSampleGradients() throws {
        let graph = try Model(contentsOf: Self.mobileNetPath).graph
        var rng = SeededGenerator(seed: 12)
        let batch = Tensor.random([2, 3, 224, 224], in: -2...2, using: &rng)
        let convs = graph.nodes.filter { $0.opType == "Conv" }
        let activation = convs[20].inputs[0], weight = convs[30].inputs[1]
        let computation = try GradientComputation(graph: graph)
        let together = try computation.run(["input": batch], loss: TaskLoss.pseudoLabelCrossEntropy, wrt: [activation, weight])
        var weightSum = [Float](repeating: 0, count: try #require(graph.initializers[weight]).count)
        for sample in 0..<2 {
            let alone = try computation.run(["input": batch.sample(sample)], loss: TaskLoss.pseudoLabelCrossEntropy, wrt: [activation, weight])
            #expect(abs(alone.loss[0] - together.loss[sample]) < 1e-5 * max(1, abs(alone.loss[0])))
            let row = try #require(together.gradients[activation]).sample(sample).floats()
            let single = try #require(alone.gradients[activation]).floats()
            let largest = single.map(abs).max() ?? 0
            let difference = zip(row, single).map { abs($0 - $1) }.max() ?? 0
            #expect(largest > 0 && difference <= 1e-4 * largest, "sample \(sample): rows differ by \(difference) of \(largest)")
            weightSum = zip(weightSum, try #require(alone.gradients[weight]).floats()).map(+)
        }
        let summed = try #require(together.gradients[weight]).floats()
        let largest = summed.map(abs).max() ?? 0
        #expect(largest > 0 && (zip(summed, weightSum).map { abs($0 - $1) }.max() ?? 0) <= 1e-4 * largest)
    }

    @Test func miniLMRandomProjectionGradientsAtQuantizerSites() throws {
        let graph = try Model(contentsOf: Self.miniLMPath).graph
        var rng = SeededGenerator(seed: 13)
        let length = 12
        let ids = Tensor(shape: [2, length], scalars: (0..<2 * length).map { $0 % length == 0 ? Int64(101) : Int64.random(in: 1000..<30000, using: &rng) })
        let mask = Tensor(shape: [2, length], scalars: (0..<2 * length).map { Int64($0 >= length + 9 ? 0 : 1) })
        let types = Tensor(zeros: .int64, shape: [2, length])
        let feeds = ["input_ids": ids, "attention_mask": mask, "token_type_ids": types]
        let sites = QuantizerPlacement(graph: graph).sites
        let wrt = Set(sites.map(\.value))
        #expect(wrt.count > 50)
        var observed = Set<String>()
        let computation = try GradientComputation(graph: graph)
        let result = try computation.run(feeds, loss: TaskLoss.randomProjection(count: 2, seed: 5), wrt: wrt) { name, _ in observed.insert(name) }
        #expect(result.headGradients.count == 2 && result.headLosses.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isFinite) })
        #expect(observed == Set(sites.filter { $0.role == .activation }.map(\.value)))
        for head in result.headGradients {
            for site in sites {
                let gradient = try #require(head[site.value], "no gradient for \(site.value)")
                let values = gradient.floats()
                #expect(values.allSatisfy { $0.isFinite }, "\(site.value): non-finite gradient")
                #expect(values.contains { $0 != 0 }, "\(site.value): zero gradient")
            }
        }
        // The two heads use different directions, so their gradients differ.
        let first = try #require(sites.first { $0.role == .weight }).value
        #expect(result.headGradients[0][first]!.floats() != result.headGradients[1][first]!.floats())
    }
}
