import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Pareto-greedy search of per-tensor ggml types.
///
/// 1. Sensitivity: for every group and candidate, the mean KL divergence from the base model on
///    the calibration chunks when only that group takes the candidate (dequant(quant(W))
///    substituted; only the layers from the group's layer on are recomputed, from the cached
///    residual stream). A candidate whose type is the source tensor's own costs nothing (0).
/// 2. Front: from every group at its largest candidate, repeatedly take the move to a cheaper
///    candidate of one group with the least predicted KL increase per byte saved (predicted KL =
///    sum of the groups' sensitivities), down to every group at its smallest candidate.
/// 3. Choice: for a size target, the front points that fit are measured for real (the few
///    largest) and the best measured one is taken; for a KL target, a binary search over the
///    front with real measurements finds the smallest point whose measured KL meets it. With a
///    `speedLimit`, only the front points predicted within it are chosen among (the front itself
///    stays the one over bytes).
public struct GGUFParetoSearch {
    /// One mix on the greedy front.
    public struct FrontPoint: Sendable {
        /// Candidate index per group (into `space.groups[g].candidates`).
        public var choice: [Int]
        /// Exact bytes of the GGUF file this mix writes.
        public var fileBytes: Int
        /// llama.cpp's bits per weight: 8 x tensor data bytes / weights.
        public var bitsPerWeight: Double
        /// Predicted calibration KLD: the sum of the groups' sensitivities at their candidates (step 2).
        public var predictedKLD: Double
        /// Measured calibration KLD (nil when not measured).
        public var measuredKLD: Double?
    }

    /// What a search found.
    public struct Result: Sendable {
        /// sensitivity[group][candidate]: calibration KLD with only that change.
        public var sensitivity: [[Double]]
        /// The greedy front from the largest mix to the smallest, extra (e.g. uniform) points inserted by size.
        public var front: [FrontPoint]
        /// Index into `front` of the chosen point.
        public var chosen: Int
        /// Mixes measured end to end (each a full calibration KLD, cached ones not counted).
        public var evaluations: Int
        /// Wall time of the search, in seconds.
        public var seconds: Double
        /// The chosen mix: candidate index per group.
        public var choice: [Int] { front[chosen].choice }
    }

    /// The groups and candidate types searched.
    public let space: GGUFSearchSpace
    /// Calibration chunks, reference distributions and cached residual streams the KLDs come from.
    public let calibration: GGUFCalibration
    /// Every candidate conversion of the weights (llama-quantize's quantisers with the imatrix).
    public let weights: GGUFQuantizedWeights
    /// Scores on disk (sensitivities and whole mixes) so an interrupted search resumes; nil: none.
    public let cache: SensitivityCache?
    /// Where sensitivity progress and front measurements are reported.
    public let progress: ProgressReporter
    /// Points of the front measured for a size target (the largest that fit).
    public var measuredCandidates = 3
    /// Predicted milliseconds per token the chosen mix must stay within (nil: no speed constraint).
    public var speedLimit: GGUFSpeedLimit?

    /// A search over `space`; nothing runs until `run(target:extraPoints:)`.
    public init(space: GGUFSearchSpace, calibration: GGUFCalibration, weights: GGUFQuantizedWeights,
                cache: SensitivityCache?, progress: ProgressReporter = SilentProgress()) {
        self.space = space
        self.calibration = calibration
        self.weights = weights
        self.cache = cache
        self.progress = progress
    }

    /// Calibration KLD of a whole mix (cached by its type list).
    public func measure(_ choice: [Int]) throws -> Double {
        try calibration.kld(of: choice, in: space, weights: weights, cache: cache)
    }

    /// Sensitivity of every (group, candidate).
    public func sensitivities() throws -> [[Double]] {
        let total = space.groups.reduce(0) { $0 + $1.candidates.count }
        var done = 0
        var result: [[Double]] = []
        for group in space.groups {
            var row: [Double] = []
            for candidate in group.candidates {
                let key = "sens|\(group.name)|\(candidate.type.name)"
                let unchanged = group.tensors.allSatisfy { weights.file.tensor(named: $0)?.type == candidate.type }
                if unchanged {
                    row.append(0)
                } else if let cached = cache?.score(key) {
                    row.append(cached)
                } else {
                    var replacing: [String: Tensor] = [:]
                    for name in group.tensors { replacing[name] = try weights.values(name, candidate.type) }
                    let value = try calibration.kld(replacing: replacing, fromLayer: group.layer)
                    try cache?.store(key, value)
                    row.append(value)
                }
                done += 1
                progress.progress("sensitivity", done: done, total: total)
            }
            result.append(row)
        }
        return result
    }

