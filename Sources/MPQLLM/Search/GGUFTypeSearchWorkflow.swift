import Crypto
import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// `mpq search-lm` as a library call: per-tensor ggml types of a GGUF decoder for a size,
/// bits-per-weight or KL-divergence target, written all-or-nothing to `output`:
/// model.gguf (the mix), tensor-types.txt (llama-quantize's --tensor-type-file), imatrix.gguf
/// (the calibration text's importance matrix, llama.cpp's format), sensitivity.csv, front.csv
/// (pareto) or validation.csv (taylor-ip with validation), front.svg (KLD over bits per weight),
/// and report.md / report.html (predicted vs measured KLD, held-out KLD and perplexity against a
/// uniform type and, when asked, a random mix).
/// Methods: `GGUFParetoSearch` (Pandey et al. 2023) and `GGUFTaylorSearch` (Markovich-Golan et al. 2025).
public struct GGUFTypeSearchWorkflow {
    /// The search algorithm: `pareto` (Pareto-greedy over measured mean KLD, Pandey et al. 2023) or
    /// `taylorIP` (Taylor loss-MSE sensitivity and an integer program, Markovich-Golan et al. 2025).
    public enum Method: String, Sendable, CaseIterable { case pareto, taylorIP = "taylor-ip" }

    /// What to search, for which target, and where the results go.
    public struct Options: Sendable {
        /// The base GGUF decoder (llama, qwen2 or qwen3); KL divergence is measured against it.
        public var model: String
        /// UTF-8 text tokenized for calibration: the KLD chunks and the importance matrix.
        public var calibrationText: String
        /// The file size, bits per weight or mean KLD the chosen mix must meet.
        public var target: GGUFSearchTarget
        /// The search algorithm; default `pareto`.
        public var method: Method = .pareto
        /// The output folder (replaced wholly on success); nil: write nothing.
        public var output: String?
        /// Candidate ggml types; default `GGUFSearchSpace.defaultTypes` (q2_K ... q6_K, q8_0, f16).
        public var types: [GGMLType] = GGUFSearchSpace.defaultTypes
        /// Groups of tensor names that take one type together.
        public var tied: [[String]] = []
        /// Regular expression: only tensors whose name it matches are searched (nil: all 2-D weights).
        public var tensorPattern: String?
        /// Tokens per calibration chunk (the second half of each scored); default 512.
        public var context = 512
        /// Calibration chunks (nil: every whole chunk of the text); default 4.
        public var chunks: Int? = 4
        /// Held-out text: KLD and perplexity of the choice and of `baseline`, vs the base model.
        public var evaluationText: String?
        /// Tokens per held-out chunk; default 512.
        public var evaluationContext = 512
        /// Held-out chunks (nil: every whole chunk of the text); default 8.
        public var evaluationChunks: Int? = 8
        /// Uniform type to compare with on the held-out text.
        public var baseline: GGMLType = .q4_K
        /// Score cache folder (nil: ~/.cache/mpq); `useCache` false disables it.
        public var cacheFolder: String?
        /// Whether scores are cached on disk and reused (resume after a kill); default true.
        public var useCache = true
        /// Threads of the inference sessions; nil: the runtime's default.
        public var threads: Int?
        /// Front points measured for a size target (pareto).
        public var measuredCandidates = 3
        /// Taylor-IP settings (taylor-ip).
        public var taylor = GGUFTaylorSearch.Options()
        /// Seed of a random mix at the chosen mix's size (`GGUFRandomAllocation`), written as
        /// random-control.gguf and evaluated next to it (nil: none).
        public var randomControlSeed: UInt64?
        /// A per-type speed table measured on this CPU (`GGMLTypeSpeedTable`, made by
        /// bench/ggml_type_speed.sh): the reports then predict milliseconds per token of every mix.
        public var speedTable: String?
        /// Most predicted milliseconds per token of `speedPhase` the mix may take (needs `speedTable`).
        public var maxMillisecondsPerToken: Double?
        /// The phase `maxMillisecondsPerToken` limits; default decoding.
        public var speedPhase: GGUFSpeedModel.Phase = .decode

        /// Options for searching `model` for `target` calibrated on `calibrationText`; the rest at defaults.
        public init(model: String, calibrationText: String, target: GGUFSearchTarget) {
            self.model = model
            self.calibrationText = calibrationText
            self.target = target
        }
    }

