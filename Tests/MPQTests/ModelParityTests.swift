import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// End-to-end parity with ONNX Runtime on the real models in .fixtures/ (scripts/fetch-fixtures.sh).
@Suite(.serialized) struct ModelParityTests {
    let folder = temporaryFolder("mpq-parity")

    /// Runs `model` in mpq over `feeds` in chunks of `batch` samples and concatenates each output.
    func runInBatches(_ session: InferenceSession, _ feeds: [String: Tensor], batch: Int) throws -> [String: Tensor] {
        let total = feeds.values.first!.shape[0]
        var parts: [String: [Tensor]] = [:]
        for start in stride(from: 0, to: total, by: batch) {
            let chunk = try feeds.mapValues { tensor in
                try Tensor.concatenate((start..<min(start + batch, total)).map { tensor.sample($0) }, axis: 0)
            }
            for (name, value) in try session.run(chunk) { parts[name, default: []].append(value) }
        }
        return try parts.mapValues { try Tensor.concatenate($0, axis: 0) }
    }

    /// ONNX Runtime's outputs for the same inputs.
    func reference(_ model: URL, _ feeds: [String: Tensor], batch: Int) throws -> [String: Tensor] {
        let inputs = folder.appendingPathComponent("ref-inputs.npz"), outputs = folder.appendingPathComponent("ref-outputs.npz")
        try NPZ.write(feeds, to: inputs.path)
        try runPython(["Tests/Scripts/ort_run_model.py", model.path, inputs.path, outputs.path, String(batch)])
        return try NPZ.read(contentsOf: outputs.path)
    }

    @Test func mobileNetV2MatchesOnnxRuntimeAtBatch1And16() throws {
        let modelURL = fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx")
        let calib = folder.appendingPathComponent("calib.npy")
        try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib.path, "--count", "64", "--seed", "0"])
        let images = try NPY.read(contentsOf: calib.path)
        #expect(images.shape == [64, 3, 224, 224])
        let model = try Model(contentsOf: modelURL.path)
        let session = try InferenceSession(model: model)
        let expected = try reference(modelURL, ["input": images], batch: 16)["logits"]!
        let scale = expected.doubles().map(abs).max()!
        let expectedTop1 = top1(expected)
        for batch in [16, 1] {
            let logits = try runInBatches(session, ["input": images], batch: batch)["logits"]!
            #expect(logits.shape == [64, 1000])
            let error = maxAbsDifference(logits, expected)
            #expect(error <= 1e-4 * scale, "batch \(batch): max abs error \(error) vs output magnitude \(scale)")
            #expect(top1(logits) == expectedTop1, "batch \(batch): top-1 differs")
        }
    }

    @Test func miniLMMatchesOnnxRuntimeOnRealSentences() throws {
        let modelURL = fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx")
        let tokens = folder.appendingPathComponent("tokens.npz")
        try runPython(["Tests/Scripts/make_text_inputs.py",
                       fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2-tokenizer/tokenizer.json").path,
                       fixturesFolder.appendingPathComponent("data/text/jargon.txt").path, tokens.path, "16"])
        let feeds = try NPZ.read(contentsOf: tokens.path)
        let mask = feeds["attention_mask"]!
        #expect(mask.integers().contains(0), "the batch must contain padding")
        let session = try InferenceSession(model: try Model(contentsOf: modelURL.path))
        let expected = try reference(modelURL, feeds, batch: 8)["last_hidden_state"]!
        for batch in [8, 4] {
            let hidden = try runInBatches(session, feeds, batch: batch)["last_hidden_state"]!
            #expect(hidden.shape == expected.shape)
            // Compare at unmasked positions only.
            let width = hidden.shape[2]
            let a = hidden.floats(), e = expected.floats(), m = mask.integers()
            var error: Float = 0, scale: Float = 0
            for position in m.indices where m[position] == 1 {
                for i in (position * width)..<((position + 1) * width) {
                    error = max(error, abs(a[i] - e[i]))
                    scale = max(scale, abs(e[i]))
                }
            }
            #expect(error <= 1e-4 * scale, "batch \(batch): max abs error \(error) vs output magnitude \(scale)")
        }
    }
}

func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Double {
    zip(a.doubles(), b.doubles()).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Index of the largest value in each row of a [N, C] tensor.
func top1(_ logits: Tensor) -> [Int] {
    let classes = logits.shape[1], values = logits.floats()
    return (0..<logits.shape[0]).map { row in
        let slice = values[(row * classes)..<((row + 1) * classes)]
        return slice.indices.max { slice[$0] < slice[$1] }! - row * classes
    }
}
