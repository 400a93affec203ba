import ArgumentParser
import Foundation
import MPQ

/// Options of `mpq search --method taylor-ip`.
struct TaylorSearchOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("taylor-ip: largest predicted loss MSE of the chosen configuration.", valueName: "T"))
    var maxLossMse: Double?

    @Option(name: .customLong("objective"), help: ArgumentHelp("taylor-ip: what to maximise the saving of: latency (default), memory or bops.", valueName: "KIND"))
    var objectiveOption: String?
    var objective: String { objectiveOption ?? "latency" }

    @Option(help: ArgumentHelp("taylor-ip: a further budget, memory=BYTES or bops=R (repeatable).", valueName: "KIND=VALUE"))
    var budget: [String] = []

    @Option(help: ArgumentHelp("taylor-ip: task loss: pseudo-label, labels, next-token or random-projection (default by model: classifier pseudo-label, language model next-token, else random-projection).", valueName: "LOSS"))
    var loss: String?

    @Option(name: .customLong("projections"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: heads of the random-projection loss (default 8).", valueName: "K"))
    var projectionsOption: Int?
    var projections: Int { projectionsOption ?? 8 }

    @Flag(help: "taylor-ip: solve at log-spaced loss thresholds and write front.csv and front.svg.")
    var sweep = false

    @Option(name: .customLong("sweep-points"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: thresholds of --sweep (default 8).", valueName: "N"))
    var sweepPointsOption: Int?
    var sweepPoints: Int { sweepPointsOption ?? 8 }

    @Option(name: .customLong("latency-batch"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: samples the latency timings run on (default 1).", valueName: "N"))
    var latencyBatchOption: Int?
    var latencyBatch: Int { latencyBatchOption ?? 1 }

    @Option(name: .customLong("units-per-block"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: quantizer groups a timed sub-graph may join (more: fewer block boundaries, more configurations to time; default 4).", valueName: "N"))
    var unitsPerBlockOption: Int?
    var unitsPerBlock: Int { unitsPerBlockOption ?? 4 }

    @Option(name: .customLong("max-block-configurations"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: configurations timed per sub-graph; beyond it a sub-graph is timed one group at a time and taken as additive (default 64).", valueName: "N"))
    var maxBlockConfigurationsOption: Int?
    var maxBlockConfigurations: Int { maxBlockConfigurationsOption ?? 64 }

    @Option(name: .customLong("latency-statistic"), help: ArgumentHelp("taylor-ip: what a timing keeps of its repeated runs: median (default) or minimum (for machines shared with other work).", valueName: "STAT"))
    var latencyStatisticOption: String?
    var latencyStatistic: String { latencyStatisticOption ?? "median" }

    @Option(name: .customLong("validate"), parsing: .unconditional, help: ArgumentHelp("taylor-ip: also measure N random mixed configurations (predicted vs measured loss MSE and latency) and compare a threshold's choice with uniform int8; writes validation.csv.", valueName: "N"))
    var validateCount: Int?

    /// The taylor-ip options given on the command line (to reject them under another method).
    var given: [String] {
        var names: [String] = []
        if maxLossMse != nil { names.append("--max-loss-mse") }
        if objectiveOption != nil { names.append("--objective") }
        if !budget.isEmpty { names.append("--budget") }
        if loss != nil { names.append("--loss") }
        if projectionsOption != nil { names.append("--projections") }
        if sweep { names.append("--sweep") }
        if sweepPointsOption != nil { names.append("--sweep-points") }
        if latencyBatchOption != nil { names.append("--latency-batch") }
        if unitsPerBlockOption != nil { names.append("--units-per-block") }
        if maxBlockConfigurationsOption != nil { names.append("--max-block-configurations") }
        if latencyStatisticOption != nil { names.append("--latency-statistic") }
        if validateCount != nil { names.append("--validate") }
        return names
    }

    func validate() throws {
        try Check.range(maxLossMse, "--max-loss-mse", 0...Double.greatestFiniteMagnitude)
        try Check.choice(objectiveOption, "--objective", TaylorIntegerProgramSearch.Objective.allCases.map(\.rawValue))
        try Check.choice(loss, "--loss", ["pseudo-label", "labels", "next-token", "random-projection"])
        try Check.range(projectionsOption, "--projections", 1...4096)
        try Check.range(sweepPointsOption, "--sweep-points", 1...1000)
        try Check.range(latencyBatchOption, "--latency-batch", 1...65_536)
        try Check.range(unitsPerBlockOption, "--units-per-block", 1...64)
        try Check.range(maxBlockConfigurationsOption, "--max-block-configurations", 1...1_000_000)
        try Check.choice(latencyStatisticOption, "--latency-statistic", BlockLatency.Statistic.allCases.map(\.rawValue))
        try Check.range(validateCount, "--validate", 1...100_000)
        if sweepPointsOption != nil && !sweep { throw ValidationError("--sweep-points needs --sweep") }
        for entry in budget {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["memory", "bops"].contains(parts[0]) else {
                throw ValidationError("--budget \(entry): write memory=BYTES or bops=NUMBER (budgets: memory, bops)")
            }
            guard let value = Double(parts[1]), value.isFinite, value >= 0 else {
                throw ValidationError("--budget \(entry): the value must be a finite number >= 0")
            }
        }
    }
}

/// `mpq search --method taylor-ip`: sensitivities, block latencies, the integer program, outputs.
struct TaylorSearch {
    var command: SearchCommand
    var options: TaylorSearchOptions { command.taylor }

    func run() throws {
        let graph = try Model(contentsOf: command.model).graph
        let hardware = try command.hardwareProfile()
        let data = try CalibrationData(contentsOf: command.calib, graph: graph)
        guard let objective = TaylorIntegerProgramSearch.Objective(rawValue: options.objective) else {
            throw ValidationError("unknown --objective \(options.objective) (use latency, memory or bops)")
        }
        var budgets = TaylorIntegerProgramSearch.Budgets(maxLossMSE: options.maxLossMse ?? 0)
        for entry in options.budget {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let value = Double(parts[1]), value >= 0 else {
                throw ValidationError("--budget \(entry): write memory=BYTES or bops=NUMBER")
            }
            switch parts[0] {
            case "memory": budgets.memoryBytes = value
            case "bops": budgets.bops = value
            default: throw ValidationError("--budget \(entry): unknown budget '\(parts[0])' (use memory or bops)")
            }
        }
        let loss = try taskLoss(graph: graph, data: data)

        var settings = TaylorIntegerProgramSearch.Options()
        settings.batchSize = command.batchSize
        settings.latencyBatchSize = options.latencyBatch
        settings.session = command.threadOptions.session
        settings.latency.session = command.threadOptions.session
        settings.latency.maxUnitsPerBlock = options.unitsPerBlock
        settings.latency.maxConfigurations = options.maxBlockConfigurations
        guard let statistic = BlockLatency.Statistic(rawValue: options.latencyStatistic) else {
            throw ValidationError("unknown --latency-statistic \(options.latencyStatistic) (use median or minimum)")
        }
        settings.latency.statistic = statistic
        settings.cacheRoot = command.cache.map { URL(fileURLWithPath: $0) }
        for (text, keyPath) in [(command.activationRange, \TaylorIntegerProgramSearch.Options.activationRange), (command.weightRange, \.weightRange)] {
            guard let method = RangeMethod(rawValue: text) else {
                throw ValidationError("unknown range method '\(text)' (use \(RangeMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            settings[keyPath: keyPath] = method
        }
        let report = Self.report
        let search = try TaylorIntegerProgramSearch(graph: graph, data: data, profile: hardware, loss: loss,
                                                    options: settings, progress: report)
        note("\(search.groups.groups.count) quantizer groups, \(search.latency.partition.blocks.count) blocks, "
             + "\(search.latency.measurementCount) block timings (cache \(search.latency.cacheFolder.path))")
        let sensitivities = try search.lossMSE(progress: report)
        let blocks = try search.blockTimings(progress: report)
        try Check.createOutputFolder(command.out)
        try AtomicFile.write(sensitivityCSV(search, sensitivities), to: path("sensitivity.csv"))
        try AtomicFile.write(latencyCSV(search, blocks), to: path("latency.csv"))

        if let count = options.validateCount { try validate(search, objective: objective, budgets: budgets, count: count) }
        if options.sweep {
            let front = try search.sweep(objective: objective, budgets: budgets, count: options.sweepPoints, progress: report)
            try AtomicFile.write(frontCSV(front), to: path("front.csv"))
            try AtomicFile.write(Data(frontPlot(front, search: search).svg().utf8), to: path("front.svg"))
            for point in front {
                print(String(format: "threshold %.4g: predicted loss MSE %.4g, measured %.4g; predicted %.3f ms, measured %.3f ms",
                             point.threshold, point.choice.predictedLossMSE, point.measuredLossMSE,
                             point.choice.predictedMilliseconds, point.measuredMilliseconds))
            }
        }
        guard let threshold = options.maxLossMse else {
            print("wrote \(command.out)/sensitivity.csv, latency.csv\(options.sweep ? ", front.csv, front.svg" : "")\(options.validateCount != nil ? ", validation.csv" : "")")
            return
        }
        budgets.maxLossMSE = threshold
        let choice = try search.solve(objective: objective, budgets: budgets)
        let measuredLoss = try search.measuredLossMSE(choice.assignment)
        let measuredTime = try search.measuredMilliseconds(choice.assignment)
        print(String(format: "CBC: %@, gap %.3g, %.3f s", choice.status.rawValue, choice.gap, choice.solveSeconds))
        print(String(format: "chosen: predicted loss MSE %.4g (threshold %.4g), measured %.4g; predicted latency %.3f ms, measured %.3f ms",
                     choice.predictedLossMSE, threshold, measuredLoss, choice.predictedMilliseconds, measuredTime))
        let quantized = choice.assignment.enumerated().reduce(0) { $0 + (search.candidates[$1.offset][$1.element].weights == .float32 ? 0 : 1) }
        print("\(quantized) of \(search.groups.groups.count) groups quantized")
        try AtomicFile.write(try search.configJSON(choice.assignment), to: path("config.json"))
        try AtomicFile.write(predictedCSV(choice, threshold: threshold, measuredLoss: measuredLoss, measuredTime: measuredTime),
                             to: path("predicted.csv"))
        let model = try search.quantizedModel(choice.assignment)
        var quantizationReport = try QuantizationReport(model: model, data: data, batchSize: command.batchSize,
                                                        labels: try labelValues(graph), options: command.threadOptions.session,
                                                        progress: Progress.reporter("evaluating"))
        let export = try QDQExport(model)
        quantizationReport.exportNotes = export.notes
        try export.write(to: path("model.qdq.onnx"))
        try AtomicFile.write(try QuantizationEncodings.json(model), to: path("encodings.json"))
        try AtomicFile.write(try quantizationReport.json(), to: path("report.json"))
        print(summary(quantizationReport))
        print("wrote \(command.out)/config.json, predicted.csv, latency.csv, sensitivity.csv, model.qdq.onnx, encodings.json, report.json"
              + (options.sweep ? ", front.csv, front.svg" : "") + (options.validateCount != nil ? ", validation.csv" : ""))
    }

    private func path(_ name: String) -> String { (command.out as NSString).appendingPathComponent(name) }

    private func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

    private func labelValues(_ graph: Graph) throws -> [Int]? {
        try command.labels.map { try Check.labels($0, graph: graph) }
    }

    /// The loss named by --loss, or the default for the model's output: logits [N, C] -> pseudo-labels;
    /// [N, T, V] with int64 `input_ids` and V >= 1000 -> next-token; else random projections.
    private func taskLoss(graph: Graph, data: CalibrationData) throws -> TaskLoss {
        let output = graph.outputs.first
        let rank = output?.shape?.count
        let isLanguageModel = rank == 3 && graph.inputs.contains { $0.name == "input_ids" }
            && (output?.shape?.last?.value ?? 0) >= 1000
        let name = options.loss ?? (command.labels != nil ? "labels" : rank == 2 ? "pseudo-label"
                                    : isLanguageModel ? "next-token" : "random-projection")
        switch name {
        case "pseudo-label": return .pseudoLabelCrossEntropy
        case "next-token": return .nextTokenCrossEntropy()
        case "random-projection":
            guard options.projections >= 1 else { throw ValidationError("--projections must be >= 1") }
            return .randomProjection(count: options.projections, seed: 1)
        case "labels":
            guard let file = command.labels else { throw ValidationError("--loss labels needs --labels FILE.npy") }
            return .crossEntropy(labels: try Check.labels(file, graph: graph, samples: data.count))
        default:
            throw ValidationError("unknown --loss \(name) (use pseudo-label, labels, next-token or random-projection)")
        }
    }

    private func validate(_ search: TaylorIntegerProgramSearch, objective: TaylorIntegerProgramSearch.Objective,
                          budgets: TaylorIntegerProgramSearch.Budgets, count: Int) throws {
        let validation = try TaylorValidation.measure(search, count: count, progress: { Self.report(.init(phase: "validating", done: $0, total: $1)) })
        var lines = ["configuration,quantized_groups,predicted_loss_mse,measured_loss_mse,predicted_ms,measured_ms,candidate_per_group"]
        for (index, row) in validation.rows.enumerated() {
            let quantized = row.assignment.filter { $0 != 0 }.count
            lines.append("\(index),\(quantized),\(text(row.predictedLossMSE)),\(text(row.measuredLossMSE)),\(text(row.predictedMilliseconds)),\(text(row.measuredMilliseconds)),"
                         + row.assignment.map(String.init).joined(separator: " "))
        }
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: path("validation.csv"))
        print(String(format: "validation over %d random configurations: Spearman(predicted, measured loss MSE) = %.4f; "
                     + "latency |predicted - measured| / measured: mean %.1f%%, max %.1f%%",
                     count, validation.lossSpearman, validation.meanLatencyError * 100, validation.maxLatencyError * 100))
        for single in validation.singleGroups {
            print(String(format: "  %@ at %@ alone: predicted loss MSE %.4g, measured %.4g",
                         search.groups.groups[single.group].name, search.candidates[single.group][single.candidate].name,
                         single.predictedLossMSE, single.measuredLossMSE))
        }
        // The IP at the predicted loss MSE of uniform int8 against uniform int8 itself.
        let int8 = try Candidate(parsing: "w\(CPUFeatures.current.int8WeightBits)a8")
        guard search.profile.candidates.contains(int8) else {
            print("profile \(search.profile.name) has no \(int8.name) candidate: no comparison with uniform int8")
            return
        }
        let uniform = search.uniformAssignment(int8)
        var atUniform = budgets
        atUniform.maxLossMSE = try search.predictedLossMSE(uniform)
        let choice = try search.solve(objective: objective, budgets: atUniform)
        let uniformLoss = try search.measuredLossMSE(uniform), uniformTime = try search.measuredMilliseconds(uniform)
        let chosenLoss = try search.measuredLossMSE(choice.assignment), chosenTime = try search.measuredMilliseconds(choice.assignment)
        let floatTime = try search.measuredMilliseconds([Int](repeating: 0, count: search.groups.groups.count))
        print(String(format: "IP solve %.3f s (%@, gap %.3g) at threshold %.4g (uniform %@ predicted loss MSE)",
                     choice.solveSeconds, choice.status.rawValue, choice.gap, atUniform.maxLossMSE, int8.name))
        print(String(format: "uniform %@: measured loss MSE %.4g, %.3f ms; chosen: measured loss MSE %.4g, %.3f ms; most precise: %.3f ms",
                     int8.name, uniformLoss, uniformTime, chosenLoss, chosenTime, floatTime))
        print("chosen configuration " + (chosenTime < uniformTime && chosenLoss <= uniformLoss
            ? "is faster than uniform \(int8.name) at equal or lower measured loss MSE"
            : "is not both faster and at most as lossy as uniform \(int8.name)"))
    }

    // MARK: Files

    private func text(_ x: Double) -> String { x.isNaN ? "" : String(format: "%.6g", x) }

    private func field(_ text: String) -> String {
        text.contains(",") || text.contains("\"") ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    private func sensitivityCSV(_ search: TaylorIntegerProgramSearch, _ table: [[Double]]) -> Data {
        let names = search.profile.candidates.map(\.name)
        var lines = [(["group", "op_types", "sites"] + names.map { "loss_mse_\($0)" }).joined(separator: ",")]
        for (g, group) in search.groups.groups.enumerated() {
            let values = names.map { name in
                search.candidates[g].firstIndex { $0.name == name }.map { text(table[g][$0]) } ?? ""
            }
            lines.append(([field(group.name), field(group.opTypes.joined(separator: " ")), String(group.sites.count)] + values)
                .joined(separator: ","))
        }
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    private func latencyCSV(_ search: TaylorIntegerProgramSearch, _ blocks: [BlockLatency.Block]) -> Data {
        var lines = ["block,first_node,last_node,groups,configuration,milliseconds,float_milliseconds,timed_as"]
        for (b, block) in blocks.enumerated() {
            for factor in block.factors {
                for (configuration, ms) in zip(factor.configurations, factor.milliseconds) {
                    let described = zip(factor.groups, configuration).map { "\(search.groups.groups[$0].name)=\(search.candidates[$0][$1].name)" }
                    lines.append([String(b), field(block.nodes.first ?? ""), field(block.nodes.last ?? ""),
                                  field(block.groups.map { search.groups.groups[$0].name }.joined(separator: " ")),
                                  field(described.joined(separator: " ")), text(ms), text(block.floatMilliseconds),
                                  block.isExhaustive ? "configuration" : "one group at a time"].joined(separator: ","))
                }
            }
            if block.factors.isEmpty {
                lines.append([String(b), field(block.nodes.first ?? ""), field(block.nodes.last ?? ""), "", "",
                              text(block.baseMilliseconds), text(block.floatMilliseconds), "no groups"].joined(separator: ","))
            }
        }
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    private func predictedCSV(_ choice: TaylorIntegerProgramSearch.Choice, threshold: Double, measuredLoss: Double,
                              measuredTime: Double) -> Data {
        let lines = [
            "quantity,predicted,measured,threshold",
            "loss_mse,\(text(choice.predictedLossMSE)),\(text(measuredLoss)),\(text(threshold))",
            "latency_ms,\(text(choice.predictedMilliseconds)),\(text(measuredTime)),",
            "memory_bytes,\(text(choice.memoryBytes)),,",
            "bops,\(text(choice.bops)),,",
            "solver,\(choice.status.rawValue),gap \(text(choice.gap)),\(text(choice.solveSeconds)) s",
        ]
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    private func frontCSV(_ front: [TaylorIntegerProgramSearch.FrontPoint]) -> Data {
        var lines = ["threshold,predicted_loss_mse,measured_loss_mse,predicted_ms,measured_ms,memory_bytes,bops,solver_status,solve_seconds"]
        for point in front {
            lines.append([text(point.threshold), text(point.choice.predictedLossMSE), text(point.measuredLossMSE),
                          text(point.choice.predictedMilliseconds), text(point.measuredMilliseconds),
                          text(point.choice.memoryBytes), text(point.choice.bops), point.choice.status.rawValue,
                          text(point.choice.solveSeconds)].joined(separator: ","))
        }
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// Loss MSE (log10) against latency, predicted and measured.
    private func frontPlot(_ front: [TaylorIntegerProgramSearch.FrontPoint], search: TaylorIntegerProgramSearch) -> LinePlot {
        var plot = LinePlot(title: "Taylor-IP front (\(search.groups.groups.count) quantizer groups)",
                            xLabel: "latency (ms)", yLabel: "log10 loss MSE")
        func log(_ x: Double) -> Double { log10(max(x, 1e-30)) }
        plot.series.append(.init(name: "predicted", points: front.map { ($0.choice.predictedMilliseconds, log($0.choice.predictedLossMSE)) },
                                 color: "#1f77b4", drawsLine: true, drawsMarkers: true))
        plot.series.append(.init(name: "measured", points: front.map { ($0.measuredMilliseconds, log($0.measuredLossMSE)) },
                                 color: "#d62728", drawsLine: true, drawsMarkers: true))
        return plot
    }

    /// Progress lines on standard error.
    static func report(_ progress: TaylorIntegerProgramSearch.Progress) {
        let line = "\(progress.phase) \(progress.done)/\(progress.total)"
        if isatty(STDERR_FILENO) != 0 {
            FileHandle.standardError.write(Data(("\r" + line + (progress.done == progress.total ? "\n" : "")).utf8))
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}
