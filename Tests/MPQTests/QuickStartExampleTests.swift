import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// The README's "Use from Swift" section is examples/quick-start/main.swift, and it runs.
@Suite struct QuickStartExampleTests {
    static let source = repositoryRoot.appendingPathComponent("examples/quick-start/main.swift")

    /// The example's code lines (after its leading comment block).
    static func codeLines() throws -> [String] {
        let text = try String(contentsOf: source, encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            .drop { $0.hasPrefix("//") }.filter { !$0.isEmpty }
    }

    @Test func readmeShowsTheExample() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = try Self.codeLines()
        #expect(lines.count >= 10)
        for line in lines { #expect(readme.contains(line), "README lacks the example line: \(line)") }
    }

    @Test func exampleQuantizesAndSearches() throws {
        let folder = temporaryFolder("mpq-quick-start")
        defer { try? FileManager.default.removeItem(at: folder) }
        let calib = folder.appendingPathComponent("photos.npy").path
        try runPython([repositoryRoot.appendingPathComponent("scripts/make_image_calib.py").path, calib, "--count", "4",
                       "--images", repositoryRoot.appendingPathComponent("examples/mobilenetv2/images").path])
        let out = folder.appendingPathComponent("w8a8.qdq.onnx").path
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("QuickStart")
        let result = try run(binary.path, [repositoryRoot.appendingPathComponent("examples/mobilenetv2/mobilenetv2.onnx").path, calib, out])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("W8A8 output SQNR"), "\(result.stdout)")
        #expect(result.stdout.contains("cheapest point with SQNR >= 30 dB"), "\(result.stdout)")
        _ = try Model(contentsOf: out)
    }
}
