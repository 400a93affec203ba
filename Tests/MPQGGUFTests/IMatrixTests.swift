import Foundation
import Testing
@testable import MPQGGUF

@Suite struct IMatrixTests {
    static func sample(_ format: IMatrix.Format) -> IMatrix {
        var rng = SeededRandom(seed: 4)
        let dense = (0..<512).map { _ in Float.random(in: 0..<100, using: &rng) }
        let experts = (0..<(4 * 256)).map { _ in Float.random(in: 0..<10, using: &rng) }
        switch format {
        case .gguf:
            return IMatrix(format: .gguf, entries: [
                "blk.0.ffn_down.weight": .init(sums: dense, counts: [2048]),
                "blk.0.ffn_up_exps.weight": .init(sums: experts, counts: [300, 0, 12, 7]),
                "output.weight": .init(sums: [1, 2, 3, 4], counts: [4]),
            ], datasets: ["wiki.train.raw", "code.txt"], chunkCount: 4, chunkSize: 512)
        case .legacy:
            return IMatrix(format: .legacy, entries: [
                "blk.0.attn_q.weight": .init(sums: dense, counts: [4]),
                "blk.1.attn_q.weight": .init(sums: Array(dense.reversed()), counts: [4]),
            ], datasets: ["wiki.train.raw"], chunkCount: 4)
        }
    }

    @Test(arguments: [IMatrix.Format.gguf, .legacy])
    func roundTripsByteIdentically(format: IMatrix.Format) throws {
        let folder = makeTemporaryFolder("mpq-imatrix")
        defer { try? FileManager.default.removeItem(at: folder) }
        let m = IMatrixTests.sample(format)
        let a = folder.appendingPathComponent("a"), b = folder.appendingPathComponent("b")
        try m.write(to: a)
        let read = try IMatrix(contentsOf: a)
        #expect(read == m)
        try read.write(to: b)
        #expect(try Data(contentsOf: a) == Data(contentsOf: b))
    }

    /// The GGUF imatrix has llama-imatrix's layout, checked with gguf-py.
    @Test func ggufLayoutMatchesLlamaImatrix() throws {
        let folder = makeTemporaryFolder("mpq-imatrix-py")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("imatrix.gguf")
        try IMatrixTests.sample(.gguf).write(to: url)
        let json = try runReference(["describe-imatrix", url.path])
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        let fields = object["fields"] as! [String: Any]
        #expect(fields["general.type"] as? String == "imatrix")
        #expect(fields["imatrix.datasets"] as? [String] == ["wiki.train.raw", "code.txt"])
        #expect(fields["imatrix.chunk_count"] as? Int == 4)
        #expect(fields["imatrix.chunk_size"] as? Int == 512)
        let tensors = object["tensors"] as! [[String: Any]]
        #expect(tensors.map { $0["name"] as! String } == [
            "blk.0.ffn_down.weight.in_sum2", "blk.0.ffn_down.weight.counts",
            "blk.0.ffn_up_exps.weight.in_sum2", "blk.0.ffn_up_exps.weight.counts",
            "output.weight.in_sum2", "output.weight.counts",
        ])
        #expect(tensors.allSatisfy { $0["type"] as? String == "F32" })
        #expect(tensors.map { $0["shape"] as! [Int] } == [[512], [1], [256, 4], [1, 4], [4], [1]])
        #expect(tensors[3]["data"] as? [Double] == [300, 0, 12, 7])
    }

    /// A legacy file laid out byte by byte as imatrix.cpp's save_imatrix_legacy writes it.
    @Test func readsHandMadeLegacyFile() throws {
        var w = ByteWriter()
        w.int(Int32(1))
        w.int(Int32(5)); w.bytes += Array("w.abc".utf8)
        w.int(Int32(10))            // ncall
        w.int(Int32(2))             // nval
        w.int(Float(20).bitPattern); w.int(Float(5).bitPattern)
        w.int(Int32(10))            // last chunk
        w.int(Int32(4)); w.bytes += Array("data".utf8)
        let m = try IMatrix(legacy: Data(w.bytes), path: "x.dat")
        #expect(m.entries == ["w.abc": .init(sums: [20, 5], counts: [10])])
        #expect(m.chunkCount == 10)
        #expect(m.datasets == ["data"])
        #expect(m.importance(for: "w.abc") == [2, 0.5])
        // The trailer is optional.
        let short = try IMatrix(legacy: Data(w.bytes.prefix(4 + 4 + 5 + 4 + 4 + 8)))
        #expect(short.chunkCount == 0 && short.datasets.isEmpty)
        // Truncated values and absurd lengths are errors, not crashes.
        #expect(throws: GGUFError.self) { try IMatrix(legacy: Data(w.bytes.prefix(20))) }
        var bad = w.bytes
        bad[4] = 0xFF; bad[7] = 0x7F
        #expect(throws: GGUFError.self) { try IMatrix(legacy: Data(bad)) }
        #expect(throws: GGUFError.self) { try IMatrix(legacy: Data([0, 0, 0, 0])) }
    }

    @Test func importanceIsNormalisedLikeLlamaQuantize() {
        let m = IMatrixTests.sample(.gguf)
        let e = m.entries["blk.0.ffn_up_exps.weight"]!
        let w = m.importance(for: "blk.0.ffn_up_exps.weight")!
        #expect(w[0] == e.sums[0] / 300)
        #expect(w[256 ..< 512].allSatisfy { $0 == 1 })   // expert with count 0
        #expect(w[512] == e.sums[512] / 12)
        #expect(m.importance(for: "missing") == nil)
    }

    /// GGUF → legacy follows save_imatrix_legacy: values (sum / count) · ncall, ncall = ⌈max count / chunk size⌉.
    @Test func convertsToLegacyLikeLlamaImatrix() throws {
        let folder = makeTemporaryFolder("mpq-imatrix-conv")
        defer { try? FileManager.default.removeItem(at: folder) }
        let m = IMatrixTests.sample(.gguf)
        let url = folder.appendingPathComponent("x.dat")
        try m.write(to: url, format: .legacy)
        let legacy = try IMatrix(contentsOf: url)
        #expect(legacy.format == .legacy)
        let dense = legacy.entries["blk.0.ffn_down.weight"]!
        #expect(dense.counts == [4])
        #expect(dense.sums[0] == (m.entries["blk.0.ffn_down.weight"]!.sums[0] / 2048) * 4)
        let moe = legacy.entries["blk.0.ffn_up_exps.weight"]!
        #expect(moe.counts == [1])
        #expect(moe.sums[300] == 1)   // expert without data stores 1
        #expect(legacy.datasets == ["code.txt"])
    }
}
