import Foundation
import Testing
@testable import MPQGGUF

@Suite struct GGUFRoundTripTests {
    /// A file written by gguf-py's GGUFWriter: Swift reads every value, re-writes it byte for byte,
    /// and gguf-py reads the re-written file back identically.
    @Test(arguments: [nil, "64"] as [String?])
    func ggufPyFileRoundTripsByteIdentically(alignment: String?) throws {
        let folder = makeTemporaryFolder("mpq-gguf-rt")
        defer { try? FileManager.default.removeItem(at: folder) }
        let original = folder.appendingPathComponent("py.gguf")
        try runReference(["write-gguf", original.path] + (alignment.map { [$0] } ?? []))
        let file = try GGUFFile(contentsOf: original)

        #expect(file.version == 3)
        #expect(file.alignment == Int(alignment ?? "32"))
        let m = file.metadata
        #expect(m["general.architecture"] == .string("testarch"))
        #expect(m["test.u8"] == .uint8(200))
        #expect(m["test.i8"] == .int8(-100))
        #expect(m["test.u16"] == .uint16(60000))
        #expect(m["test.i16"] == .int16(-30000))
        #expect(m["test.u32"] == .uint32(4_000_000_000))
        #expect(m["test.i32"] == .int32(-2_000_000_000))
        #expect(m["test.u64"] == .uint64(18_000_000_000_000_000_000))
        #expect(m["test.i64"] == .int64(-9_000_000_000_000_000_000))
        #expect(m["test.f32"] == .float32(3.25))
        #expect(m["test.f64"] == .float64(-1.0e-300))
        #expect(m["test.bool_true"] == .bool(true))
        #expect(m["test.bool_false"] == .bool(false))
        #expect(m["test.string"]?.stringValue == "héllo wörld ✓")
        #expect(m["test.empty_string"] == .string(""))
        #expect(m["test.arr_i32"] == .array(.int32([1, -2, 3])))
        #expect(m["test.arr_f32"] == .array(.float32([0.5, -1.5])))
        #expect(m["test.arr_str"] == .array(.string(["a", "bc", ""])))
        #expect(m["test.arr_bool"] == .array(.bool([true, false, true])))
        #expect(m["test.arr_u8"] == .array(.uint8([0, 255])))
        if case .array(.array(let inner))? = m["test.nested"] {
            #expect(inner.count == 2)
            #expect(inner.map(\.count) == [2, 1])
        } else {
            Issue.record("test.nested is \(String(describing: m["test.nested"]))")
        }
        #expect(file.tensors.map(\.name) == ["f32.2d", "f16.1d", "q8_0.3d", "bf16.2d", "q4_k.2d", "f32.4d"])
        #expect(file.tensors.map(\.dimensions) == [[64, 3], [40], [64, 2, 2], [256, 2], [256, 2], [8, 3, 1, 2]])
        #expect(file.tensors.map(\.type) == [.f32, .f16, .q8_0, .bf16, .q4_K, .f32])
        for t in file.tensors {
            #expect(t.offset % file.alignment == 0)
            #expect(try file.floats(t).count == t.elementCount)
        }

        let copy = folder.appendingPathComponent("swift.gguf")
        try file.write(to: copy)
        let a = try Data(contentsOf: original), b = try Data(contentsOf: copy)
        #expect(byteDifference([UInt8](a), [UInt8](b)) == nil)
        #expect(try runReference(["check-gguf", original.path, copy.path]).contains("ok"))
    }

