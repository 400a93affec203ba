import Foundation
import Testing
@testable import MPQGGUF

/// Byte identity with llama.cpp's ggml-quants.c without needing its sources: hashes of the bytes
/// ggml's C quantisers produced (bench/gguf_ggml_reference.c, llama-cpp-python 0.3.36's ggml) for
/// inputs generated here with integer arithmetic only (identical on every platform).
///
/// With MPQ_GGML_SRC set, the test also runs the C code on the same inputs and prints the table.
@Suite struct GGMLGoldenTests {
    static let rowLength = 512
    static let rows = 24

    /// FNV-1a, 64-bit.
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// A value in [-1, 1) from a counter, by integer hashing (SplitMix64 finaliser).
    static func unit(_ i: Int, _ salt: UInt64) -> Float {
        var z = UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15 &+ salt
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(Int32(truncatingIfNeeded: z >> 32)) * 0x1p-31
    }

    /// Rows of eight kinds: uniform, heavy-tailed, positive, sparse, constant, tiny with outliers,
    /// large, and negative-skewed.
    static var input: [Float] {
        var x: [Float] = []
        for r in 0..<rows {
            for j in 0..<rowLength {
                let u = unit(r * rowLength + j, 1)
                let v: Float
                switch r % 8 {
                case 0: v = u
                case 1: v = u * u * u * 3
                case 2: v = (u + 1) * 2
                case 3: v = j % 37 == 0 ? u : 0
                case 4: v = 0.75
                case 5: v = j % 101 == 7 ? u * 10 : u * 1e-4
                case 6: v = u * 300
                default: v = u < 0 ? u * 5 : u * 0.5
                }
                x.append(v)
            }
        }
        return x
    }

    /// Importance vectors: none, uneven positive, with exact zeros.
    static var importances: [[Float]?] {
        [
            nil,
            (0..<rowLength).map { j in (unit(j, 2) + 1.001) * (j % 9 == 0 ? 100 : 1) },
            (0..<rowLength).map { j in j % 3 == 0 ? 0 : (unit(j, 3) + 1) * 2 },
        ]
    }

    static let types: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs]

    /// FNV-1a of ggml's output per type, for importances #0, #1, #2.
    static let expected: [GGMLType: [UInt64]] = [
        .f32: [0x4a40d3c4691651c4, 0x4a40d3c4691651c4, 0x4a40d3c4691651c4],
        .f16: [0x6baba795db009215, 0x6baba795db009215, 0x6baba795db009215],
        .bf16: [0xf7669d09d331e008, 0xf7669d09d331e008, 0xf7669d09d331e008],
        .q4_0: [0xcd50cd7e0313dcb, 0xbcc818cf750d64f4, 0x736c1a67c8782bb3],
        .q4_1: [0x76de814574da8a4, 0xbda6ea5d3e115c1e, 0x3d3fa20ed819ccc5],
        .q5_0: [0x9d202b0c68a5748f, 0x203819d9191c061, 0xb53e0b67039d69da],
        .q5_1: [0xd55772cde9f2b405, 0xcd5096433d4141b8, 0x2beaab66ab353eef],
        .q8_0: [0xfc3f5202baf5c0e6, 0xfc3f5202baf5c0e6, 0xfc3f5202baf5c0e6],
        .q2_K: [0x8e0434bbd2cf7088, 0x5beb466e4463545, 0xef34c313cddb3781],
        .q3_K: [0x1e2c7a4740a0bd8e, 0x5ccfc63f30e4c712, 0xd91251ef247d3085],
        .q4_K: [0x18f02d226207ad7e, 0x5c03735951163056, 0x6aec0578127483ec],
        .q5_K: [0x66d1691954147099, 0x134a5afeba13a44c, 0xd77be969e80e9889],
        .q6_K: [0x1909dade7771d924, 0xad081232c4f19d96, 0x8e0589619d24a82e],
        .iq4_nl: [0x64a59977ac8882a7, 0xbc27d990efb1a6b6, 0x81cb43102ce6928d],
        .iq4_xs: [0x69b90b4db6a5731c, 0xac1a345385241c8, 0xe537c2014fc3c417],
    ]

    @Test func quantizationMatchesGGMLGoldenHashes() throws {
        let x = Self.input
        var table: [(GGMLType, [UInt64])] = []
        for type in Self.types {
            var hashes: [UInt64] = []
            for importance in Self.importances {
                hashes.append(Self.fnv1a(try GGMLQuants.quantize(type, values: x, rowLength: Self.rowLength, importance: importance)))
            }
            table.append((type, hashes))
            if let expected = Self.expected[type] {
                #expect(hashes == expected, "\(type.name): \(hashes.map { String($0, radix: 16) }) vs ggml \(expected.map { String($0, radix: 16) })")
            } else if ProcessInfo.processInfo.environment["MPQ_GGML_SRC"] == nil {
                Issue.record("no golden hashes for \(type.name)")
            }
        }
        guard let ggml = ProcessInfo.processInfo.environment["MPQ_GGML_SRC"] else { return }
        // Regenerate the table from the C code and check against it directly.
        let folder = makeTemporaryFolder("mpq-ggml-golden")
        defer { try? FileManager.default.removeItem(at: folder) }
        let harness = folder.appendingPathComponent("ref").path
        try runProgram(["/usr/bin/env", "cc", "-O2", "-DNDEBUG", "-std=gnu11", "-I\(ggml)/include", "-I\(ggml)/src", "-I\(ggml)/src/ggml-cpu",
                        repoRoot.appendingPathComponent("bench/gguf_ggml_reference.c").path, "\(ggml)/src/ggml-quants.c", "-lm", "-o", harness])
        let input = folder.appendingPathComponent("x.f32")
        try writeFloats(x, to: input)
        var lines: [String] = []
        for (type, ours) in table {
            var theirs: [UInt64] = []
            for (k, importance) in Self.importances.enumerated() {
                let qw = folder.appendingPathComponent("qw\(k).f32"), out = folder.appendingPathComponent("out")
                if let importance { try writeFloats(importance, to: qw) }
                try runProgram([harness, "quantize", "\(type.rawValue)", "\(Self.rowLength)", input.path, importance == nil ? "-" : qw.path, out.path])
                theirs.append(Self.fnv1a(try [UInt8](Data(contentsOf: out))))
            }
            #expect(ours == theirs, "\(type.name) differs from ggml")
            lines.append("        .\(type): [\(theirs.map { "0x" + String($0, radix: 16) }.joined(separator: ", "))],")
        }
        print("golden table:\n" + lines.joined(separator: "\n"))
    }
}
