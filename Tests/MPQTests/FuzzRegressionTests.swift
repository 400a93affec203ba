import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Replays the fuzzing seed corpus (Fuzz/corpus) and every input that once crashed a reader
/// (Fuzz/regressions) through `FuzzEntry`, the code the libFuzzer harness runs (scripts/fuzz.sh),
/// without the sanitizer build. A regression reappearing traps and fails the test run.
@Suite struct FuzzRegressionTests {
    static let fuzzFolder = repositoryRoot.appendingPathComponent("Fuzz")

    static func files(under folder: String) -> [String] {
        let root = fuzzFolder.appendingPathComponent(folder).path
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        var files: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let path = (root as NSString).appendingPathComponent(relative)
            var isDirectory: ObjCBool = false
            let name = (relative as NSString).lastPathComponent
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
               !name.hasPrefix("."), name != "README.md" {
                files.append(path)
            }
        }
        return files.sorted()
    }

    /// Seeds of formats mpq deliberately refuses (their error paths are fuzzed too).
    static let rejectedSeeds: Set<String> = ["big_endian_f4.npy", "f8_fortran.npy"]

    /// Every other seed is a valid file its reader accepts (else it would seed nothing deep).
    @Test func seedCorpusIsAcceptedByEveryTarget() throws {
        let seeds = Self.files(under: "corpus")
        for target in FuzzEntry.Target.allCases {
            #expect(seeds.contains { FuzzEntry.target(forPath: $0) == target }, "no seed for \(target)")
        }
        for path in seeds {
            let target = try #require(FuzzEntry.target(forPath: path), "\(path) is in no target's folder")
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            if Self.rejectedSeeds.contains((path as NSString).lastPathComponent) {
                #expect(!FuzzEntry.run(target, data), "\(path) was expected to be rejected")
                continue
            }
            do {
                try FuzzEntry.read(target, data)
            } catch {
                Issue.record("\(target) rejected its seed \(path): \(error)")
            }
        }
    }

    /// Inputs that crashed a reader once: each must now be read or rejected, without a trap.
    @Test func regressionsDoNotCrash() throws {
        for path in Self.files(under: "regressions") {
            _ = try FuzzEntry.run(file: path)
        }
    }

    /// The dispatch byte of a tagged input picks the target; the folder or extension of a file does.
    @Test func dispatch() throws {
        #expect(FuzzEntry.target(forPath: "/x/Fuzz/corpus/npz/a") == .npz)
        #expect(FuzzEntry.target(forPath: "/x/Fuzz/regressions/gguf/crash-123") == .gguf)
        #expect(FuzzEntry.target(forPath: "/tmp/crash-abc.onnx") == .onnx)
        #expect(FuzzEntry.target(forPath: "/tmp/crash-abc") == nil)
        let npy = try Data(contentsOf: Self.fuzzFolder.appendingPathComponent("corpus/npy/f4_2x3.npy"))
        #expect(FuzzEntry.run(tagged: Data([FuzzEntry.Target.npy.rawValue]) + npy))
        #expect(!FuzzEntry.run(tagged: Data([FuzzEntry.Target.onnx.rawValue]) + npy))
        #expect(!FuzzEntry.run(tagged: Data()))
        // Garbage of every kind is rejected, never a crash.
        for target in FuzzEntry.Target.allCases {
            #expect(!FuzzEntry.run(target, Data()))
            #expect(!FuzzEntry.run(target, Data(repeating: 0xFF, count: 64)))
        }
    }
}
