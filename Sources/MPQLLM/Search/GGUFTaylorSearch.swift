import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Taylor-IP search of per-tensor ggml types (Markovich-Golan et al. 2025, arXiv 2505.13060;
/// docs/DESIGN.md method 2):
///
/// 1. Sensitivity: the loss MSE E_n[dL_n^2] of every (group, candidate) from one forward and
///    backward pass per calibration chunk (`GGUFTaylorSensitivity`), in units of mean KLD.
/// 2. Integer program (`MultipleChoiceProgram`, CBC, solved to proven optimality unless a time
///    limit stops it): one candidate per group minimising the predicted KLD (the sum of the
///    chosen candidates' sensitivities) subject to file bytes <= the budget (or llama.cpp's bits
///    per weight <= the target). For a KLD target it minimises bytes subject to predicted KLD
///    <= a threshold, tightening the threshold while the measured KLD misses the target. With a
///    `speedLimit`, the predicted milliseconds per token (`GGUFSpeedModel`) is a second resource.
/// 3. The program's mix is measured for real on the calibration chunks, and so are the extra
///    points given (e.g. the uniform types that fit, as the Pareto path does); the best measured
///    is taken, so the choice is never worse than one of them on the calibration text.
public struct GGUFTaylorSearch {
    /// The search's settings.
    public struct Options: Sendable, Equatable {
        /// How the sensitivities are estimated (loss, draws, seed).
        public var sensitivity = GGUFTaylorSensitivity.Options()
        /// Seconds CBC may spend on one program (nil: until proven optimal).
        public var solverTimeLimit: Double?
        /// Random mixes measured to validate the additive prediction (0: none; `GGUFTaylorValidation`).
        public var validationConfigurations = 0
        /// Programs solved at most for a KLD target (each measured).
        public var kldRounds = 5
        /// Default settings.
        public init() {}

        /// Throws `MPQError.invalidInput` for settings no search can run with.
        public func check() throws {
            try sensitivity.check()
            guard validationConfigurations == 0 || (2...10_000).contains(validationConfigurations) else {
                throw MPQError.invalidInput("validation needs 2...10000 configurations, got \(validationConfigurations)")
            }
            if let limit = solverTimeLimit, !(limit > 0) { throw MPQError.invalidInput("solver time limit must be positive, got \(limit)") }
        }
    }

    /// What a search found.
    public struct Result: Sendable {
        /// sensitivity[group][candidate]: predicted mean KLD with only that change.
        public var sensitivity: [[Double]]
        /// The chosen candidate of every group.
        public var choice: [Int]
        /// Whether `choice` is the program's (false: an extra point measured better).
        public var fromProgram: Bool
        /// Calibration KLD of the program's mix.
        public var programKLD: Double
        /// Bytes of the chosen mix's GGUF file.
        public var fileBytes: Int
        /// llama.cpp's bits per weight of the chosen mix.
        public var bitsPerWeight: Double
        /// Sum of the chosen candidates' sensitivities.
        public var predictedKLD: Double
        /// Calibration KLD of the chosen mix.
        public var measuredKLD: Double
        /// The integer program's last solution (CBC status, objective, solve time).
        public var solution: MultipleChoiceProgram.Solution
        /// Full calibration evaluations run (mixes measured).
        public var evaluations: Int
        /// Seconds of the forward and backward passes (0 when every pass came from the cache).
        public var passSeconds: Double
        /// Seconds of the whole search.
        public var seconds: Double
    }

    /// The groups and candidate types searched.
    public let space: GGUFSearchSpace
    /// The calibration chunks and the base model's logits on them.
    public let calibration: GGUFCalibration
    /// The base weights and their quantization to each candidate type.
    public let weights: GGUFQuantizedWeights
    /// Where passes and measured mixes are kept, so a killed run resumes; nil: none.
    public let cache: SensitivityCache?
    /// The search's settings.
    public let options: Options
    /// Where the search reports progress.
    public let progress: ProgressReporter
    /// Predicted milliseconds per token the mix must stay within (nil: no speed constraint).
    public var speedLimit: GGUFSpeedLimit?

    /// A search over `space`; nothing runs until `run`.
    public init(space: GGUFSearchSpace, calibration: GGUFCalibration, weights: GGUFQuantizedWeights,
                cache: SensitivityCache?, options: Options = Options(), progress: ProgressReporter = SilentProgress()) {
        self.space = space
        self.calibration = calibration
        self.weights = weights
        self.cache = cache
        self.options = options
        self.progress = progress
    }

    /// The integer program for a size target: gain -sensitivity, one resource (file bytes, or tensor
    /// data bytes for a bits-per-weight target) with the budget left after the fixed tensors, and
    /// with `speed` a second (predicted milliseconds per token).
    public static func program(space: GGUFSearchSpace, sensitivity: [[Double]], target: GGUFSearchTarget,
                               speed: GGUFSpeedLimit? = nil) throws -> MultipleChoiceProgram {
        guard sensitivity.count == space.groups.count,
              zip(sensitivity, space.groups).allSatisfy({ $0.count == $1.candidates.count }) else {
            throw MPQError.invalidInput("sensitivities do not match the search space's groups and candidates")
        }
        let budget: Double, bytes: (GGUFSearchSpace.Candidate) -> Double, name: String
        switch target {
        case .fileBytes(let b):
            budget = Double(b - space.fixedFileBytes)
            bytes = { Double($0.fileBytes) }
            name = "file bytes"
        case .bitsPerWeight(let b):
            budget = b * Double(space.totalElements) / 8 - Double(space.fixedDataBytes)
            bytes = { Double($0.dataBytes) }
            name = "tensor data bytes"
        case .maxKLD:
            throw MPQError.invalidInput("a KLD target has no byte budget")
        }
        let blocks = zip(space.groups, sensitivity).map { group, row in
            zip(group.candidates, row).map { MultipleChoiceProgram.Option(gain: -$1, costs: [bytes($0)]) }
        }
        return withSpeed(MultipleChoiceProgram(blocks: blocks, budgets: [budget], resourceNames: [name]), speed)
    }

    /// The program for a KLD threshold: gain -file bytes, one resource (predicted KLD), and with
    /// `speed` a second (predicted milliseconds per token).
    static func program(space: GGUFSearchSpace, sensitivity: [[Double]], maxPredictedKLD: Double,
                        speed: GGUFSpeedLimit? = nil) -> MultipleChoiceProgram {
        let blocks = zip(space.groups, sensitivity).map { group, row in
            zip(group.candidates, row).map { MultipleChoiceProgram.Option(gain: -Double($0.fileBytes), costs: [$1]) }
        }
        return withSpeed(MultipleChoiceProgram(blocks: blocks, budgets: [maxPredictedKLD], resourceNames: ["predicted KLD"]), speed)
    }

    /// `program` with the speed limit's milliseconds per token as one more resource.
    static func withSpeed(_ program: MultipleChoiceProgram, _ speed: GGUFSpeedLimit?) -> MultipleChoiceProgram {
        guard let speed else { return program }
        let blocks = zip(program.blocks, speed.model.candidateMilliseconds).map { options, milliseconds in
            zip(options, milliseconds).map { MultipleChoiceProgram.Option(gain: $0.gain, costs: $0.costs + [$1]) }
        }
        // The limit's own rounding slack (`GGUFSpeedLimit.fits`), so a limit at the fastest mix stays feasible.
        let budget = speed.maxMilliseconds * (1 + 1e-12) - speed.model.fixedMilliseconds
        return MultipleChoiceProgram(blocks: blocks, budgets: program.budgets + [budget],
                                     resourceNames: program.resourceNames + ["milliseconds per token"])
    }

    /// The additive prediction of a mix's mean KLD: the sum of its groups' sensitivities.
    public func predictedKLD(_ choice: [Int], sensitivity: [[Double]]) -> Double {
        zip(sensitivity, choice).reduce(0) { $0 + $1.0[$1.1] }
    }

    /// Runs the search: sensitivities (cached per pass), the integer program for `target`, and the
    /// measurement of its mix next to `extraPoints`.
    ///
    /// - Parameters:
    ///   - target: the file size, bits per weight or mean KLD the mix must meet.
    ///   - extraPoints: mixes measured next to the program's for a size target; the best measured wins.
    public func run(target: GGUFSearchTarget, extraPoints: [[Int]] = []) throws -> Result {
        try options.check()
        try target.check(in: space)
        let start = Date()
        let taylor = try GGUFTaylorSensitivity(space: space, calibration: calibration, weights: weights,
                                               options: options.sensitivity, cache: cache, progress: progress)
        let sensitivity = try taylor.lossMSE()
        var evaluations = 0
        func measure(_ choice: [Int]) throws -> Double {
            evaluations += 1
            return try calibration.kld(of: choice, in: space, weights: weights, cache: cache)
        }
        let solution: MultipleChoiceProgram.Solution
        let measured: Double
        var choice: [Int]
        var best: Double
        switch target {
        case .fileBytes, .bitsPerWeight:
            solution = try Self.program(space: space, sensitivity: sensitivity, target: target, speed: speedLimit)
                .solve(timeLimit: options.solverTimeLimit)
            guard target.fits(solution.choice, in: space), speedLimit?.fits(solution.choice) ?? true else {
                throw MPQError.kernelFailure("internal: the program's choice (\(space.fileBytes(solution.choice)) bytes) misses \(target)")
            }
            measured = try measure(solution.choice)
            (choice, best) = (solution.choice, measured)
            for extra in extraPoints where extra != solution.choice && target.fits(extra, in: space) && (speedLimit?.fits(extra) ?? true) {
                let m = try measure(extra)
                progress.note(String(format: "extra point: %d bytes, predicted KLD %.6f, measured %.6f",
                                     space.fileBytes(extra), predictedKLD(extra, sensitivity: sensitivity), m))
                if m < best { (choice, best) = (extra, m) }
            }
        case .maxKLD(let limit):
            // Predicted and measured KLD differ by a roughly constant factor: rescale the threshold by it.
            var threshold = limit
            var found: (MultipleChoiceProgram.Solution, Double)?
            for round in 0..<options.kldRounds {
                let s: MultipleChoiceProgram.Solution
                do {
                    s = try Self.program(space: space, sensitivity: sensitivity, maxPredictedKLD: threshold, speed: speedLimit)
                        .solve(timeLimit: options.solverTimeLimit)
                } catch MPQError.invalidInput {
                    break
                }
                let m = try measure(s.choice)
                progress.note(String(format: "round %d: predicted KLD <= %.6g: %d bytes, measured KLD %.6g", round + 1, threshold,
                                     space.fileBytes(s.choice), m))
                if m <= limit {
                    found = (s, m)
                    break
                }
                threshold *= 0.9 * limit / m
            }
            guard let found else {
                throw MPQError.invalidInput(String(format: "no mix found with measured mean KLD <= %g in %d rounds", limit, options.kldRounds))
            }
            (solution, measured) = found
            (choice, best) = (solution.choice, measured)
        }
        progress.note(String(format: "taylor-ip: %d bytes, predicted KLD %.6f, measured %.6f (CBC %@, %.2f s)",
                             space.fileBytes(solution.choice), predictedKLD(solution.choice, sensitivity: sensitivity), measured,
                             solution.status.rawValue, solution.solveSeconds))
        return Result(sensitivity: sensitivity, choice: choice, fromProgram: choice == solution.choice, programKLD: measured,
                      fileBytes: space.fileBytes(choice), bitsPerWeight: space.bitsPerWeight(choice),
                      predictedKLD: predictedKLD(choice, sensitivity: sensitivity), measuredKLD: best,
                      solution: solution, evaluations: evaluations, passSeconds: taylor.passSeconds,
                      seconds: Date().timeIntervalSince(start))
    }
}