    /// A file Swift writes from scratch (including things gguf-py cannot write: empty arrays,
    /// non-UTF-8 strings, deeper nesting) reads back equal in Swift and parses in gguf-py.
    @Test func swiftWrittenFileRoundTrips() throws {
        let folder = makeTemporaryFolder("mpq-gguf-w")
        defer { try? FileManager.default.removeItem(at: folder) }
        var metadata = GGUFMetadata()
        metadata["general.architecture"] = .string("llama")
        metadata["a.u8"] = .uint8(1)
        metadata["a.i8"] = .int8(-1)
        metadata["a.u16"] = .uint16(2)
        metadata["a.i16"] = .int16(-2)
        metadata["a.u32"] = .uint32(3)
        metadata["a.i32"] = .int32(-3)
        metadata["a.u64"] = .uint64(.max)
        metadata["a.i64"] = .int64(.min)
        metadata["a.f32"] = .float32(-0.0)
        metadata["a.f64"] = .float64(.pi)
        metadata["a.bool"] = .bool(true)
        metadata["a.bytes"] = .string(GGUFString(bytes: [0x66, 0xFF, 0x00, 0xC3]))
        metadata["a.empty"] = .array(.int64([]))
        metadata["a.f64s"] = .array(.float64([1, 2]))
        metadata["a.u16s"] = .array(.uint16([1, 65535]))
        metadata["a.i16s"] = .array(.int16([-1]))
        metadata["a.u32s"] = .array(.uint32([7]))
        metadata["a.u64s"] = .array(.uint64([8]))
        metadata["a.i8s"] = .array(.int8([-8]))
        metadata["a.deep"] = .array(.array([.array([.string(["x"])]), .array([])]))
        metadata[GGUFKey.alignment] = .uint32(16)
        let x = sampleRows(rows: 4, length: 256, seed: 1)
        let specs: [(String, [Int], GGMLType)] = [("w.q4_K", [256, 4], .q4_K), ("w.q8_0", [256, 2, 2], .q8_0), ("w.f16", [1024], .f16), ("w.iq4_xs", [256, 4], .iq4_xs)]
        let tensors = specs.map { GGUFTensorInfo(name: $0.0, dimensions: $0.1, type: $0.2) }
        let payloads = try specs.map { try Data(GGMLQuants.quantize($0.2, values: x, rowLength: $0.1[0])) }
        let url = folder.appendingPathComponent("out.gguf")
        try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors) { payloads[$0] }
        let file = try GGUFFile(contentsOf: url)
        #expect(file.metadata == metadata)
        #expect(file.alignment == 16)
        #expect(file.tensors.map(\.name) == specs.map(\.0))
        for (i, t) in file.tensors.enumerated() {
            #expect(file.tensorData(t) == payloads[i])
            #expect(t.offset % 16 == 0)
        }
        // Rewriting is byte-identical, and gguf-py can parse the file.
        let again = folder.appendingPathComponent("again.gguf")
        try file.write(to: again)
        #expect(try Data(contentsOf: again) == Data(contentsOf: url))
        #expect(try runReference(["check-gguf", url.path, again.path]).contains("ok"))
        // Only the two files remain: no temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == ["again.gguf", "out.gguf"])
    }

    /// A writer failure leaves the destination untouched and no temporary file.
    @Test func failedWriteLeavesNothingBehind() throws {
        let folder = makeTemporaryFolder("mpq-gguf-fail")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("x.gguf")
        try Data("old".utf8).write(to: url)
        let tensors = [GGUFTensorInfo(name: "t", dimensions: [32], type: .q4_0)]
        #expect(throws: GGUFError.self) {
            try GGUFWriter.write(to: url, metadata: GGUFMetadata(), tensors: tensors) { _ in Data(count: 17) }
        }
        #expect(try Data(contentsOf: url) == Data("old".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["x.gguf"])
        #expect(throws: GGUFError.self) {
            try GGUFWriter.write(to: url, metadata: GGUFMetadata(), tensors: tensors + tensors) { _ in Data(count: 18) }
        }
        #expect(throws: GGUFError.self) {
            try GGUFWriter.write(to: url, metadata: GGUFMetadata(), tensors: [GGUFTensorInfo(name: "t", dimensions: [33], type: .q4_0)]) { _ in Data() }
        }
        // Names llama.cpp would refuse (GGML_MAX_NAME) are rejected before anything is written.
        let long = String(repeating: "x", count: 64)
        #expect(throws: GGUFError.self) {
            try GGUFWriter.write(to: url, metadata: GGUFMetadata(), tensors: [GGUFTensorInfo(name: long, dimensions: [32], type: .f32)]) { _ in Data(count: 128) }
        }
        #expect(try Data(contentsOf: url) == Data("old".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["x.gguf"])
    }

    /// Tensor types without arithmetic here (integer, IQ2/IQ3, MXFP4 ...) are read and copied;
    /// only converting them to floats is refused.
    @Test func storageOnlyTypesAreReadAndCopied() throws {
        let folder = makeTemporaryFolder("mpq-gguf-types")
        defer { try? FileManager.default.removeItem(at: folder) }
        let specs: [(GGMLType, [Int])] = [(.i32, [4, 2]), (.iq2_xxs, [256]), (.mxfp4, [64]), (.f64, [3]), (.tq1_0, [256, 2])]
        let tensors = specs.enumerated().map { GGUFTensorInfo(name: "t\($0.offset)", dimensions: $0.element.1, type: $0.element.0) }
        let payloads = tensors.map { t in Data((0..<t.byteCount).map { UInt8(truncatingIfNeeded: $0 &* 31) }) }
        let url = folder.appendingPathComponent("types.gguf")
        try GGUFWriter.write(to: url, metadata: GGUFMetadata([("general.architecture", .string("x"))]), tensors: tensors) { payloads[$0] }
        let file = try GGUFFile(contentsOf: url)
        #expect(file.tensors.map(\.type) == specs.map(\.0))
        for (t, p) in zip(file.tensors, payloads) {
            #expect(file.tensorData(t) == p)
            #expect(throws: GGUFError.self) { try file.floats(t) }
        }
        #expect(try runReference(["check-gguf", url.path, url.path]).contains("ok"))
    }

    @Test func metadataKeepsOrderWhenEdited() {
        var m = GGUFMetadata([("a", .uint8(1)), ("b", .uint8(2)), ("c", .uint8(3))])
        m["b"] = .string("x")
        m["d"] = .bool(false)
        #expect(m.keys == ["a", "b", "c", "d"])
        m["a"] = nil
        #expect(m.keys == ["b", "c", "d"])
        #expect(m["c"] == .uint8(3))
    }
}

