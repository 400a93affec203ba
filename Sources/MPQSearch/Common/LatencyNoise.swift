import Foundation

/// How many of a run's timings stayed noisy (`Timing.isNoisy`): the figure behind the "machine too
/// busy" warning and report.json's `latency_noise`, so a loaded machine is reported instead of
/// silently choosing from noise.
public struct LatencyNoise: Sendable, Equatable {
    /// Timings taken in this run (cached ones are not counted: they were quiet when stored).
    public var timings = 0
    /// Timings whose every round stayed above the tolerance.
    public var noisy = 0
    /// The limit the timings were held to.
    public var limit: LatencyMeasurement.NoiseLimit

    /// No timings yet, held to `limit`.
    public init(limit: LatencyMeasurement.NoiseLimit) { self.limit = limit }

    /// Counts `timing`.
    public mutating func record(_ timing: Timing) {
        timings += 1
        if timing.isNoisy { noisy += 1 }
    }

    /// One warning line when any timing stayed noisy, else nil.
    public var warning: String? {
        guard noisy > 0 else { return nil }
        return String(format: "machine too busy: %d of %d timings still spread > %g%% after %d rounds; latencies may be off",
                      noisy, timings, limit.tolerance * 100, limit.maxRounds)
    }

    /// The fields of report.json's `latency_noise`.
    public var reportFields: [String: Any] {
        ["timings": timings, "noisy": noisy, "tolerance": limit.tolerance, "max_rounds": limit.maxRounds]
    }
}
