import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct NPYTests {
    let folder = temporaryFolder("mpq-npy")

    /// numpy writes every supported dtype; we read it and write it back; numpy checks the bytes.
    @Test func roundTripsEveryDtypeThroughNumpy() throws {
        let script = """
        import numpy as np, sys
        d = sys.argv[1]
        arrays = {
            "f32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
            "f16": np.array([1.5, -2.25, 65504, 6e-8], dtype=np.float16),
            "f64": np.array([[1e300, -1e-300]], dtype=np.float64),
            "i64": np.array([-(2**62), 2**62, 0], dtype=np.int64),
            "i32": np.array([-7, 7], dtype=np.int32),
            "i8": np.array([-128, 127], dtype=np.int8),
            "u8": np.array([0, 255], dtype=np.uint8),
            "b": np.array([True, False, True]),
            "scalar": np.array(3.5, dtype=np.float32),
            "empty": np.zeros((0, 3), dtype=np.float32),
        }
        for k, v in arrays.items():
            np.save(f"{d}/{k}.npy", v)
        np.savez(f"{d}/plain.npz", **arrays)
        np.savez_compressed(f"{d}/compressed.npz", **arrays)
        """
        try runPython(["-c", script, folder.path])
        let names = ["f32", "f16", "f64", "i64", "i32", "i8", "u8", "b", "scalar", "empty"]
        var loaded: [String: Tensor] = [:]
        for name in names {
            loaded[name] = try NPY.read(contentsOf: folder.appendingPathComponent("\(name).npy").path)
            try NPY.write(loaded[name]!, to: folder.appendingPathComponent("back_\(name).npy").path)
        }
        #expect(loaded["f32"]!.shape == [3, 4])
        #expect(loaded["scalar"]!.shape == [])
        #expect(loaded["b"]!.dtype == .bool)
        #expect(loaded["i64"]!.integers() == [-(1 << 62), 1 << 62, 0])
        for archive in ["plain", "compressed"] {
            let arrays = try NPZ.read(contentsOf: folder.appendingPathComponent("\(archive).npz").path)
            #expect(Set(arrays.keys) == Set(names))
            for name in names {
                #expect(arrays[name]!.shape == loaded[name]!.shape)
                #expect(arrays[name]!.dtype == loaded[name]!.dtype)
            }
        }
        try NPZ.write(loaded, to: folder.appendingPathComponent("back.npz").path)
        let check = """
        import numpy as np, sys
        d = sys.argv[1]
        names = \(names)
        z = np.load(f"{d}/back.npz")
        for k in names:
            a = np.load(f"{d}/{k}.npy"); b = np.load(f"{d}/back_{k}.npy")
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), k
            assert z[k].dtype == a.dtype and np.array_equal(z[k], a), k
        print("ok")
        """
        #expect(try runPython(["-c", check, folder.path]).contains("ok"))
    }

    @Test func rejectsBadFiles() throws {
        let garbage = folder.appendingPathComponent("garbage.npy")
        try Data("hello".utf8).write(to: garbage)
        #expect(throws: MPQError.self) { try NPY.read(contentsOf: garbage.path) }
        #expect(throws: MPQError.fileNotFound(folder.appendingPathComponent("missing.npy").path)) {
            try NPY.read(contentsOf: folder.appendingPathComponent("missing.npy").path)
        }
        let full = try NPY.encode(Tensor(shape: [4, 4], scalars: [Float](repeating: 1, count: 16)))
        let truncated = folder.appendingPathComponent("truncated.npy")
        try full.prefix(full.count - 8).write(to: truncated)
        #expect(throws: MPQError.self) { try NPY.read(contentsOf: truncated.path) }
        let notZip = folder.appendingPathComponent("bad.npz")
        try Data("not a zip".utf8).write(to: notZip)
        #expect(throws: MPQError.self) { try NPZ.read(contentsOf: notZip.path) }
        let bigEndian = folder.appendingPathComponent("be.npy")
        try runPython(["-c", "import numpy as np, sys; np.save(sys.argv[1], np.arange(3, dtype='>f4'))", bigEndian.path])
        #expect(throws: MPQError.self) { try NPY.read(contentsOf: bigEndian.path) }
    }
}