/// Builds GGUF bytes field by field so tests can corrupt any part.
struct RawGGUF {
    struct Tensor {
        var name: String
        var dims: [Int64]
        var type: UInt32
        var offset: UInt64
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var tensorCount: UInt64?
    var kvCount: UInt64?
    /// Raw key/value records (key string, type, value).
    var kvs: [[UInt8]] = [RawGGUF.kv("general.architecture", string: "llama")]
    var tensors: [Tensor] = [
        Tensor(name: "a", dims: [32, 2], type: GGMLType.q4_0.rawValue, offset: 0),
        Tensor(name: "b", dims: [8], type: GGMLType.f32.rawValue, offset: 64),
    ]
    var alignment = 32
    var dataSize = 96
    var truncateTo: Int?

    static func kv(_ key: String, type: UInt32, _ value: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.string(Array(key.utf8))
        w.u32(type)
        return w.bytes + value
    }

    static func kv(_ key: String, string: String) -> [UInt8] {
        var w = ByteWriter()
        w.string(Array(string.utf8))
        return kv(key, type: 8, w.bytes)
    }

    var bytes: [UInt8] {
        var w = ByteWriter()
        w.bytes += magic
        w.u32(version)
        w.u64(tensorCount ?? UInt64(tensors.count))
        w.u64(kvCount ?? UInt64(kvs.count))
        for kv in kvs { w.bytes += kv }
        for t in tensors {
            w.string(Array(t.name.utf8))
            w.u32(UInt32(t.dims.count))
            for d in t.dims { w.int(d) }
            w.u32(t.type)
            w.u64(t.offset)
        }
        while w.bytes.count % alignment != 0 { w.bytes.append(0) }
        w.bytes += (0..<dataSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        if let truncateTo { return Array(w.bytes.prefix(truncateTo)) }
        return w.bytes
    }
}

@Suite struct GGUFBadFileTests {
    static var corruptions: [(String, GGUFError.Code, (inout RawGGUF) -> Void)] {
        var u64 = ByteWriter()
        u64.u64(1 << 62)
        return [
            ("empty file", .truncated, { $0.truncateTo = 0 }),
            ("truncated in header", .truncated, { $0.truncateTo = 10 }),
            ("truncated in key", .absurdCount, { $0.truncateTo = 24 + 8 + 5 }),
            ("truncated in value", .truncated, { $0.tensors = []; $0.truncateTo = 24 + 8 + 20 + 4 + 3 }),
            ("file too short for its tensor count", .absurdCount, { $0.truncateTo = 24 + 8 + 20 + 4 + 3 }),
            ("truncated in tensor infos", .truncated, { $0.truncateTo = 24 + 8 + 20 + 4 + 8 + 5 + 8 + 1 + 4 + 8 }),
            ("truncated in data", .dataPastEnd, { $0.dataSize = 70 }),
            ("bad magic", .badMagic, { $0.magic = Array("GGML".utf8) }),
            ("version 1", .unsupportedVersion, { $0.version = 1 }),
            ("big-endian version", .unsupportedVersion, { $0.version = UInt32(3).byteSwapped }),
            ("huge tensor count", .absurdCount, { $0.tensorCount = 1 << 40 }),
            ("huge kv count", .absurdCount, { $0.kvCount = UInt64.max }),
            ("huge key length", .absurdCount, { $0.kvs = [u64.bytes + [0, 0, 0, 0]] }),
            ("huge string length", .absurdCount, { $0.kvs = [RawGGUF.kv("s", type: 8, u64.bytes)] }),
            ("huge array count", .absurdCount, { $0.kvs = [RawGGUF.kv("a", type: 9, [4, 0, 0, 0] + u64.bytes)] }),
            ("unknown value type", .badValueType, { $0.kvs = [RawGGUF.kv("v", type: 13, [0, 0, 0, 0])] }),
            ("unknown array element type", .badValueType, { $0.kvs = [RawGGUF.kv("v", type: 9, [99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])] }),
            ("arrays nested too deep", .badValueType, { raw in
                var value: [UInt8] = []
                for _ in 0..<20 { value += [9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0] }
                raw.kvs = [RawGGUF.kv("deep", type: 9, value + [0, 0, 0, 0, 0, 0, 0, 0])]
            }),
            ("bool value 2", .badValue, { $0.kvs = [RawGGUF.kv("b", type: 7, [2])] }),
            ("duplicate key", .duplicateKey, { $0.kvs = [RawGGUF.kv("k", string: "x"), RawGGUF.kv("k", string: "y")] }),
            ("empty key", .badName, { $0.kvs = [RawGGUF.kv("", string: "x")] }),
            ("key not UTF-8", .badName, { $0.kvs = [[1, 0, 0, 0, 0, 0, 0, 0, 0xFF, 4, 0, 0, 0, 1, 0, 0, 0]] }),
            ("alignment not a power of two", .badAlignment, { $0.kvs = [RawGGUF.kv("general.alignment", type: 4, [48, 0, 0, 0])] }),
            ("alignment of the wrong type", .badAlignment, { $0.kvs = [RawGGUF.kv("general.alignment", type: 10, [32, 0, 0, 0, 0, 0, 0, 0])] }),
            ("five dimensions", .tooManyDimensions, { $0.tensors[1].dims = [8, 1, 1, 1, 1] }),
            ("zero dimensions", .tooManyDimensions, { $0.tensors[1].dims = [] }),
            ("dimension zero", .badDimension, { $0.tensors[1].dims = [8, 0] }),
            ("negative dimension", .badDimension, { $0.tensors[1].dims = [-8] }),
            ("element count overflow", .sizeOverflow, { $0.tensors[1].dims = [1 << 32, 1 << 32, 4] }),
            ("byte size overflow", .sizeOverflow, { $0.tensors[1].dims = [1 << 31, 1 << 31] }),
            ("ne0 not a multiple of the block size", .notBlockMultiple, { $0.tensors[0].dims = [33, 2] }),
            ("unknown tensor type", .unknownTensorType, { $0.tensors[1].type = 99 }),
            ("misaligned offset", .misalignedOffset, { $0.tensors[1].offset = 40 }),
            ("offset past the end", .dataPastEnd, { $0.tensors[1].offset = 1 << 20 }),
            ("offset near UInt64.max", .dataPastEnd, { $0.tensors[1].offset = UInt64.max - 31 }),
            ("overlapping tensors", .overlappingTensors, { $0.tensors[1].offset = 32 }),
            ("duplicate tensor name", .duplicateTensor, { $0.tensors[1].name = "a" }),
            ("empty tensor name", .badName, { $0.tensors[1].name = "" }),
        ]
    }