    /// One model's figures on the held-out text: the chosen mix, or the uniform baseline.
    public struct HeldOut: Sendable {
        /// "mpq" for the chosen mix, "uniform TYPE" for the baseline.
        public var name: String
        /// Bytes of the model's GGUF file.
        public var fileBytes: Int
        /// llama.cpp's bits per weight of the model.
        public var bitsPerWeight: Double
        /// Predicted milliseconds per token of the speed table's first phase (nil without a table).
        public var predictedMilliseconds: Double?
        /// Perplexity and KL divergence from the base model, scored as llama-perplexity does.
        public var result: LanguageModelEvaluation.Result
    }

    /// What a run produced.
    public struct Result: @unchecked Sendable {
        /// The groups and candidates searched.
        public var space: GGUFSearchSpace
        /// The Pareto search (pareto).
        public var search: GGUFParetoSearch.Result?
        /// The Taylor-IP search (taylor-ip).
        public var taylor: GGUFTaylorSearch.Result?
        /// Predicted against measured on random mixes (taylor-ip with validation).
        public var validation: GGUFTaylorValidation?
        /// sensitivity[group][candidate]: measured (pareto) or predicted (taylor-ip) KLD of that change alone.
        public var sensitivity: [[Double]]
        /// The chosen candidate of every group (an index into `space.candidates[group]`).
        public var choice: [Int]
        /// The ggml type of every searched tensor, by GGUF name.
        public var types: [String: GGMLType]
        /// Bytes of the written model.gguf (checked equal to the prediction).
        public var fileBytes: Int
        /// llama.cpp's bits per weight of the chosen mix.
        public var bitsPerWeight: Double
        /// The chosen mix's predicted calibration KLD (sum of its groups' sensitivities).
        public var predictedKLD: Double
        /// The chosen mix's measured mean calibration KLD (NaN if it was never measured).
        public var measuredKLD: Double
        /// Held-out figures of the chosen mix and the uniform `baseline`; empty without `evaluationText`.
        public var heldOut: [HeldOut]
        /// The calibration text's importance matrix (imatrix.gguf).
        public var imatrix: IMatrix
        /// The output files (model.gguf, tensor-types.txt, imatrix.gguf, front.csv or validation.csv,
        /// sensitivity.csv, front.svg, report.md, report.html).
        public var files: OutputFiles
        /// The text of report.md, which `mpq search-lm` prints.
        public var summary: String
        /// Seconds of one full calibration evaluation (for comparison with the search time).
        public var fullEvaluationSeconds: Double
        /// The random control (with `randomControlSeed`): its mix and calibration KLD.
        public var randomControl: (choice: [Int], measuredKLD: Double)?
        /// Speed predictions from `speedTable`, the limited phase first (empty without a table).
        public var speeds: [GGUFSpeedModel]
    }

    /// What a method hands to the shared tail of `run`.
    struct Outcome {
        var choice: [Int]
        var predictedKLD: Double
        var measuredKLD: Double
        var sensitivity: [[Double]]
        /// Column of sensitivity.csv ("kld" measured, "predicted_kld").
        var sensitivityColumn: String
        /// Method lines of report.md.
        var report: [String]
        var files: [(String, Data)]
        var pareto: GGUFParetoSearch.Result?
        var taylor: GGUFTaylorSearch.Result?
        var validation: GGUFTaylorValidation?
    }

    /// The run's options.
    public let options: Options
    /// A search with `options`; nothing is loaded or run until `run(progress:)`.
    public init(_ options: Options) { self.options = options }

    /// What `prepare()` opened and checked.
    public struct Prepared {
        /// The base model.
        public var model: GGUFLanguageModel
        /// The groups and candidates to search.
        public var space: GGUFSearchSpace
        /// Speed predictions from `speedTable`, the limited phase first (empty without a table).
        public var speeds: [GGUFSpeedModel]
        /// The speed constraint (nil without `maxMillisecondsPerToken`).
        public var speedLimit: GGUFSpeedLimit?
    }

