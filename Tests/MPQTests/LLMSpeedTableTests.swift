import Foundation
import MPQGGUF
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQSearch

/// The per-type speed table (bench/reference/tiny-llama-speed.json, measured by
/// bench/ggml_type_speed.sh with llama-bench on this repository's tiny decoder) and the speed
/// predictions and constraints built on it.
@Suite struct LLMSpeedTableTests {
    static let tablePath = repositoryRoot.appendingPathComponent("bench/reference/tiny-llama-speed.json").path
    let folder = temporaryFolder("mpq-speed")

    func space(_ file: GGUFFile, types: [GGMLType] = [.q3_K, .q4_K, .q5_K, .q6_K, .q8_0]) throws -> GGUFSearchSpace {
        try GGUFSearchSpace(file: file, metadata: GGUFMixExport.metadata(of: file), types: types)
    }

    @Test func predictionsAreExactForUniformMixesOfTheMeasuredModelAndAddUpForMixes() throws {
        let table = try GGMLTypeSpeedTable(contentsOf: Self.tablePath)
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: tinyLlamaPath))
        let space = try space(file)
        for phase in GGUFSpeedModel.Phase.allCases {
            let model = try GGUFSpeedModel(table: table, space: space, file: file, phase: phase)
            #expect(model.notes.isEmpty, "the table was measured on this model: \(model.notes)")
            func measured(_ type: GGMLType) -> Double {
                let entry = table.types[type]!
                return phase == .decode ? entry.decodeMilliseconds : entry.prefillMilliseconds
            }
            // Every matrix in one type is what llama-bench timed: the prediction is that figure.
            for type in [GGMLType.q3_K, .q4_K, .q5_K, .q6_K, .q8_0] {
                let uniform = try #require(space.uniform(type))
                #expect(abs(model.milliseconds(uniform) - measured(type)) <= 1e-12 * measured(type), "\(phase) \(type.name)")
            }
            // The F16 file as it is (token embedding a lookup, output head a product).
            #expect(abs(try GGUFSpeedModel.milliseconds(of: file, table: table, phase: phase) - measured(.f16)) <= 1e-12 * measured(.f16))
            // A mix: each matrix's share of its type's figure; the token embedding is a lookup (the model has an output head).
            let choice = space.groups.indices.map { $0 % space.groups[0].candidates.count }
            var expected = 0.0
            for (g, group) in space.groups.enumerated() where group.name != "token_embd.weight" {
                let type = group.candidates[choice[g]].type
                expected += Double(group.elements) / Double(table.matmulWeights) * measured(type)
            }
            #expect(abs(model.milliseconds(choice) - expected) <= 1e-12 * expected)
            #expect(model.reachable.lowerBound <= model.milliseconds(choice) && model.milliseconds(choice) <= model.reachable.upperBound)
        }
        // The table shows why a speed cost is not a size cost: llama.cpp's repacked q4_K decodes faster than q3_K.
        #expect(table.types[.q4_K]!.decodeMilliseconds < table.types[.q3_K]!.decodeMilliseconds)
    }

    @Test func badTablesAndLimitsGetClearErrors() throws {
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: tinyLlamaPath))
        let good = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.tablePath))) as? [String: Any])
        func table(_ edit: (inout [String: Any]) -> Void) throws -> String {
            var object = good
            edit(&object)
            let url = folder.appendingPathComponent("table-\(UUID().uuidString).json")
            try JSONSerialization.data(withJSONObject: object).write(to: url)
            return url.path
        }
        func withType(_ name: String, _ row: Any) -> (inout [String: Any]) -> Void {
            { object in
                var types = object["types"] as! [String: Any]
                types[name] = row
                object["types"] = types
            }
        }
        let cases: [(String, String)] = [
            (try table { $0["format"] = "other" }, "format"),
            (try table { $0["threads"] = 0 }, "threads"),
            (try table { $0["matmul_weights"] = "many" }, "matmul_weights"),
            (try table(withType("q4_K", ["decode_ms_per_token": -1, "prefill_ms_per_token": 1])), "not a positive number"),
            (try table(withType("q9_Z", ["decode_ms_per_token": 1, "prefill_ms_per_token": 1])), "unknown ggml type"),
            (try table(withType("q4_K", ["decode_ms_per_token": 1])), "prefill_ms_per_token"),
            (try table { $0["types"] = [String: Any]() }, "no types"),
        ]
        for (path, expected) in cases {
            #expect(throws: MPQError.self) { try GGMLTypeSpeedTable(contentsOf: path) }
            do { _ = try GGMLTypeSpeedTable(contentsOf: path) } catch MPQError.invalidInput(let message) {
                #expect(message.contains(expected) && !message.contains("\n"), "\(message)")
            }
        }
        let notJSON = folder.appendingPathComponent("not.json")
        try Data("{".utf8).write(to: notJSON)
        #expect(throws: MPQError.self) { try GGMLTypeSpeedTable(contentsOf: notJSON.path) }

        // A type the table lacks is named; so is the reachable range of a limit no mix meets.
        let missing = try GGMLTypeSpeedTable(contentsOf: try table { $0["types"] = ["q4_K": ["decode_ms_per_token": 1, "prefill_ms_per_token": 1]] })
        do {
            _ = try GGUFSpeedModel(table: missing, space: try space(file), file: file, phase: .decode)
            Issue.record("a table without q3_K was accepted")
        } catch MPQError.invalidInput(let message) {
            #expect(message.contains("no figures for q3_K"), "\(message)")
        }
        let model = try GGUFSpeedModel(table: try GGMLTypeSpeedTable(contentsOf: Self.tablePath), space: try space(file), file: file, phase: .decode)
        for limit in [model.reachable.lowerBound * 0.99, 0, -1, .nan] {
            do {
                _ = try GGUFSpeedLimit(model: model, maxMilliseconds: limit)
                Issue.record("limit \(limit) accepted")
            } catch MPQError.invalidInput(let message) {
                #expect(message.contains("reachable with these candidates"), "\(message)")
            }
        }

        // The command line: a limit needs a table; inspect predicts a file's speed.
        let common = ["search-lm", tinyLlamaPath, "--text", tinyLlamaPath, "--target-bpw", "5", "--out", folder.appendingPathComponent("x").path]
        var r = try mpq(common + ["--max-ms-per-token", "0.4"])
        #expect(r.status != 0 && r.stderr.contains("--max-ms-per-token needs --speed-table"), "\(r.stderr)")
        r = try mpq(common + ["--speed-table", Self.tablePath, "--speed-phase", "sideways"])
        #expect(r.status != 0 && r.stderr.contains("--speed-phase must be decode or prefill"), "\(r.stderr)")
        r = try mpq(["inspect", tinyLlamaPath, "--speed-table", Self.tablePath])
        #expect(r.status == 0 && r.stdout.contains("decode: ") && r.stdout.contains("prefill: "), "\(r.stdout)\(r.stderr)")
    }

    @Test func speedConstrainedProgramIsOptimalAndMeetsBothLimits() throws {
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: tinyLlamaPath))
        let space = try GGUFSearchSpace(file: file, metadata: GGUFMixExport.metadata(of: file), types: [.q3_K, .q4_K, .q5_K, .q6_K],
                                        include: { $0.hasPrefix("blk.0.") })
        let model = try GGUFSpeedModel(table: try GGMLTypeSpeedTable(contentsOf: Self.tablePath), space: space, file: file, phase: .decode)
        // Sensitivities that fall with bytes, as real ones do: without a speed limit the program takes
        // the largest types that fit, q5_K among them, which decodes slower than q6_K and q4_K.
        let sensitivity = space.groups.map { group in group.candidates.map { 1e9 / Double($0.fileBytes) } }
        let budget = GGUFSearchTarget.fileBytes(space.fileBytes(try #require(space.uniform(.q5_K))))
        let free = try GGUFTaylorSearch.program(space: space, sensitivity: sensitivity, target: budget).solve()
        let limit = try GGUFSpeedLimit(model: model, maxMilliseconds: (model.milliseconds(free.choice) + model.reachable.lowerBound) / 2)
        let program = try GGUFTaylorSearch.program(space: space, sensitivity: sensitivity, target: budget, speed: limit)
        let solved = try program.solve()
        let optimum = try program.bruteForce()
        #expect(solved.status == .optimal)
        #expect(abs(solved.objective - optimum.objective) <= 1e-9 * abs(optimum.objective), "CBC \(solved.objective) vs brute force \(optimum.objective)")
        #expect(limit.fits(solved.choice) && !limit.fits(free.choice))
        #expect(budget.fits(solved.choice, in: space))
        #expect(solved.objective < free.objective, "a binding speed limit costs predicted KLD")
    }
}