    @Test func validFileParses() throws {
        let file = try GGUFFile(data: Data(RawGGUF().bytes), path: "valid.gguf")
        #expect(file.tensors.count == 2)
        #expect(file.tensors[1].dimensions == [8])
        #expect(try file.floats(file.tensors[0]).count == 64)
        // An info that does not describe this file's data gives no bytes, never a trap.
        let foreign = GGUFTensorInfo(name: "x", dimensions: [1 << 40], type: .f32, offset: 32)
        #expect(file.tensorData(foreign).isEmpty)
        #expect(throws: GGUFError.self) { try file.floats(foreign) }
        let overflowing = GGUFTensorInfo(name: "y", dimensions: [1 << 62, 8], type: .f32, offset: Int.max - 4)
        #expect(file.tensorData(overflowing).isEmpty)
        #expect(throws: GGUFError.self) { try file.floats(overflowing) }
    }

    /// Version 2 has the same little-endian layout; it is read and re-written as version 2, also
    /// in place over the memory-mapped file being read.
    @Test func version2ReadsAndRewritesInPlace() throws {
        let folder = makeTemporaryFolder("mpq-gguf-v2")
        defer { try? FileManager.default.removeItem(at: folder) }
        var raw = RawGGUF()
        raw.version = 2
        let url = folder.appendingPathComponent("v2.gguf")
        try Data(raw.bytes).write(to: url)
        let file = try GGUFFile(contentsOf: url)
        #expect(file.version == 2)
        let payloads = file.tensors.map { Data(file.tensorData($0)) }
        try file.write(to: url)
        let again = try GGUFFile(contentsOf: url)
        #expect(again.version == 2)
        #expect(again.metadata == file.metadata)
        #expect(again.tensors == file.tensors)
        #expect(again.tensors.map { again.tensorData($0) } == payloads)
        // The filler between tensors is now zero padding; the header is unchanged.
        #expect(try [UInt8](Data(contentsOf: url)).prefix(again.dataOffset) == raw.bytes.prefix(again.dataOffset))
    }

