import Foundation
import Testing
@testable import MPQGGUF

/// Compares MPQGGUF with llama.cpp's own C code: bench/gguf_ggml_reference.c compiled together with
/// ggml-quants.c (one file, a few seconds; no llama.cpp build). Enabled when MPQ_GGML_SRC names a
/// ggml source folder (e.g. vendor/llama.cpp/ggml from the llama-cpp-python 0.3.36 sdist);
/// bench/gguf_quantize_match.sh sets it.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["MPQ_GGML_SRC"] != nil, "set MPQ_GGML_SRC to ggml's source folder"))
struct GGMLReferenceTests {
    static let quantizable: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs]

    /// Builds the reference harness once per test into `folder`.
    static func harness(in folder: URL) throws -> String {
        let ggml = ProcessInfo.processInfo.environment["MPQ_GGML_SRC"]!
        let binary = folder.appendingPathComponent("gguf_ggml_reference").path
        try runProgram(["/usr/bin/env", "cc", "-O2", "-DNDEBUG", "-std=gnu11", "-I\(ggml)/include", "-I\(ggml)/src", "-I\(ggml)/src/ggml-cpu",
                        repoRoot.appendingPathComponent("bench/gguf_ggml_reference.c").path, "\(ggml)/src/ggml-quants.c", "-lm", "-o", binary])
        return binary
    }

    /// Quantised bytes are identical to ggml's, with and without an importance matrix, for every type.
    @Test func quantizationIsByteIdenticalToGGML() throws {
        let folder = makeTemporaryFolder("mpq-ggml-ref")
        defer { try? FileManager.default.removeItem(at: folder) }
        let harness = try Self.harness(in: folder)
        let n = 512
        var rng = SeededRandom(seed: 77)
        let x = sampleRows(rows: 96, length: n, seed: 13) + (0..<(32 * n)).map { _ in rng.normal() }
        // Importance vectors: uneven positive, with exact zeros (unused columns), and uniform.
        let importances: [[Float]?] = [
            nil,
            (0..<n).map { i in Float.random(in: 0..<1, using: &rng) * (i % 9 == 0 ? 100 : 1) + 1e-3 },
            (0..<n).map { i in i % 3 == 0 ? 0 : Float.random(in: 0..<5, using: &rng) },
            [Float](repeating: 1, count: n),
        ]
        let input = folder.appendingPathComponent("x.f32")
        try writeFloats(x, to: input)
        for type in Self.quantizable {
            for (k, importance) in importances.enumerated() {
                let qw = folder.appendingPathComponent("qw\(k).f32")
                if let importance { try writeFloats(importance, to: qw) }
                let out = folder.appendingPathComponent("\(type.name)-\(k).q")
                try runProgram([harness, "quantize", "\(type.rawValue)", "\(n)", input.path, importance == nil ? "-" : qw.path, out.path])
                let expected = try [UInt8](Data(contentsOf: out))
                let actual = try GGMLQuants.quantize(type, values: x, rowLength: n, importance: importance)
                #expect(byteDifference(actual, expected) == nil, "\(type.name) importance #\(k): \(byteDifference(actual, expected) ?? "")")
            }
        }
    }

    /// Dequantisation of random blocks is bit-identical to ggml's dequantize_row_*.
    @Test func dequantizationIsBitIdenticalToGGML() throws {
        let folder = makeTemporaryFolder("mpq-ggml-deq")
        defer { try? FileManager.default.removeItem(at: folder) }
        let harness = try Self.harness(in: folder)
        var rng = SeededRandom(seed: 78)
        for type in Self.quantizable {
            let count = 64 * 256
            // Quantise real values, then flip random bits outside the scale fields for coverage.
            var bytes = try GGMLQuants.quantize(type, values: (0..<count).map { _ in rng.normal() }, rowLength: 256)
            if type.isQuantized {
                for i in bytes.indices where Int.random(in: 0..<4, using: &rng) == 0 {
                    let inBlock = i % type.bytesPerBlock
                    let isScale: Bool
                    switch type {
                    case .q2_K: isScale = inBlock >= 80
                    case .q3_K: isScale = inBlock >= 108
                    case .q6_K: isScale = inBlock >= 208
                    default: isScale = inBlock < 4
                    }
                    if !isScale { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
                }
            }
            let input = folder.appendingPathComponent("\(type.name).bin"), out = folder.appendingPathComponent("\(type.name).f32")
            try Data(bytes).write(to: input)
            try runProgram([harness, "dequantize", "\(type.rawValue)", "\(count)", input.path, out.path])
            let expected = try readFloats(out)
            let actual = try GGMLQuants.dequantize(type, data: bytes, count: count)
            #expect(firstBitDifference(actual, expected) == nil, "\(type.name): \(firstBitDifference(actual, expected) ?? "")")
        }
    }
}