    /// The greedy front over file bytes, from the largest mix down to the smallest.
    public func front(_ sensitivity: [[Double]]) -> [FrontPoint] {
        var choice = space.largest
        func point(_ c: [Int]) -> FrontPoint {
            FrontPoint(choice: c, fileBytes: space.fileBytes(c), bitsPerWeight: space.bitsPerWeight(c),
                       predictedKLD: zip(sensitivity, c).reduce(0) { $0 + $1.0[$1.1] }, measuredKLD: nil)
        }
        var points = [point(choice)]
        while true {
            var best: (group: Int, candidate: Int, rate: Double)?
            for (g, group) in space.groups.enumerated() where choice[g] > 0 {
                let current = group.candidates[choice[g]]
                for c in 0..<choice[g] {
                    let saved = current.fileBytes - group.candidates[c].fileBytes
                    guard saved > 0 else { continue }
                    let rate = (sensitivity[g][c] - sensitivity[g][choice[g]]) / Double(saved)
                    if best == nil || rate < best!.rate { best = (g, c, rate) }
                }
            }
            guard let move = best else { break }
            choice[move.group] = move.candidate
            points.append(point(choice))
        }
        return points
    }

    /// Runs the three steps (sensitivity, front, choice) for `target` and returns the front with the chosen point.
    ///
    /// - Parameter target: the file size, bits per weight or mean KLD the chosen mix must meet.
    /// - Parameter extraPoints: mixes measured besides the front for a size target (e.g. the
    ///   uniform types), inserted into the returned front by size; the best measured wins.
    public func run(target: GGUFSearchTarget, extraPoints: [[Int]] = []) throws -> Result {
        try target.check(in: space)
        let start = Date()
        let sensitivity = try sensitivities()
        var front = front(sensitivity)
        var extras = Set<Int>()
        if case .maxKLD = target {} else {
            for choice in extraPoints where target.fits(choice, in: space) && (speedLimit?.fits(choice) ?? true)
                && !front.contains(where: { $0.choice == choice }) {
                let point = FrontPoint(choice: choice, fileBytes: space.fileBytes(choice), bitsPerWeight: space.bitsPerWeight(choice),
                                       predictedKLD: zip(sensitivity, choice).reduce(0) { $0 + $1.0[$1.1] }, measuredKLD: nil)
                let at = front.firstIndex { $0.fileBytes < point.fileBytes } ?? front.count
                front.insert(point, at: at)
                extras = Set(extras.map { $0 >= at ? $0 + 1 : $0 })
                extras.insert(at)
            }
        }
        var evaluations = 0
        func measurePoint(_ i: Int) throws -> Double {
            if let m = front[i].measuredKLD { return m }
            let value = try self.measure(front[i].choice)
            front[i].measuredKLD = value
            evaluations += 1
            progress.note(String(format: "measured front point %d: %d bytes, %.4f bpw, predicted KLD %.6f, measured %.6f",
                                 i, front[i].fileBytes, front[i].bitsPerWeight, front[i].predictedKLD, value))
            return value
        }
        let fast = front.indices.filter { speedLimit?.fits(front[$0].choice) ?? true }
        guard !fast.isEmpty else { throw MPQError.invalidInput("no front point meets \(speedLimit?.description ?? "the speed limit")") }
        var chosen: Int
        switch target {
        case .maxKLD(let limit):
            // Front points run from large to small; measured KLD grows (roughly) along it.
            var low = 0, high = fast.count - 1
            if try measurePoint(fast[low]) > limit {
                throw MPQError.invalidInput(String(format: "no mix meets mean KLD <= %g: the largest mix measures %.6g", limit,
                                                   front[fast[low]].measuredKLD!))
            }
            while low < high {
                let mid = (low + high + 1) / 2
                if try measurePoint(fast[mid]) <= limit { low = mid } else { high = mid - 1 }
            }
            chosen = fast[low]
        case .fileBytes, .bitsPerWeight:
            let fitting = fast.filter { !extras.contains($0) && target.fits(front[$0].choice, in: space) }
            guard let first = fitting.first else {
                throw MPQError.invalidInput("no front point meets \(target)" + (speedLimit.map { " and \($0.description)" } ?? ""))
            }
            chosen = first
            var best = try measurePoint(first)
            for i in Array(fitting.dropFirst().prefix(max(0, measuredCandidates - 1))) + extras.sorted() {
                let value = try measurePoint(i)
                if value < best { best = value; chosen = i }
            }
        }
        return Result(sensitivity: sensitivity, front: front, chosen: chosen, evaluations: evaluations,
                      seconds: Date().timeIntervalSince(start))
    }
}