    @Test(arguments: GGUFBadFileTests.corruptions.indices)
    func corruptFileGivesExpectedError(index: Int) {
        let (name, code, corrupt) = GGUFBadFileTests.corruptions[index]
        var raw = RawGGUF()
        corrupt(&raw)
        do {
            _ = try GGUFFile(data: Data(raw.bytes), path: "bad.gguf")
            Issue.record("\(name): parsed without error")
        } catch let error as GGUFError {
            #expect(error.code == code, "\(name): got \(error.code): \(error)")
            #expect(error.description.hasPrefix("bad.gguf: "))
            #expect(!error.description.contains("\n"))
        } catch {
            Issue.record("\(name): unexpected error \(error)")
        }
    }

    /// Random truncations and byte flips of a real file never crash: they parse or throw GGUFError.
    @Test func randomCorruptionNeverTraps() throws {
        let folder = makeTemporaryFolder("mpq-gguf-fuzz")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("py.gguf")
        try runReference(["write-gguf", url.path])
        let original = try [UInt8](Data(contentsOf: url))
        var rng = SeededRandom(seed: 99)
        var failures = 0
        for i in 0..<3000 {
            var bytes = original
            if i % 3 == 0 {
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            } else {
                // Corrupt the header region, where the structure lives.
                let limit = min(bytes.count, 1400)
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    bytes[Int.random(in: 0..<limit, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            do {
                let file = try GGUFFile(data: Data(bytes))
                for t in file.tensors where t.type.canDequantize { _ = try file.floats(t) }
            } catch is GGUFError {
                failures += 1
            }
        }
        #expect(failures > 1000)
    }
}
