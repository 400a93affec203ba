import ArgumentParser
import Foundation
import MPQ

/// `mpq search pareto|taylor-ip MODEL ...`; `mpq search MODEL --method M ...` is the same.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Find per-layer precisions: the accuracy-vs-cost front and a configuration that meets a target.",
        discussion: "`mpq search MODEL --method pareto|taylor-ip ...` is the same as `mpq search pareto|taylor-ip MODEL ...`.",
        subcommands: [ParetoSearchCommand.self, TaylorSearchCommand.self, SearchByMethodCommand.self],
        defaultSubcommand: SearchByMethodCommand.self)
}

/// `mpq search taylor-ip`.
struct TaylorSearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taylor-ip",
        abstract: "Taylor-IP search: loss-MSE sensitivities, measured block latencies and an integer program.",
        discussion: "Writes DIR/sensitivity.csv, latency.csv, with --sweep front.csv and front.svg, with --validate validation.csv, and with --max-loss-mse config.json, predicted.csv, model.qdq.onnx, encodings.json and report.json.")

    @OptionGroup var common: SearchArguments
    @OptionGroup var taylor: TaylorArguments
    @OptionGroup(visibility: .private) var pareto: ParetoArguments

    func validate() throws {
        try rejectOptions(of: "pareto", pareto.given, under: "mpq search taylor-ip",
                          targets: "taylor-ip targets: --max-loss-mse, --sweep, --validate")
        try SearchByMethodCommand.needsTarget(taylor, "mpq search taylor-ip")
    }

    func run() throws { try taylor.run(common) }
}

/// Search methods of `--method`.
enum SearchMethod: String, ExpressibleByArgument, CaseIterable {
    case pareto
    case taylorIP = "taylor-ip"
}

/// `mpq search MODEL --method pareto|taylor-ip ...`: both methods' options, each rejected under the other.
struct SearchByMethodCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "by-method", shouldDisplay: false)

    @OptionGroup var common: SearchArguments

    @Option(help: "Search method.")
    var method: SearchMethod = .pareto

    @OptionGroup var pareto: ParetoArguments
    @OptionGroup var taylor: TaylorArguments

    static func needsTarget(_ taylor: TaylorArguments, _ command: String) throws {
        if taylor.maxLossMse == nil && !taylor.sweep && taylor.validateCount == nil {
            throw ValidationError("\(command) needs --max-loss-mse T, --sweep or --validate N")
        }
    }

    func validate() throws {
        switch method {
        case .pareto:
            try rejectOptions(of: "taylor-ip", taylor.given, under: "--method pareto",
                              targets: "pareto targets: --target-sqnr, --max-drop, --target-cost")
        case .taylorIP:
            try rejectOptions(of: "pareto", pareto.given, under: "--method taylor-ip",
                              targets: "taylor-ip targets: --max-loss-mse, --sweep, --validate")
            try Self.needsTarget(taylor, "--method taylor-ip")
        }
    }

    func run() throws {
        switch method {
        case .pareto: try pareto.run(common)
        case .taylorIP: try taylor.run(common)
        }
    }
}