    /// Opens the model and checks the target, the speed table and limit, and the output folder (no computation).
    public func prepare() throws -> Prepared {
        if options.method == .taylorIP { try options.taylor.check() }
        if let output = options.output { try OutputFolder.check(output) }
        guard FileManager.default.fileExists(atPath: options.calibrationText) else { throw MPQError.fileNotFound(options.calibrationText) }
        if let e = options.evaluationText, !FileManager.default.fileExists(atPath: e) { throw MPQError.fileNotFound(e) }
        let model = try GGUFLanguageModel(contentsOf: options.model)
        var include: ((String) -> Bool)?
        if let pattern = options.tensorPattern {
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: pattern) } catch {
                throw MPQError.invalidInput("--tensors '\(pattern)' is not a valid regular expression")
            }
            include = { name in regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil }
        }
        let space = try GGUFSearchSpace(file: model.file, metadata: GGUFMixExport.metadata(of: model.file),
                                        types: options.types, tied: options.tied, include: include)
        try options.target.check(in: space)
        if options.randomControlSeed != nil, case .maxKLD = options.target {
            throw MPQError.invalidInput("a random control needs a size or bits-per-weight target")
        }
        var speeds: [GGUFSpeedModel] = []
        if let path = options.speedTable {
            let table = try GGMLTypeSpeedTable(contentsOf: path)
            // The limited phase first: `speedLimit` and the reports use it.
            let phases = [options.speedPhase] + GGUFSpeedModel.Phase.allCases.filter { $0 != options.speedPhase }
            speeds = try phases.map { try GGUFSpeedModel(table: table, space: space, file: model.file, phase: $0) }
        }
        var speedLimit: GGUFSpeedLimit?
        if let limit = options.maxMillisecondsPerToken {
            guard let speed = speeds.first else { throw MPQError.invalidInput("a speed limit needs a speed table (--speed-table)") }
            speedLimit = try GGUFSpeedLimit(model: speed, maxMilliseconds: limit)
        }
        return Prepared(model: model, space: space, speeds: speeds, speedLimit: speedLimit)
    }

    static func text(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw MPQError.fileNotFound(path) }
        return String(decoding: data, as: UTF8.self)
    }

    /// SHA-256 (hex) of the model file, the calibration tokens and the settings that change scores.
    static func cacheKey(file: GGUFFile, tokens: [Int], settings: [String]) -> String {
        var hash = SHA256()
        hash.update(data: Data("mpq-search-lm-v1\u{0}".utf8))
        file.data.withUnsafeBytes { hash.update(bufferPointer: $0) }
        tokens.withUnsafeBytes { hash.update(bufferPointer: $0) }
        for s in settings { hash.update(data: Data((s + "\u{0}").utf8)) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Runs the search: tokenizes and calibrates, runs the Pareto-greedy search for the target, writes the mix
    /// (its size checked against the prediction), evaluates it and the uniform baseline on the held-out text,
    /// and writes the outputs to `output` all-or-nothing.
    ///
    /// - Parameter progress: receives calibration, sensitivity and held-out progress and notes (default silent).
    public func run(progress: ProgressReporter = SilentProgress()) throws -> Result {
        let prepared = try prepare()
        let (model, space, speeds, speedLimit) = (prepared.model, prepared.space, prepared.speeds, prepared.speedLimit)
        let start = Date()
        for note in space.notes + (speeds.first?.notes ?? []) { progress.note(note) }
        progress.note("\(space.groups.count) groups, \(space.groups.reduce(0) { $0 + $1.candidates.count }) candidates; "
                      + "reachable \(space.fileBytes(space.smallest))...\(space.fileBytes(space.largest)) bytes; target: \(options.target)")
        let tokens = try model.tokenize(try Self.text(options.calibrationText))
        let calibration = try GGUFCalibration(model: model, tokens: tokens, context: options.context, chunks: options.chunks,
                                              datasetName: (options.calibrationText as NSString).lastPathComponent,
                                              threads: options.threads, progress: progress)
        progress.note("calibration: \(calibration.chunks.count) chunks of \(options.context) tokens")
        let weights = GGUFQuantizedWeights(file: model.file, imatrix: calibration.imatrix)
        var cache: SensitivityCache?
        if options.useCache {
            var settings = ["context=\(options.context)", "chunks=\(calibration.chunks.count)",
                            "types=\(options.types.map(\.name))", "tied=\(options.tied)",
                            "tensors=\(options.tensorPattern ?? "")"]
            if options.method == .taylorIP { settings += options.taylor.sensitivity.cacheSettings }
            let root = options.cacheFolder.map { URL(fileURLWithPath: $0) } ?? SensitivityCache.defaultRoot
            cache = try SensitivityCache(root: root.appendingPathComponent("search-lm"),
                                         key: Self.cacheKey(file: model.file, tokens: tokens, settings: settings))
            if let cache, cache.count > 0 { progress.note("resuming: \(cache.count) scores cached in \(cache.folder.path)") }
        }
        let outcome: Outcome
        switch options.method {
        case .pareto: outcome = try pareto(space: space, calibration: calibration, weights: weights, cache: cache, speedLimit: speedLimit,
                                           progress: progress)
        case .taylorIP: outcome = try taylor(space: space, calibration: calibration, weights: weights, cache: cache, speedLimit: speedLimit,
                                             progress: progress)
        }
        let choice = outcome.choice
        let types = space.types(choice)
        let fileBytes = space.fileBytes(choice), bitsPerWeight = space.bitsPerWeight(choice)
        var randomControl: (choice: [Int], measuredKLD: Double)?
        if let seed = options.randomControlSeed {
            let random = try GGUFRandomAllocation.choice(space: space, target: .fileBytes(fileBytes), seed: seed)
            randomControl = (random, try calibration.kld(of: random, in: space, weights: weights, cache: cache))
        }
        // One uncached full evaluation, timed, for the report (the base model against itself).
        let timer = Date()
        _ = try calibration.kld(replacing: [:], fromLayer: nil)
        let fullSeconds = Date().timeIntervalSince(timer)

        // The written file, read back for the held-out evaluation.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mpq-search-lm-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let modelURL = scratch.appendingPathComponent("model.gguf")
        let written = try GGUFMixExport.write(to: modelURL, types: types, weights: weights)
        guard written == fileBytes else {
            throw MPQError.invalidModel("internal: wrote \(written) bytes, the search predicted \(fileBytes)")
        }
        let randomURL = scratch.appendingPathComponent("random-control.gguf")
        if let randomControl { try GGUFMixExport.write(to: randomURL, types: space.types(randomControl.choice), weights: weights) }
        let imatrixURL = scratch.appendingPathComponent("imatrix.gguf")
        do { try calibration.imatrix.write(to: imatrixURL) } catch { throw MPQError.io("cannot write the imatrix: \(error)") }

        var heldOut: [HeldOut] = []
        if let evaluationText = options.evaluationText {
            let evalTokens = try model.tokenize(try Self.text(evaluationText))
            let reference = try InferenceSession(graph: try model.graph(maxSequenceLength: options.evaluationContext),
                                                 options: SessionOptions(threads: options.threads))
            let evalOptions = LanguageModelEvaluation.Options(context: options.evaluationContext, chunks: options.evaluationChunks,
                                                              bos: model.chunkBOS)
            func evaluate(_ name: String, _ url: URL, choice: [Int], bpw: Double) throws {
                let mixed = try GGUFLanguageModel(contentsOf: url.path)
                let session = try InferenceSession(graph: try mixed.graph(maxSequenceLength: options.evaluationContext),
                                                   options: SessionOptions(threads: options.threads))
                let r = try LanguageModelEvaluation(model: session, reference: reference).evaluate(tokens: evalTokens, options: evalOptions) {
                    done, total, _ in progress.progress("held-out \(name)", done: done, total: total)
                }
                heldOut.append(HeldOut(name: name, fileBytes: space.fileBytes(choice), bitsPerWeight: bpw,
                                       predictedMilliseconds: speeds.first?.milliseconds(choice), result: r))
            }
            try evaluate("mpq", modelURL, choice: choice, bpw: bitsPerWeight)
            if let uniform = space.uniform(options.baseline) {
                let url = scratch.appendingPathComponent("uniform.gguf")
                _ = try GGUFMixExport.write(to: url, types: space.types(uniform), weights: weights)
                try evaluate("uniform \(options.baseline.name)", url, choice: uniform, bpw: space.bitsPerWeight(uniform))
            }
            if let randomControl {
                try evaluate("random control", randomURL, choice: randomControl.choice, bpw: space.bitsPerWeight(randomControl.choice))
            }
        }

        var files = OutputFiles()
        files.add("model.gguf", try Data(contentsOf: modelURL))
        files.add("tensor-types.txt", Data(GGUFMixExport.tensorTypeFile(types, file: model.file).utf8))
        files.add("imatrix.gguf", try Data(contentsOf: imatrixURL))
        if randomControl != nil { files.add("random-control.gguf", try Data(contentsOf: randomURL)) }
        for (name, data) in outcome.files { files.add(name, data) }
        files.add("sensitivity.csv", Data(sensitivityCSV(outcome, space, speeds: speeds).utf8))
        let total = Date().timeIntervalSince(start)
        var report = reportText(outcome, space: space, speeds: speeds, speedLimit: speedLimit, heldOut: heldOut,
                                fullSeconds: fullSeconds, totalSeconds: total, calibrationChunks: calibration.chunks.count)
        if let randomControl {
            report += String(format: "\nrandom control (seed %llu): %d bytes, calibration KLD %.6f\n", options.randomControlSeed ?? 0,
                             space.fileBytes(randomControl.choice), randomControl.measuredKLD)
        }
        files.add("report.md", Data(report.utf8))
        let plot = outcome.pareto.map(GGUFSearchFigures.front)
            ?? outcome.taylor.map { GGUFSearchFigures.taylor($0, validation: outcome.validation) }
        if let svg = plot?.svg() {
            files.add("front.svg", Data(svg.utf8))
            files.add("report.html", Data(GGUFSearchFigures.html(report: report, svg: svg).utf8))
        }
        if let output = options.output { try files.write(to: output) }
        return Result(space: space, search: outcome.pareto, taylor: outcome.taylor, validation: outcome.validation,
                      sensitivity: outcome.sensitivity, choice: choice, types: types, fileBytes: fileBytes,
                      bitsPerWeight: bitsPerWeight, predictedKLD: outcome.predictedKLD, measuredKLD: outcome.measuredKLD,
                      heldOut: heldOut, imatrix: calibration.imatrix, files: files, summary: report,
                      fullEvaluationSeconds: fullSeconds, randomControl: randomControl, speeds: speeds)
    }

    func pareto(space: GGUFSearchSpace, calibration: GGUFCalibration, weights: GGUFQuantizedWeights, cache: SensitivityCache?,
                speedLimit: GGUFSpeedLimit?, progress: ProgressReporter) throws -> Outcome {
        var search = GGUFParetoSearch(space: space, calibration: calibration, weights: weights, cache: cache, progress: progress)
        search.measuredCandidates = options.measuredCandidates
        search.speedLimit = speedLimit
        // Uniform mixes that fit are measured too, so the choice is never worse than one of them on calibration.
        let r = try search.run(target: options.target, extraPoints: options.types.compactMap { space.uniform($0) })
        let p = r.front[r.chosen]
        let report = [
            "- chosen: front point \(r.chosen) of \(r.front.count)",
            "- calibration KLD: predicted (sum of sensitivities) \(String(format: "%.6f", p.predictedKLD)), measured \(p.measuredKLD.map { String(format: "%.6f", $0) } ?? "-")",
            "- search: \(r.evaluations) mix evaluations, \(String(format: "%.1f", r.seconds)) s",
        ]
        return Outcome(choice: p.choice, predictedKLD: p.predictedKLD, measuredKLD: p.measuredKLD ?? .nan, sensitivity: r.sensitivity,
                       sensitivityColumn: "kld", report: report,
                       files: [("front.csv", Data(frontCSV(r, space, speeds: speedLimit.map { [$0.model] } ?? []).utf8))], pareto: r)
    }

    func frontCSV(_ r: GGUFParetoSearch.Result, _ space: GGUFSearchSpace, speeds: [GGUFSpeedModel]) -> String {
        var lines = ["index,file_bytes,bits_per_weight,predicted_kld,measured_kld,chosen,types"
                     + speeds.map { ",predicted_\($0.phase.rawValue)_ms_per_token" }.joined()]
        for (i, p) in r.front.enumerated() {
            let counts = Dictionary(grouping: space.groups.indices, by: { space.groups[$0].candidates[p.choice[$0]].type.name })
                .map { "\($0.key):\($0.value.count)" }.sorted().joined(separator: " ")
            lines.append("\(i),\(p.fileBytes),\(String(format: "%.6f", p.bitsPerWeight)),\(p.predictedKLD),"
                         + "\(p.measuredKLD.map { String($0) } ?? ""),\(i == r.chosen ? 1 : 0),\(counts)"
                         + speeds.map { String(format: ",%.6f", $0.milliseconds(p.choice)) }.joined())
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func sensitivityCSV(_ outcome: Outcome, _ space: GGUFSearchSpace, speeds: [GGUFSpeedModel]) -> String {
        var lines = ["group,tensors,elements,type,requested,file_bytes,\(outcome.sensitivityColumn),chosen"
                     + speeds.map { ",\($0.phase.rawValue)_ms_per_token" }.joined()]
        for (g, group) in space.groups.enumerated() {
            for (c, candidate) in group.candidates.enumerated() {
                lines.append("\(group.name),\(group.tensors.joined(separator: " ")),\(group.elements),\(candidate.type.name),"
                             + "\(candidate.requested.name),\(candidate.fileBytes),\(outcome.sensitivity[g][c]),\(outcome.choice[g] == c ? 1 : 0)"
                             + speeds.map { String(format: ",%.6g", $0.candidateMilliseconds[g][c]) }.joined())
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func reportText(_ outcome: Outcome, space: GGUFSearchSpace, speeds: [GGUFSpeedModel], speedLimit: GGUFSpeedLimit?,
                    heldOut: [HeldOut], fullSeconds: Double, totalSeconds: Double, calibrationChunks: Int) -> String {
        let choice = outcome.choice
        var lines = ["# mpq search-lm report", "",
                     "- model: \(options.model)",
                     "- method: \(options.method.rawValue), target: \(options.target)",
                     "- calibration: \(options.calibrationText), \(calibrationChunks) chunks x \(options.context) tokens",
                     "- candidates: \(options.types.map(\.name).joined(separator: ", ")); \(space.groups.count) groups",
                     "- size: \(space.fileBytes(choice)) bytes, \(String(format: "%.4f", space.bitsPerWeight(choice))) bits per weight"]
        if let speedLimit { lines.append("- speed limit: \(speedLimit.description)") }
        if let table = speeds.first?.table {
            lines.append("- predicted speed (llama.cpp, \(table.cpu), \(table.threads) thread(s); table measured on \(table.model) by \(table.source)): "
                         + speeds.map { $0.describe(choice) }.joined(separator: ", "))
        }
        lines += outcome.report
        lines += ["- whole run \(String(format: "%.1f", totalSeconds)) s; one full calibration evaluation \(String(format: "%.2f", fullSeconds)) s",
                  "- activations are float32: llama.cpp's 8-bit activation rounding in its quantized dot products is not simulated", ""]
        var counts: [String: (Int, Int)] = [:]
        for (g, group) in space.groups.enumerated() {
            let name = group.candidates[choice[g]].type.name
            counts[name, default: (0, 0)].0 += group.tensors.count
            counts[name, default: (0, 0)].1 += group.elements
        }
        lines.append("types: " + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.0) tensors / \($0.value.1) weights" }.joined(separator: ", "))
        if !heldOut.isEmpty {
            lines += ["", "## Held-out (\(options.evaluationText ?? ""), context \(options.evaluationContext))", "",
                      "| model | file bytes | bpw | mean KLD | +/- | PPL | +/- | base PPL | same top |"
                        + (speeds.first.map { " predicted \($0.phase.rawValue) ms/token |" } ?? ""),
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (speeds.isEmpty ? "" : " --- |")]
            for h in heldOut {
                let k = h.result.kld
                lines.append("| \(h.name) | \(h.fileBytes) | \(String(format: "%.4f", h.bitsPerWeight)) | "
                             + String(format: "%.6f | %.6f | %.4f | %.4f | %.4f | %.2f%% |", k?.mean ?? .nan, k?.standardError ?? .nan,
                                      h.result.perplexity, h.result.perplexityError, h.result.referencePerplexity ?? .nan,
                                      (k?.sameTopRate ?? .nan) * 100)
                             + (h.predictedMilliseconds.map { String(format: " %.4f |", $0) } ?? ""))
            }
            lines.append("")
            lines.append("(\(heldOut.first?.result.chunks ?? 0) chunks, \(heldOut.first?.result.scoredTokens ?? 0) scored positions)")
        }
        lines += ["", "## Tensors", ""]
        for (g, group) in space.groups.enumerated() {
            let c = group.candidates[choice[g]]
            lines.append("- \(group.name): \(c.type.name)" + (c.type != c.requested ? " (requested \(c.requested.name), fallback)" : "")
                         + String(format: ", sensitivity %.6g", outcome.sensitivity[g][choice[g]]))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
