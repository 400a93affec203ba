import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct LossTests {
    @Test func crossEntropyMatchesHandComputation() throws {
        let logits = Tensor(shape: [2, 3], scalars: [1, 2, 3, 0, 0, 0] as [Float])
        let evaluation = try TaskLoss.crossEntropy(labels: [2, 0]).evaluate(output: logits, feeds: [:])
        let first = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3
        #expect(abs(evaluation.headLosses[0][0] - first) < 1e-9)
        #expect(abs(evaluation.headLosses[0][1] - log(3.0)) < 1e-9)
        // Seed: softmax - onehot.
        let total = exp(1.0) + exp(2.0) + exp(3.0)
        let expected = [exp(1.0) / total, exp(2.0) / total, exp(3.0) / total - 1, 1.0 / 3 - 1, 1.0 / 3, 1.0 / 3]
        for (got, want) in zip(evaluation.seeds[0].floats(), expected) { #expect(abs(Double(got) - want) < 1e-6) }
    }

    @Test func crossEntropyAveragesPositions() throws {
        // [N=1, 2 positions, C=2]: mean of the two positions' losses.
        let logits = Tensor(shape: [1, 2, 2], scalars: [0, 1, 2, 0] as [Float])
        let loss = try TaskLoss.crossEntropy(labels: [1, 1]).evaluate(output: logits, feeds: [:]).headLosses[0][0]
        let expected = ((log(1 + exp(1.0)) - 1) + (log(exp(2.0) + 1) - 0)) / 2
        #expect(abs(loss - expected) < 1e-9)
    }

    @Test func pseudoLabelsAreTheArgmax() throws {
        let logits = Tensor(shape: [2, 3], scalars: [0.1, 2, -1, 3, 0, 0.5] as [Float])
        let pseudo = try TaskLoss.pseudoLabelCrossEntropy.evaluate(output: logits, feeds: [:])
        let labelled = try TaskLoss.crossEntropy(labels: [1, 0]).evaluate(output: logits, feeds: [:])
        #expect(pseudo.headLosses == labelled.headLosses)
        #expect(pseudo.seeds[0].floats() == labelled.seeds[0].floats())
    }

    @Test func wrongLabelsAreClearErrors() throws {
        let logits = Tensor(shape: [2, 3], scalars: [Float](repeating: 0, count: 6))
        #expect(throws: MPQError.shapeMismatch("cross-entropy got 3 labels for logits [2, 3]: expected 2 (one per sample)")) {
            try TaskLoss.crossEntropy(labels: [0, 1, 2]).evaluate(output: logits, feeds: [:])
        }
        #expect(throws: MPQError.invalidInput("label 3 is outside the 3 classes of logits [2, 3]")) {
            try TaskLoss.crossEntropy(labels: [0, 3]).evaluate(output: logits, feeds: [:])
        }
        #expect(throws: MPQError.shapeMismatch("cross-entropy needs logits [N, C] or [N, ..., C], got [6]")) {
            try TaskLoss.crossEntropy(labels: [0]).evaluate(output: logits.reshaped([6]), feeds: [:])
        }
    }

    @Test func nextTokenShiftsIdsAndSkipsMaskedTargets() throws {
        // V = 2, T = 3: position t predicts id t+1; the mask drops the last target.
        let logits = Tensor(shape: [1, 3, 2], scalars: [0, 1, 1, 0, 5, 5] as [Float])
        let ids = Tensor(shape: [1, 3], scalars: [0, 1, 0] as [Int64])
        let all = try TaskLoss.nextTokenCrossEntropy().evaluate(output: logits, feeds: ["input_ids": ids])
        let first = log(1 + exp(1.0)) - 1, second = log(exp(1.0) + 1) - 1
        #expect(abs(all.headLosses[0][0] - (first + second) / 2) < 1e-9)
        #expect(all.seeds[0].floats()[4...] == [0, 0])
        let mask = Tensor(shape: [1, 3], scalars: [1, 1, 0] as [Int64])
        let masked = try TaskLoss.nextTokenCrossEntropy().evaluate(output: logits, feeds: ["input_ids": ids, "attention_mask": mask])
        #expect(abs(masked.headLosses[0][0] - first) < 1e-9)
        #expect(throws: MPQError.self) { try TaskLoss.nextTokenCrossEntropy().evaluate(output: logits, feeds: [:]) }
    }

    @Test func randomProjectionIsLinearAndSeeded() throws {
        let output = Tensor(shape: [2, 4], scalars: [1, 2, 3, 4, -1, 0, 0.5, 2] as [Float])
        let evaluation = try TaskLoss.randomProjection(count: 3, seed: 9).evaluate(output: output, feeds: [:])
        #expect(evaluation.headLosses.count == 3 && evaluation.seeds.count == 3)
        for (losses, seed) in zip(evaluation.headLosses, evaluation.seeds) {
            let r = seed.floats()
            #expect(Array(r[..<4]) == Array(r[4...]), "one direction for every sample")
            for sample in 0..<2 {
                let dot = (0..<4).reduce(0.0) { $0 + Double(output.floats()[sample * 4 + $1]) * Double(r[$1]) }
                #expect(abs(losses[sample] - dot) < 1e-5)
            }
        }
        let again = try TaskLoss.randomProjection(count: 3, seed: 9).evaluate(output: output, feeds: [:])
        #expect(again.seeds.map { $0.floats() } == evaluation.seeds.map { $0.floats() })
        #expect(throws: MPQError.self) { try TaskLoss.randomProjection(count: 0, seed: 1).evaluate(output: output, feeds: [:]) }
    }

    @Test func noDifferentiablePathIsAClearError() throws {
        // The output depends on x only through its shape.
        let graph = Graph(name: "shape", nodes: [
            Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
            Node(name: "cast", opType: "Cast", inputs: ["s"], outputs: ["y"], attributes: ["to": .int(1)]),
        ], inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(2), .fixed(3)])],
           outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)], initializers: [:], opset: 17)
        #expect(throws: MPQError.invalidInput("no differentiable path from the model's float inputs and weights to output 'y'")) {
            try GradientComputation(graph: graph)
        }
        // A value the loss does not depend on.
        let two = Graph(name: "two", nodes: [
            Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["y"]),
            Node(name: "tanh", opType: "Tanh", inputs: ["b"], outputs: ["z"]),
        ], inputs: [ValueInfo(name: "a", dtype: .float32, shape: nil), ValueInfo(name: "b", dtype: .float32, shape: nil)],
           outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil), ValueInfo(name: "z", dtype: .float32, shape: nil)],
           initializers: [:], opset: 17)
        let feeds = ["a": Tensor(shape: [1, 2], scalars: [1, 2] as [Float]), "b": Tensor(shape: [1, 2], scalars: [1, 2] as [Float])]
        let computation = try GradientComputation(graph: two)
        #expect(throws: MPQError.invalidInput("no differentiable path from 'b' to output 'y'")) {
            try computation.run(feeds, loss: TaskLoss.randomProjection(count: 1, seed: 1), wrt: ["b"])
        }
        #expect(throws: MPQError.invalidInput("the model has no value named 'c' to differentiate with respect to")) {
            try computation.run(feeds, loss: TaskLoss.randomProjection(count: 1, seed: 1), wrt: ["a", "c"])
        }
    }

    @Test func opsWithoutGradientsAreNamedAtInit() throws {
        let graph = Graph(name: "resize", nodes: [
            Node(name: "upsample", opType: "Resize", inputs: ["x", "", "scales"], outputs: ["y"],
                 attributes: ["mode": .string("linear")]),
        ], inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(1), .fixed(2), .fixed(2)])],
           outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
           initializers: ["scales": Tensor(shape: [4], scalars: [1, 1, 2, 2] as [Float])], opset: 13)
        #expect(throws: MPQError.unsupportedNodes([UnsupportedNode(
            opType: "Resize", nodeName: "upsample", opset: 13, reason: "no vector-Jacobian product for mode 'linear' (only 'nearest')")])) {
            try GradientComputation(graph: graph)
        }
    }
}
