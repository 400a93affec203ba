import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Where the workflows (calibration, evaluation, both searches) report how far they are and
/// the notes worth showing (warnings, counts). The `mpq` tool draws a bar on a terminal and
/// plain lines otherwise; `SilentProgress` drops everything.
public protocol ProgressReporter: AnyObject {
    /// `done` of `total` steps of `phase` ("calibrating", "evaluating", "sensitivity", ...) are finished.
    func progress(_ phase: String, done: Int, total: Int)
    /// A line for the user: a warning (prefixed "warning: ") or a note about the work.
    func note(_ text: String)
}

/// A step of a search, reported while it runs: `done` of `total` steps of `phase`
/// (`ParetoGreedySearch.Progress`, `TaylorIntegerProgramSearch.Progress`).
public struct SearchProgress: Sendable {
    /// The phase running, e.g. "calibrating", "sensitivity", "gradients" or "sweep".
    public var phase: String
    /// Steps of the phase finished.
    public var done: Int
    /// Steps of the phase in all.
    public var total: Int

    /// A progress report of `done` of `total` steps of `phase`.
    public init(phase: String, done: Int, total: Int) {
        self.phase = phase
        self.done = done
        self.total = total
    }
}

/// A reporter that shows nothing.
public final class SilentProgress: ProgressReporter {
    /// A reporter that drops everything.
    public init() {}
    /// Ignores the progress step.
    public func progress(_ phase: String, done: Int, total: Int) {}
    /// Ignores the note.
    public func note(_ text: String) {}
}

extension ProgressReporter {
    /// A `(done, total)` callback for `phase`, as the calibrator and evaluator take.
    public func steps(_ phase: String) -> (Int, Int) -> Void {
        { [self] done, total in progress(phase, done: done, total: total) }
    }

    /// Both searches' progress callback (`ParetoGreedySearch`, `TaylorIntegerProgramSearch`).
    package func search(_ step: SearchProgress) { progress(step.phase, done: step.done, total: step.total) }
}
