import Foundation
import Testing
@testable import MPQGGUF

/// The ggml types named as gguf-py names them (GGMLQuantizationType member names).
let referenceNames: [GGMLType: String] = [
    .f32: "F32", .f16: "F16", .bf16: "BF16", .q4_0: "Q4_0", .q4_1: "Q4_1", .q5_0: "Q5_0", .q5_1: "Q5_1",
    .q8_0: "Q8_0", .q2_K: "Q2_K", .q3_K: "Q3_K", .q4_K: "Q4_K", .q5_K: "Q5_K", .q6_K: "Q6_K",
    .iq4_nl: "IQ4_NL", .iq4_xs: "IQ4_XS",
]

@Suite struct ScalarTests {
    @Test func fp16RoundTripsEveryHalf() {
        var mismatches: [UInt16] = []
        for h in 0...UInt16.max {
            let f = GGMLScalar.fp16ToFloat(h)
            if f.isNaN {
                if GGMLScalar.floatToFP16(f) & 0x7FFF != 0x7E00 { mismatches.append(h) }
                continue
            }
            if GGMLScalar.floatToFP16(f) != h || Float(Float16(bitPattern: h)).bitPattern != f.bitPattern { mismatches.append(h) }
        }
        #expect(mismatches.isEmpty, "halves \(mismatches.prefix(5).map { String($0, radix: 16) })")
    }

    @Test func fp16RoundsToNearestEvenLikeHardware() {
        var rng = SeededRandom(seed: 11)
        var mismatches: [UInt32] = []
        for _ in 0..<200_000 {
            let bits = UInt32.random(in: 0...UInt32.max, using: &rng)
            let f = Float(bitPattern: bits)
            if !f.isNaN && GGMLScalar.floatToFP16(f) != Float16(f).bitPattern { mismatches.append(bits) }
        }
        #expect(mismatches.isEmpty, "floats \(mismatches.prefix(5).map { String($0, radix: 16) })")
    }

    @Test func bf16AndNearestInt() {
        #expect(GGMLScalar.floatToBF16(1.0) == 0x3F80)
        #expect(GGMLScalar.floatToBF16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)   // tie to even
        #expect(GGMLScalar.floatToBF16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        #expect(GGMLScalar.floatToBF16(Float(bitPattern: 0x7F80_0001)) == 0x7FC0)   // NaN made quiet
        #expect(GGMLScalar.nearestInt(2.5) == 2)
        #expect(GGMLScalar.nearestInt(3.5) == 4)
        #expect(GGMLScalar.nearestInt(-2.5) == -2)
        #expect(GGMLScalar.nearestInt(-7.6) == -8)
        #expect(GGMLScalar.truncateToInt32(.nan) == Int32.min)
        #expect(GGMLScalar.truncateToInt32(-3.9) == -3)
        #expect(GGMLScalar.truncateToInt32(1e20) == Int32.min)
    }
}

@Suite struct DequantizeTests {
    /// Random blocks of every type (and gguf-py-quantised blocks where gguf-py can quantise),
    /// dequantised by gguf-py's numpy code and by MPQGGUF: every float must have the same bits.
    @Test func matchesGGUFPyBitExactly() throws {
        let folder = makeTemporaryFolder("mpq-gguf-dequant")
        defer { try? FileManager.default.removeItem(at: folder) }
        try runReference(["dequant-cases", folder.path, "1"])
        for (type, name) in referenceNames.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let bytes = try Data(contentsOf: folder.appendingPathComponent("\(name).bin"))
            let expected = try readFloats(folder.appendingPathComponent("\(name).ref"))
            let actual = try GGMLQuants.dequantize(type, data: bytes, count: expected.count)
            #expect(firstBitDifference(actual, expected) == nil, "\(name): \(firstBitDifference(actual, expected) ?? "")")
        }
    }

    @Test func rejectsBadSizes() {
        #expect(throws: GGUFError.self) { try GGMLQuants.dequantize(.q4_0, data: [UInt8](repeating: 0, count: 18), count: 33) }
        #expect(throws: GGUFError.self) { try GGMLQuants.dequantize(.q4_K, data: [UInt8](repeating: 0, count: 100), count: 256) }
        #expect(throws: GGUFError.self) { try GGMLQuants.dequantize(.q8_K, data: [UInt8](repeating: 0, count: 292), count: 256) }
    }
}

@Suite struct QuantizeTests {
    /// gguf-py implements the reference quantisers of these types in numpy; bytes must be identical.
    @Test func matchesGGUFPyBytes() throws {
        let folder = makeTemporaryFolder("mpq-gguf-quant")
        defer { try? FileManager.default.removeItem(at: folder) }
        try runReference(["quant-cases", folder.path, "2"])
        let input = try readFloats(folder.appendingPathComponent("input.f32"))
        for type in [GGMLType.bf16, .f16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1] {
            let expected = try [UInt8](Data(contentsOf: folder.appendingPathComponent("\(referenceNames[type]!).q")))
            let actual = try GGMLQuants.quantize(type, values: input, rowLength: 256)
            #expect(byteDifference(actual, expected) == nil, "\(type.name): \(byteDifference(actual, expected) ?? "")")
        }
    }

