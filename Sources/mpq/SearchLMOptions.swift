import ArgumentParser
import MPQ
import MPQGGUF

/// `mpq search-lm`'s checks of its arguments, and their translation into the library's options.
extension SearchLMCommand {
    func validate() throws {
        let targets = [targetBPW != nil, targetSize != nil, maxKLD != nil].filter { $0 }.count
        guard targets == 1 else { throw ValidationError("give exactly one of --target-bpw, --target-size, --max-kld") }
        guard let chosen = GGUFTypeSearchWorkflow.Method(rawValue: method) else { throw ValidationError("--method must be pareto or taylor-ip") }
        let taylorGiven = [("--loss", loss != nil), ("--draws", draws != nil), ("--seed", seed != nil), ("--validate", validationMixes != nil),
                           ("--solver-time-limit", solverTimeLimit != nil)].filter(\.1).map(\.0)
        switch chosen {
        case .pareto: try rejectOptions(of: "taylor-ip", taylorGiven, under: "search-lm --method pareto", targets: "pareto option: --measure")
        case .taylorIP:
            try rejectOptions(of: "pareto", measure == nil ? [] : ["--measure"], under: "search-lm --method taylor-ip",
                              targets: "taylor-ip options: --loss, --draws, --seed, --validate, --solver-time-limit")
        }
        if let loss, GGUFTaylorSensitivity.Loss(rawValue: loss) == nil { throw ValidationError("--loss must be kl or next-token") }
        try Check.range(measure, "--measure", 1...1000)
        try Check.range(draws, "--draws", 1...64)
        if loss == "next-token", let draws, draws != 1 { throw ValidationError("--draws: the next-token loss has fixed labels (one pass per chunk)") }
        try Check.range(validationMixes, "--validate", 2...10_000)
        if let solverTimeLimit, !(solverTimeLimit > 0) { throw ValidationError("--solver-time-limit must be positive") }
        if randomControl != nil, maxKLD != nil { throw ValidationError("--random-control needs --target-size or --target-bpw") }
        guard GGUFSpeedModel.Phase(rawValue: speedPhase) != nil else { throw ValidationError("--speed-phase must be decode or prefill") }
        if let maxMillisecondsPerToken {
            guard speedTable != nil else { throw ValidationError("--max-ms-per-token needs --speed-table") }
            guard maxMillisecondsPerToken.isFinite, maxMillisecondsPerToken > 0 else { throw ValidationError("--max-ms-per-token must be positive") }
        }
        try Check.range(context, "--context", 4...65_536)
        try Check.range(evalContext, "--eval-context", 4...65_536)
        try Check.range(chunks, "--chunks", 1...1_000_000)
        try Check.range(evalChunks, "--eval-chunks", 1...1_000_000)
    }

    static func parseType(_ text: String) throws -> GGMLType {
        guard let type = GGMLType(name: text.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("unknown ggml type '\(text)'")
        }
        return type
    }

    /// The library's options for these arguments.
    func workflowOptions() throws -> GGUFTypeSearchWorkflow.Options {
        let target: GGUFSearchTarget
        if let targetBPW { target = .bitsPerWeight(targetBPW) } else if let maxKLD { target = .maxKLD(maxKLD) } else {
            target = .fileBytes(try GGUFSearchTarget.parseSize(targetSize ?? ""))
        }
        var options = GGUFTypeSearchWorkflow.Options(model: model, calibrationText: text, target: target)
        options.method = GGUFTypeSearchWorkflow.Method(rawValue: method) ?? .pareto
        options.output = out
        if let types { options.types = try types.split(separator: ",").map { try Self.parseType(String($0)) } }
        options.tied = tie.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
        options.tensorPattern = tensors
        options.context = context
        options.chunks = chunks
        options.evaluationText = evalText
        options.evaluationContext = evalContext
        options.evaluationChunks = evalChunks
        options.baseline = try Self.parseType(baseline)
        options.cacheFolder = cacheFolder
        options.useCache = !noCache
        options.threads = threadOptions.threads
        options.randomControlSeed = randomControl
        options.speedTable = speedTable
        options.maxMillisecondsPerToken = maxMillisecondsPerToken
        options.speedPhase = GGUFSpeedModel.Phase(rawValue: speedPhase) ?? .decode
        if let measure { options.measuredCandidates = measure }
        if let loss { options.taylor.sensitivity.loss = GGUFTaylorSensitivity.Loss(rawValue: loss) ?? .kl }
        if let draws { options.taylor.sensitivity.draws = draws }
        if let seed { options.taylor.sensitivity.seed = seed }
        if let validationMixes { options.taylor.validationConfigurations = validationMixes }
        options.taylor.solverTimeLimit = solverTimeLimit
        return options
    }
}
