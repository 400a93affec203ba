import ArgumentParser
import Foundation
import MPQ

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time a model in mpq: median latency over repetitions, peak memory.",
        discussion: "bench/compare_ort.py runs this next to ONNX Runtime on the same inputs and prints the ratios.")

    @Argument(help: "ONNX model file.")
    var model: String

    @Option(help: ArgumentHelp("Inputs to time (default: generated for --batch and --dim).", valueName: "FILE.npz"))
    var inputs: String?

    @Option(parsing: .unconditional, help: "Batch size for generated inputs.")
    var batch = 1

    @Option(name: .customLong("dim"), help: ArgumentHelp("Bind a symbolic dim for generated inputs.", valueName: "NAME=N"))
    var dimensions: [String] = []

    @Option(parsing: .unconditional, help: "Untimed runs first.")
    var warmup = 3

    @Option(parsing: .unconditional, help: "Timed runs.")
    var repetitions = 20

    @Option(help: ArgumentHelp("Also quantize with this config (preset or JSON, per-channel weights) and time real int8 execution against float32.", valueName: "w7a8|FILE.json"))
    var config: String?

    @Option(help: ArgumentHelp("Calibration data for --config.", valueName: "DATA"))
    var calib: String?

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        try Check.range(batch, "--batch", 1...1_000_000)
        try Check.range(repetitions, "--repetitions", 1...1_000_000)
        try Check.range(warmup, "--warmup", 0...1_000_000)
        _ = try parseDimensions(dimensions)
        guard (config == nil) == (calib == nil) else { throw ValidationError("--config and --calib go together") }
        if inputs != nil && !dimensions.isEmpty { throw ValidationError("--dim binds generated inputs; it cannot be used with --inputs") }
    }

    /// Median, minimum and maximum milliseconds of `repetitions` runs after `warmup` untimed ones.
    func time(_ session: InferenceSession, _ feeds: [String: Tensor]) throws -> (median: Double, min: Double, max: Double) {
        for _ in 0..<warmup { _ = try session.run(feeds) }
        var times: [Double] = []
        for _ in 0..<repetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try session.run(feeds)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        times.sort()
        return (times[times.count / 2], times[0], times[times.count - 1])
    }

    func run() throws {
        let loaded = try Model(contentsOf: model)
        let session = try InferenceSession(model: loaded, options: threadOptions.session)
        let feeds = try inputs.map { try NPZ.read(contentsOf: $0) } ?? generatedInputs(loaded.graph, batch: batch, dimensions: dimensions)
        let (median, fastest, slowest) = try time(session, feeds)
        let quantized = config == nil ? [] : try int8Timings(loaded, feeds)
        let specialized = try session.specialize(inputShapes: feeds.mapValues(\.shape))
        let activations = specialized.peakLiveBytes(outputs: loaded.graph.outputs.map(\.name),
                                                    inputs: loaded.graph.inputs.map(\.name)) ?? 0
        let weights = loaded.graph.initializers.values.reduce(0) { $0 + $1.byteCount }
        let peak = ProcessMemory.peakResidentBytes
        let shapes = loaded.graph.inputs.map { "\($0.name)=\(feeds[$0.name]!.shape)" }.joined(separator: " ")
        if json {
            var object: [String: Any] = [
                "median_ms": median, "min_ms": fastest, "max_ms": slowest,
                "repetitions": repetitions, "threads": threadOptions.session.threads,
                "peak_rss_bytes": peak, "weight_bytes": weights, "peak_activation_bytes": activations,
            ]
            for timing in quantized {
                object[timing.key + "_median_ms"] = timing.median
                object[timing.key + "_lowered_layers"] = timing.lowered
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("inputs: \(shapes)")
            print(String(format: "median %.3f ms  (min %.3f, max %.3f) over %d runs, %d threads",
                         median, fastest, slowest, repetitions, threadOptions.session.threads))
            for timing in quantized {
                print(String(format: "%@: median %.3f ms, %.2fx float32 (%d layers int8)",
                             timing.label, timing.median, median / timing.median, timing.lowered))
            }
            print("peak RSS \(formatBytes(peak)); weights \(formatBytes(weights)) + peak live activations \(formatBytes(activations))"
                  + String(format: " = %@ (ratio %.2f)", formatBytes(weights + activations), Double(peak) / Double(max(weights + activations, 1))))
        }
    }
}