    /// Relative RMS error of dequant(quant(x)) on Gaussian rows stays below bounds typical of each
    /// type: measured values on this data plus ~20% headroom (byte identity with ggml is checked
    /// separately, by GGMLReferenceTests).
    @Test(arguments: [
        (GGMLType.q8_0, 0.0065), (.q6_K, 0.022), (.q5_K, 0.045), (.q5_1, 0.046), (.q5_0, 0.052), (.q4_K, 0.087),
        (.q4_1, 0.095), (.q4_0, 0.105), (.iq4_nl, 0.093), (.iq4_xs, 0.093), (.q3_K, 0.18), (.q2_K, 0.35),
        (.bf16, 0.003), (.f16, 0.0003), (.f32, 0.0),
    ])
    func roundTripErrorIsBounded(type: GGMLType, bound: Double) throws {
        var rng = SeededRandom(seed: 5)
        let n = 512, rows = 32
        let x = (0..<(n * rows)).map { _ in rng.normal() }
        let q = try GGMLQuants.quantize(type, values: x, rowLength: n)
        #expect(q.count == rows * type.byteCount(elements: n)!)
        let y = try GGMLQuants.dequantize(type, data: q, count: x.count)
        var err = 0.0, sig = 0.0
        for i in x.indices {
            err += Double((x[i] - y[i]) * (x[i] - y[i]))
            sig += Double(x[i] * x[i])
        }
        let rel = (err / sig).squareRoot()
        #expect(rel <= bound, "\(type.name): relative RMSE \(rel) > \(bound)")
    }

    /// Zeros quantise to zeros, and results do not depend on parallelism.
    @Test(arguments: GGMLType.allCases.filter(\.canQuantize))
    func zerosAndDeterminism(type: GGMLType) throws {
        let zeros = [Float](repeating: 0, count: 512)
        let qz = try GGMLQuants.quantize(type, values: zeros, rowLength: 256)
        #expect(try GGMLQuants.dequantize(type, data: qz, count: 512).allSatisfy { $0 == 0 })
        let x = sampleRows(rows: 300, length: 256, seed: 9)
        let w = (0..<256).map { Float($0 % 7) + 0.5 }
        for importance in [nil, w] {
            let a = try GGMLQuants.quantize(type, values: x, rowLength: 256, importance: importance, parallel: true)
            let b = try GGMLQuants.quantize(type, values: x, rowLength: 256, importance: importance, parallel: false)
            #expect(a == b)
        }
    }

    /// With an importance matrix, the importance-weighted squared error over many rows is lower
    /// than without (the point of the `_impl` quantisers), for every type that uses the weights.
    @Test(arguments: [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs])
    func importanceReducesWeightedError(type: GGMLType) throws {
        var rng = SeededRandom(seed: 21)
        let n = 256, rows = 64
        let x = (0..<(n * rows)).map { _ in rng.normal() }
        // Strongly uneven importance: a few columns matter far more.
        let w = (0..<n).map { i in i % 16 == 0 ? Float(50) : Float(0.1) + Float.random(in: 0..<1, using: &rng) }
        func weightedError(_ importance: [Float]?) throws -> Double {
            let y = try GGMLQuants.dequantize(type, data: GGMLQuants.quantize(type, values: x, rowLength: n, importance: importance), count: x.count)
            var e = 0.0
            for i in x.indices { e += Double(w[i % n]) * Double((x[i] - y[i]) * (x[i] - y[i])) }
            return e
        }
        let plain = try weightedError(nil), weighted = try weightedError(w)
        #expect(weighted < plain, "\(type.name): weighted error \(weighted) with imatrix vs \(plain) without")
    }

    @Test func rejectsBadArguments() {
        #expect(throws: GGUFError.self) { try GGMLQuants.quantize(.q4_K, values: [Float](repeating: 1, count: 128), rowLength: 128) }
        #expect(throws: GGUFError.self) { try GGMLQuants.quantize(.q4_0, values: [Float](repeating: 1, count: 96), rowLength: 64) }
        #expect(throws: GGUFError.self) { try GGMLQuants.quantize(.q4_0, values: [Float](repeating: 1, count: 64), rowLength: 64, importance: [1, 2]) }
        #expect(throws: GGUFError.self) { try GGMLQuants.quantize(.q8_K, values: [Float](repeating: 1, count: 256), rowLength: 256) }
    }

    /// Non-finite input must not trap (llama.cpp rejects such tensors; we only promise no crash).
    @Test(arguments: GGMLType.allCases.filter(\.canQuantize))
    func nonFiniteInputDoesNotTrap(type: GGMLType) throws {
        var x = sampleRows(rows: 2, length: 256, seed: 3)
        x[5] = .nan
        x[300] = .infinity
        x[301] = -.infinity
        _ = try GGMLQuants.quantize(type, values: x, rowLength: 256, importance: [Float](repeating: 1, count: 256))
        _ = try GGMLQuants.quantize(type, values: x, rowLength: 256)
    }
}
