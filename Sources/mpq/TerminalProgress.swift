import ArgumentParser
import Foundation
import MPQ

/// Progress and notes on standard error: a bar with the ETA on a terminal, plain lines otherwise.
final class TerminalProgress: ProgressReporter {
    private var start = Date()
    private var phase = ""
    private let terminal = isatty(STDERR_FILENO) != 0

    func progress(_ phase: String, done: Int, total: Int) {
        if phase != self.phase || done <= 1 {
            self.phase = phase
            start = Date()
        }
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let status = String(format: "%@ %d/%d, %.1f s, eta %.0f s", phase, done, total, elapsed, eta)
        if terminal {
            let width = 30, filled = total > 0 ? width * min(done, total) / total : width
            let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
            write("\r" + bar + status + (done == total ? "\n" : ""))
        } else {
            write(status + "\n")
        }
    }

    func note(_ text: String) { write(text + "\n") }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}

extension DeploymentTarget: ExpressibleByArgument {}
extension RangeMethod: ExpressibleByArgument {}
extension SearchMetric: ExpressibleByArgument {}
extension TaylorIntegerProgramSearch.Objective: ExpressibleByArgument {}
extension BlockLatency.Statistic: ExpressibleByArgument {}
extension TaylorSearchWorkflow.Loss: ExpressibleByArgument {}
