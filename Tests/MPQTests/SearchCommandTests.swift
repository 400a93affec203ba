import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// `mpq search` and `mpq inspect --groups` on a small model: the files it writes and its errors.
@Suite(.serialized) struct SearchCommandTests {
    let folder = temporaryFolder("mpq-search-cli")

    /// The residual test model and 8 random samples, as files.
    func files() throws -> (model: String, data: String) {
        let model = folder.appendingPathComponent("residual.onnx").path, data = folder.appendingPathComponent("x.npy").path
        try Model(graph: residualTestGraph()).write(to: model)
        var rng = SeededGenerator(seed: 3)
        try NPY.write(.random([8, 3, 8, 8], in: -1...1, using: &rng), to: data)
        return (model, data)
    }

    @Test func searchWritesTheFrontAndAConfigQuantizeAccepts() throws {
        let (model, data) = try files()
        let out = folder.appendingPathComponent("out").path, cache = folder.appendingPathComponent("cache").path
        let result = try mpq(["search", model, "--method", "pareto", "--calib", data, "--candidates", "w8a8,w4a8,w8a16,w16a16",
                              "--target-sqnr", "25", "--cache", cache, "--out", out])
        #expect(result.status == 0, "\(result.stderr)")
        for name in ["pareto.csv", "pareto.json", "sensitivity.csv", "pareto.svg", "report.html", "config.json",
                     "model.qdq.onnx", "encodings.json", "report.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/\(name)"), "\(name) missing")
        }
        // Not a terminal: plain progress lines.
        #expect(result.stderr.contains("sensitivity 1/24") && !result.stderr.contains("\r"))
        let csv = try String(contentsOfFile: "\(out)/pareto.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first == "step,relative_cost,predicted_sqnr,evaluated_sqnr,group,candidate,chosen")
        let chosenRow = try #require(csv.first { $0.hasSuffix(",yes") })
        let chosenSQNR = try #require(Double(chosenRow.split(separator: ",", omittingEmptySubsequences: false)[3]))
        #expect(chosenSQNR >= 25)
        let sensitivity = try String(contentsOfFile: "\(out)/sensitivity.csv", encoding: .utf8).split(separator: "\n")
        #expect(sensitivity.count == 7 && sensitivity[0] == "group,op_types,sites,w8a8,w4a8,w8a16,w16a16")
        let svg = try String(contentsOfFile: "\(out)/pareto.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("uniform w8a8") && svg.contains("chosen (step"))
        let html = try String(contentsOfFile: "\(out)/report.html", encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("class=\"chosen\""))
        #expect(!html.contains("<script") && !html.contains("src=\"http"))

        // The same configuration through `mpq quantize --config` scores what the search evaluated.
        let again = folder.appendingPathComponent("again").path
        let quantize = try mpq(["quantize", model, "--calib", data, "--config", "\(out)/config.json", "--out", again])
        #expect(quantize.status == 0, "\(quantize.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(again)/report.json"))) as? [String: Any]
        let sqnr = try #require((report?["output"] as? [String: Any])?["sqnr_db"] as? Double)
        #expect(abs(sqnr - chosenSQNR) < 0.01, "quantize --config: \(sqnr) dB, search: \(chosenSQNR) dB")

        // A second run reads every score from the cache.
        let rerun = try mpq(["search", model, "--calib", data, "--candidates", "w8a8,w4a8,w8a16,w16a16", "--cache", cache, "--out", out])
        #expect(rerun.status == 0 && rerun.stdout.contains("0 evaluations run, 24 cached"), "\(rerun.stdout)")
    }

    @Test func searchErrors() throws {
        let (model, data) = try files()
        let out = folder.appendingPathComponent("bad").path, cache = folder.appendingPathComponent("cache-bad").path
        let profile = folder.appendingPathComponent("no-output.json").path
        try #"{"name": "no-output", "candidates": ["w8a8", "w4a8"], "op_types": {"Output": []}}"#.write(toFile: profile, atomically: true, encoding: .utf8)
        var result = try mpq(["search", model, "--calib", data, "--profile", profile, "--cache", cache, "--out", out])
        #expect(result.status == 1 && result.stderr.contains("no candidate for quantizer group 'output y'"), "\(result.stderr)")

        result = try mpq(["search", model, "--calib", data, "--target-sqnr", "500", "--cache", cache, "--out", out])
        #expect(result.status == 1 && result.stderr.contains("closest evaluated point"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out), "a run that fails writes nothing, not even the front")

        result = try mpq(["search", model, "--calib", data, "--target-sqnr", "30", "--target-cost", "0.5", "--out", out])
        #expect(result.status != 0 && result.stderr.contains("at most one of"), "\(result.stderr)")
        result = try mpq(["search", model, "--calib", data, "--candidates", "w8a8,w3a3", "--out", out])
        #expect(result.status == 1 && result.stderr.contains("'w3a3' is not in hardware profile"), "\(result.stderr)")
        result = try mpq(["search", model, "--calib", data, "--method", "taylor", "--out", out])
        #expect(result.status != 0 && result.stderr.contains("taylor"), "\(result.stderr)")
        result = try mpq(["search", model, "--calib", data, "--metric", "top1", "--cache", cache, "--out", out])
        #expect(result.status == 1 && result.stderr.contains("top1 needs a classifier output"), "\(result.stderr)")
    }

    @Test func inspectListsGroups() throws {
        let (model, _) = try files()
        let text = try mpq(["inspect", model, "--groups"])
        #expect(text.status == 0 && text.stdout.hasPrefix("6 quantizer groups (11 quantizers):"), "\(text.stdout)")
        let json = try mpq(["inspect", model, "--groups", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let groups = try #require(object?["groups"] as? [[String: Any]])
        #expect(groups.count == 6 && (groups[3]["weights"] as? [String]) == ["w3", "w4"])
    }
}
