import Foundation
import Testing
@testable import MPQGraph
@testable import MPQQuantization

/// A transformer's padded token positions (attention_mask 0) carry no meaning: the output
/// comparison's SQNR and the per-layer statistics of the weight refinements leave them out.
@Suite struct PaddedTokenTests {
    /// [2 sentences, 3 tokens, 2 features]; the second sentence's last token is padding.
    let mask = Tensor(shape: [2, 3], scalars: [Int64(1), 1, 1, 1, 1, 0])
    let reference = Tensor(shape: [2, 3, 2], scalars: [Float(1), 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])

    @Test func outputSQNRCountsOnlyUnpaddedTokens() {
        var padded = reference.floats()
        padded[10] += 100
        padded[11] -= 100
        var comparison = OutputComparison()
        comparison.add(reference: ["y": reference], quantized: ["y": Tensor(shape: [2, 3, 2], scalars: padded)],
                       feeds: ["attention_mask": mask])
        #expect(comparison.sqnr == .infinity, "an error only at the padded token: \(comparison.sqnr) dB")
        #expect(comparison.cosineSimilarity == 1)

        var kept = reference.floats()
        kept[0] += 1
        var keptComparison = OutputComparison()
        keptComparison.add(reference: ["y": reference], quantized: ["y": Tensor(shape: [2, 3, 2], scalars: kept)],
                           feeds: ["attention_mask": mask])
        let signal = reference.floats().prefix(10).reduce(0.0) { $0 + Double($1 * $1) }
        #expect(abs(keptComparison.sqnr - 10 * log10(signal)) < 1e-9)
        // Without a mask every position counts.
        var unmasked = OutputComparison()
        unmasked.add(reference: ["y": reference], quantized: ["y": Tensor(shape: [2, 3, 2], scalars: padded)], feeds: [:])
        #expect(unmasked.sqnr < 0)
    }

    @Test func layerStatisticsDrawOnlyUnpaddedRows() throws {
        let node = Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])
        let weight = Tensor(shape: [2, 3], scalars: [Float](repeating: 0.5, count: 6))
        let layout = try #require(LayerWeightLayout(node: node, weight: weight))
        var rows = reference.floats()
        rows[10] = 1_000
        rows[11] = -1_000
        let x = Tensor(shape: [2, 3, 2], scalars: rows)
        let keep = try #require(LayerReconstruction.rowMask(mask, of: x))
        #expect(keep == [true, true, true, true, true, false])
        let masked = try #require(try LayerInputStatistics(node: node, layout: layout, input: x, maximumSamples: 100,
                                                          seed: 1, tokenMask: keep))
        #expect(masked.samples == 5)
        // H = E[x xᵀ] over the five unpadded rows (1,2), (3,4), ..., (9,10).
        var expected = [Double](repeating: 0, count: 4)
        for row in 0..<5 {
            let pair: [Double] = [Double(2 * row + 1), Double(2 * row + 2)]
            for i in 0..<2 { for j in 0..<2 { expected[i * 2 + j] += pair[i] * pair[j] / 5 } }
        }
        for (h, e) in zip(masked.second[0], expected) { #expect(abs(Double(h) - e) < 1e-4 * e) }
        let all = try #require(try LayerInputStatistics(node: node, layout: layout, input: x, maximumSamples: 100, seed: 1))
        #expect(all.samples == 6 && all.second[0][0] > 100_000)
        // A mask of the wrong length is refused, not misread.
        #expect(try LayerInputStatistics(node: node, layout: layout, input: x, maximumSamples: 100, seed: 1,
                                         tokenMask: [true, false]) == nil)
        #expect(LayerReconstruction.rowMask(mask, of: Tensor(shape: [6, 2], scalars: rows)) == nil)
    }
}