/// Re-quantises every tensor of llama-quantize outputs (made by bench/gguf_quantize_match.sh) with
/// MPQGGUF from the same source model and importance matrix, and counts identical bytes per type.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["MPQ_LLAMA_QUANTIZE_DIR"] != nil, "set by bench/gguf_quantize_match.sh"))
struct LlamaQuantizeMatchTests {
    @Test func quantizedModelsAreByteIdentical() throws {
        let env = ProcessInfo.processInfo.environment
        let folder = URL(fileURLWithPath: env["MPQ_LLAMA_QUANTIZE_DIR"]!)
        let model = try GGUFFile(contentsOf: URL(fileURLWithPath: env["MPQ_LLAMA_QUANTIZE_MODEL"]!))
        let imatrix = try env["MPQ_LLAMA_QUANTIZE_IMATRIX"].map { try IMatrix(contentsOf: URL(fileURLWithPath: $0)) }
        var totals: [GGMLType: (tensors: Int, identical: Int, bytes: Int, identicalBytes: Int)] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() where name.hasSuffix(".gguf") {
            let output = try GGUFFile(contentsOf: folder.appendingPathComponent(name))
            for t in output.tensors {
                guard let source = model.tensor(named: t.name), source.type != t.type, t.type.canQuantize else { continue }
                let x = try model.floats(source)
                let expected = [UInt8](output.tensorData(t))
                // Per 2-D slice (one expert of a MoE tensor each), with its slice of the importance.
                let perSlice = t.rowLength * (t.dimensions.count > 1 ? t.dimensions[1] : 1)
                let importance = imatrix?.importance(for: t.name)
                var actual: [UInt8] = []
                let slices = x.count / perSlice
                for s in 0 ..< slices {
                    // llama-quant.cpp: expert s uses imatrix values [s·ne0, (s+1)·ne0).
                    var w: [Float]?
                    if let importance, importance.count == t.rowLength * slices {
                        w = Array(importance[(s * t.rowLength) ..< ((s + 1) * t.rowLength)])
                    }
                    actual += try GGMLQuants.quantize(t.type, values: Array(x[(s * perSlice) ..< ((s + 1) * perSlice)]), rowLength: t.rowLength, importance: w)
                }
                let same = zip(actual, expected).filter { $0 == $1 }.count
                var entry = totals[t.type] ?? (0, 0, 0, 0)
                entry.tensors += 1
                entry.identical += actual == expected ? 1 : 0
                entry.bytes += expected.count
                entry.identicalBytes += actual.count == expected.count ? same : 0
                totals[t.type] = entry
                #expect(actual == expected, "\(name) \(t.name) (\(t.type.name)): \(byteDifference(actual, expected) ?? "")")
            }
        }
        for (type, e) in totals.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            print("gguf_quantize_match \(type.name): \(e.identical)/\(e.tensors) tensors identical, \(e.identicalBytes)/\(e.bytes) bytes identical")
        }
    }
}
