import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Hostile and careless input (issue 10): the real `mpq` binary, run on crafted
/// models (Tests/Scripts/make_bad_models.py), bad .npy files, bad configs and bad
/// option values. Every case must end with an exit status (never a signal), a
/// non-zero status, exactly one line on stderr naming the cause, and nothing
/// written to the --out folder.
@Suite(.serialized) struct BadInputTests {
    /// One row of the table. In `arguments`, `{D}` is the folder of crafted files,
    /// `{OUT}` a fresh output folder that does not exist yet, `{M}` MobileNetV2 and
    /// `{FILE}` an ordinary file.
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var arguments: [String]
        /// Substrings stderr must contain.
        var mentions: [String]
        var testDescription: String { name }

        init(_ name: String, _ arguments: String, _ mentions: String...) {
            self.name = name
            self.arguments = arguments.split(separator: " ").map(String.init)
            self.mentions = mentions
        }
    }

    static let cases: [Case] = [
        // Window attributes: validated when the operator is made, before any plan or kernel.
        Case("conv pads 1e9 (run)", "run {D}/conv_pads_1e9.onnx --input x={D}/x.npy", "Conv node 'conv'", "pads", "0...1048576"),
        Case("conv pads 1e9 (inspect)", "inspect {D}/conv_pads_1e9.onnx", "Conv node 'conv'", "pads"),
        Case("conv pads 1e9 (quantize)", "quantize {D}/conv_pads_1e9.onnx --calib {D}/calib.npy --config w8a8 --out {OUT}", "pads"),
        Case("conv pads 1e9 (eval)", "eval {D}/conv_pads_1e9.onnx --calib {D}/calib.npy --config w8a8", "pads"),
        Case("conv pads 1e9 (search)", "search {D}/conv_pads_1e9.onnx --calib {D}/calib.npy --out {OUT}", "pads"),
        Case("conv pads 2^31-1", "run {D}/conv_pads_int32max.onnx --input x={D}/x.npy", "pads", "2147483647"),
        Case("conv pads 2^20: output too large", "run {D}/conv_pads_large.onnx --input x={D}/x.npy", "too large", "Conv node 'conv'", "memory"),
        Case("conv pads 2^20 (inspect)", "inspect {D}/conv_pads_large.onnx", "too large", "output 'y'"),
        Case("conv strides 0 (inspect)", "inspect {D}/conv_strides_zero.onnx", "strides", "1...1048576"),
        Case("conv strides 0 (run)", "run {D}/conv_strides_zero.onnx --input x={D}/x.npy", "strides"),
        Case("conv strides 0 (bench)", "bench {D}/conv_strides_zero.onnx --repetitions 1 --warmup 0", "strides"),
        Case("conv strides negative", "inspect {D}/conv_strides_negative.onnx", "strides", "-1"),
        Case("conv dilations 0", "inspect {D}/conv_dilations_zero.onnx", "dilations"),
        Case("conv pads negative", "inspect {D}/conv_pads_negative.onnx", "pads", "-5"),
        Case("conv pads odd count", "inspect {D}/conv_pads_odd_count.onnx", "pads", "even"),
        Case("conv auto_pad unknown", "inspect {D}/conv_auto_pad_bogus.onnx", "SAME_SIDEWAYS", "SAME_UPPER"),
        Case("conv kernel larger than padded input", "inspect {D}/conv_kernel_too_big.onnx", "kernel extent 9", "padded input"),
        Case("maxpool strides 0", "inspect {D}/maxpool_stride_zero.onnx", "MaxPool node 'pool'", "strides"),
        Case("maxpool kernel 0", "inspect {D}/maxpool_kernel_zero.onnx", "kernel_shape"),
        Case("convtranspose output_padding 1e12", "inspect {D}/convtranspose_output_padding_huge.onnx", "output_padding"),
        Case("softmax axis out of range", "inspect {D}/softmax_axis_out_of_range.onnx", "axis 9", "Softmax node 'softmax'", "-4...3"),
        // Sizes: overflow-checked and bounded by the machine's memory before allocation.
        Case("folded ConstantOfShape 10^18 elements", "inspect {D}/expand_huge.onnx", "too large", "ConstantOfShape node 'fill'"),
        Case("initializer dims overflow", "inspect {D}/initializer_dims_overflow.onnx", "tensor 'w'", "overflows"),
        Case("input dims beyond memory", "inspect {D}/input_dims_huge.onnx", "too large", "model input 'x'"),
        // Shapes known only at run time: checked by shape inference on the actual inputs before the kernel allocates.
        Case("Expand to a run-time shape beyond memory", "run {D}/expand_runtime_shape.onnx --input x={D}/one.npy --input s={D}/shape_huge.npy", "too large", "Expand node 'expand'"),
        Case("Expand to a run-time shape that overflows", "run {D}/expand_runtime_shape.onnx --input x={D}/one.npy --input s={D}/shape_overflow.npy", "overflows", "Expand node 'expand'"),
        Case("ConstantOfShape at run time", "run {D}/constantofshape_runtime.onnx --input s={D}/shape_huge.npy", "too large", "ConstantOfShape node 'fill'"),
        Case("Tile at run time", "run {D}/tile_runtime.onnx --input x={D}/ones3.npy --input s={D}/shape_overflow.npy", "Tile node 'tile'", "overflows"),
        Case("Pad at run time", "run {D}/pad_runtime.onnx --input x={D}/ones3.npy --input p={D}/pads_huge.npy", "Pad node 'pad'"),
        Case("Range of 2^62 elements", "run {D}/range_runtime.onnx --input a={D}/zero.npy --input b={D}/big.npy --input c={D}/step1.npy", "Range node 'range'"),
        Case("Range with delta 0", "run {D}/range_runtime.onnx --input a={D}/zero.npy --input b={D}/big.npy --input c={D}/step0.npy", "delta is 0"),
        Case("Gather index out of range", "run {D}/gather_runtime.onnx --input t={D}/t.npy --input i={D}/index_huge.npy", "Gather node 'gather'", "out of range"),
        Case("Gather negative index out of range", "run {D}/gather_runtime.onnx --input t={D}/t.npy --input i={D}/index_negative.npy", "-1000000"),
        Case("Reshape to a negative dim", "run {D}/reshape_runtime.onnx --input t={D}/t.npy --input s={D}/shape_negative.npy", "Reshape node 'reshape'", "-3"),
        Case("Reshape with two -1", "run {D}/reshape_runtime.onnx --input t={D}/t.npy --input s={D}/shape_two_minus_one.npy", "more than one -1"),
        Case("Slice step 0", "run {D}/slice_runtime.onnx --input t={D}/t.npy --input a={D}/i0.npy --input b={D}/i4.npy --input ax={D}/i0.npy --input st={D}/i0.npy", "step is 0"),
        Case("Slice axis out of range", "run {D}/slice_runtime.onnx --input t={D}/t.npy --input a={D}/i0.npy --input b={D}/i4.npy --input ax={D}/i5.npy --input st={D}/i4.npy", "axis 5"),
        Case("empty model file", "inspect {D}/empty.onnx", "holds no graph"),
        Case("garbage model file", "run {D}/not_a_model.onnx --input x={D}/x.npy", "not an ONNX model"),
        Case("npz that is not a zip", "run {D}/good.onnx --inputs {D}/not_a_zip.npz", "not_a_zip.npz"),
        Case("npz that is not a zip (calib)", "eval {D}/good.onnx --calib {D}/not_a_zip.npz --config w8a8", "not_a_zip.npz"),
        Case("npz with an array stored twice", "run {D}/good.onnx --inputs {D}/duplicate_array.npz", "array 'x' is stored twice"),
        Case("npz entry inflating past its size", "run {D}/good.onnx --inputs {D}/inflates_past_size.npz", "inflates past its declared size"),
        Case("npy header shape overflow", "run {D}/good.onnx --input x={D}/huge_header.npy", "huge_header.npy", "overflows"),
        Case("npy header shape overflow (calib)", "quantize {D}/good.onnx --calib {D}/huge_header.npy --config w8a8 --out {OUT}", "overflows"),
        Case("0-d calibration array", "quantize {D}/good.onnx --calib {D}/scalar.npy --config w8a8 --out {OUT}", "scalar.npy", "0-d"),
        Case("0-d calibration array (search)", "search {D}/good.onnx --calib {D}/scalar.npy --out {OUT}", "0-d"),
        Case("bench --batch 1e9", "bench {D}/good.onnx --batch 1000000000", "--batch", "1...1000000"),
        Case("bench --dim beyond memory", "bench {D}/symbolic.onnx --dim h=1000000000000", "--dim h=1000000000000", "more than this machine's memory"),
        Case("inspect --dim beyond memory", "inspect {D}/symbolic.onnx --dim h=1000000000000", "too large", "model input 'x'"),
        // Graph structure, as onnx.checker sees it.
        Case("duplicate graph outputs", "inspect {D}/duplicate_graph_outputs.onnx", "graph output 'y' is declared twice"),
        Case("duplicate graph outputs (run)", "run {D}/duplicate_graph_outputs.onnx --input x={D}/x.npy", "declared twice"),
        Case("duplicate graph inputs", "inspect {D}/duplicate_inputs.onnx", "graph input 'x' is declared twice"),
        Case("two nodes write one value", "inspect {D}/two_writers.onnx", "'y' is written twice", "Relu node 'relu'"),
        Case("node lists an output twice", "inspect {D}/node_output_twice.onnx", "Split node 'split'", "twice"),
        Case("no graph outputs", "run {D}/no_outputs.onnx --input x={D}/x.npy", "no outputs"),
        Case("graph output never produced", "inspect {D}/output_not_produced.onnx", "'ghost'", "not produced"),
        Case("cycle", "inspect {D}/cycle.onnx", "cycle"),
        Case("initializer defined twice", "inspect {D}/duplicate_initializer.onnx", "initializer 'w' is defined twice"),
        Case("initializer type differs from input", "inspect {D}/initializer_type_mismatch.onnx", "'w'", "int64", "float32"),
        // External data: confined to the model's folder and to the file.
        Case("external data ../", "inspect {D}/external_dotdot.onnx", "escapes the model's folder"),
        Case("external data absolute path", "inspect {D}/external_absolute.onnx", "relative to the model's folder"),
        Case("external data symlink out", "inspect {D}/external_symlink.onnx", "outside the model's folder"),
        Case("external data past the end", "inspect {D}/external_past_end.onnx", "past the end"),
        Case("external data offset overflow", "inspect {D}/external_offset_overflow.onnx", "past the end"),
        Case("external data offset not a number", "inspect {D}/external_offset_garbage.onnx", "'12abc'"),
        Case("external data wrong length", "inspect {D}/external_length_wrong.onnx", "length 4"),
        Case("external data is a folder", "inspect {D}/external_folder.onnx", "is a folder"),
        // Threads.
        Case("--threads 65536 (run)", "run {D}/good.onnx --input x={D}/x.npy --threads 65536", "--threads 65536", "valid: 1..."),
        Case("--threads 1e12", "run {D}/good.onnx --input x={D}/x.npy --threads 1e12", "1e12", "--threads"),
        Case("--threads 2^32+1 (bench)", "bench {D}/good.onnx --threads 4294967297", "--threads", "valid: 1..."),
        Case("--threads 0 (quantize)", "quantize {D}/good.onnx --calib {D}/calib.npy --config w8a8 --threads 0 --out {OUT}", "--threads 0"),
        Case("--threads 65536 (search)", "search {D}/good.onnx --calib {D}/calib.npy --threads 65536 --out {OUT}", "--threads"),
        // Negative numbers parse as numbers and get a range error.
        Case("--threads -3", "run {D}/good.onnx --input x={D}/x.npy --threads -3", "--threads -3", "out of range"),
        Case("--batch -1", "bench {D}/good.onnx --batch -1", "--batch -1", "out of range"),
        Case("--repetitions -5", "bench {D}/good.onnx --repetitions -5", "--repetitions -5"),
        Case("--batch-size -2", "eval {D}/good.onnx --calib {D}/calib.npy --config w8a8 --batch-size -2", "--batch-size -2"),
        Case("--group-size -8", "quantize {D}/good.onnx --calib {D}/calib.npy --config w8a8 --group-size -8 --out {OUT}", "--group-size -8"),
        Case("--max-loss-mse -1", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --max-loss-mse -1 --out {OUT}", "--max-loss-mse", "out of range"),
        Case("--target-cost -0.5", "search {D}/good.onnx --calib {D}/calib.npy --target-cost -0.5 --out {OUT}", "--target-cost", "positive"),
        Case("--target-sqnr nan", "search {D}/good.onnx --calib {D}/calib.npy --target-sqnr nan --out {OUT}", "--target-sqnr", "finite"),
        Case("--projections -4", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --sweep --projections -4 --out {OUT}", "--projections -4"),
        // Sizes in option values.
        Case("--cache-memory overflow", "search {D}/good.onnx --calib {D}/calib.npy --cache-memory 10000000000GB --out {OUT}", "--cache-memory", "memory"),
        Case("--cache-memory garbage", "search {D}/good.onnx --calib {D}/calib.npy --cache-memory lots --out {OUT}", "--cache-memory lots"),
        // Enumerations list their valid values.
        Case("--weight-range percentile", "quantize {D}/good.onnx --calib {D}/calib.npy --config w8a8 --weight-range percentile --out {OUT}", "--weight-range 'percentile'", "minmax, mse"),
        Case("--activation-range bogus", "eval {D}/good.onnx --calib {D}/calib.npy --config w8a8 --activation-range p99", "'p99'", "--activation-range", "percentile"),
        Case("--weight-range bogus (search)", "search {D}/good.onnx --calib {D}/calib.npy --weight-range max --out {OUT}", "'max'", "--weight-range"),
        Case("--metric bogus", "search {D}/good.onnx --calib {D}/calib.npy --metric f1 --out {OUT}", "'f1'", "--metric", "sqnr"),
        Case("--objective bogus", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --sweep --objective speed --out {OUT}", "'speed'", "--objective", "latency"),
        Case("--latency-statistic bogus", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --sweep --latency-statistic mean --out {OUT}", "'mean'", "median"),
        Case("--loss bogus", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --sweep --loss l2 --out {OUT}", "'l2'", "--loss", "pseudo-label"),
        Case("--method bogus", "search {D}/good.onnx --calib {D}/calib.npy --method greedy --out {OUT}", "greedy"),
        Case("--budget bogus", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --sweep --budget power=3 --out {OUT}", "--budget power=3", "memory"),
        Case("--config preset bogus", "quantize {D}/good.onnx --calib {D}/calib.npy --config w9x --out {OUT}", "w9x"),
        Case("unknown option", "run {D}/good.onnx --input x={D}/x.npy --frobnicate", "--frobnicate"),
        // Method-specific options.
        Case("pareto with --max-loss-mse", "search {D}/good.onnx --calib {D}/calib.npy --max-loss-mse 0.1 --out {OUT}", "--max-loss-mse is a taylor-ip option", "pareto"),
        Case("pareto with --sweep", "search {D}/good.onnx --calib {D}/calib.npy --sweep --out {OUT}", "--sweep is a taylor-ip option"),
        Case("pareto with --validate", "search {D}/good.onnx --calib {D}/calib.npy --validate 3 --out {OUT}", "--validate is a taylor-ip option"),
        Case("pareto with --objective", "search {D}/good.onnx --calib {D}/calib.npy --objective memory --out {OUT}", "--objective is a taylor-ip option"),
        Case("pareto with --budget", "search {D}/good.onnx --calib {D}/calib.npy --budget bops=0.5 --out {OUT}", "--budget is a taylor-ip option"),
        Case("pareto with --loss", "search {D}/good.onnx --calib {D}/calib.npy --loss labels --out {OUT}", "--loss is a taylor-ip option"),
        Case("taylor-ip with --target-sqnr", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --target-sqnr 30 --out {OUT}", "--target-sqnr is a pareto option", "taylor-ip"),
        Case("taylor-ip with --max-drop", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --max-drop 1 --out {OUT}", "--max-drop is a pareto option"),
        Case("taylor-ip with --target-cost", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --target-cost 0.5 --out {OUT}", "--target-cost is a pareto option"),
        Case("taylor-ip with --metric", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --sweep --metric sqnr --out {OUT}", "--metric is a pareto option"),
        Case("taylor-ip without a target", "search {D}/good.onnx --calib {D}/calib.npy --method taylor-ip --out {OUT}", "--max-loss-mse"),
        // Labels.
        Case("float labels", "eval {D}/good.onnx --calib {D}/calib.npy --config w8a8 --labels {D}/labels_float.npy", "labels_float.npy", "float32", "integer"),
        Case("negative labels", "eval {D}/good.onnx --calib {D}/calib.npy --config w8a8 --labels {D}/labels_negative.npy", "label -1", "negative"),
        Case("labels out of range", "eval {M} --calib {D}/calib.npy --config w8a8 --labels {D}/labels_out_of_range.npy", "label 4000", "0...999"),
        Case("labels count", "eval {D}/good.onnx --calib {D}/calib.npy --config w8a8 --labels {D}/labels_count.npy", "2 labels", "for 4 calibration samples"),
        Case("labels out of range (search)", "search {M} --calib {D}/calib.npy --metric accuracy --labels {D}/labels_out_of_range.npy --out {OUT}", "label 4000"),
        // Configs.
        Case("config unknown key", "quantize {D}/good.onnx --calib {D}/calib.npy --config {D}/config_unknown_key.json --out {OUT}", "'weight_bits'", "valid keys"),
        Case("config unknown tensor", "quantize {D}/good.onnx --calib {D}/calib.npy --config {D}/config_unknown_tensor.json --out {OUT}", "'no_such_tensor'", "valid tensors"),
        // Inputs given twice, unknown dims.
        Case("--input twice", "run {D}/good.onnx --input x={D}/x.npy --input x={D}/x.npy", "--input x given twice"),
        Case("--input with --inputs", "run {D}/good.onnx --input x={D}/x.npy --inputs {D}/x.npz", "not both"),
        Case("bare --input twice", "run {D}/good.onnx --input {D}/x.npy --input {D}/x.npy", "given twice"),
        Case("unknown --dim (inspect)", "inspect {D}/symbolic.onnx --dim s=4", "no dim named 's'", "batch, h, w"),
        Case("unknown --dim (bench)", "bench {D}/good.onnx --dim s=4", "no dim named 's'"),
        Case("--dim twice", "inspect {D}/symbolic.onnx --dim h=4 --dim h=5", "--dim h given twice"),
        Case("--dim not a number", "inspect {D}/symbolic.onnx --dim h=-4", "--dim h=-4"),
        // Paths.
        Case("model is a directory", "run {D} --input x={D}/x.npy", "is a directory, expected an .onnx file"),
        Case("model is a directory (inspect)", "inspect {D}", "is a directory"),
        Case("--out is a file", "quantize {D}/good.onnx --calib {D}/calib.npy --config w8a8 --out {FILE}", "--out", "is a file, expected a folder"),
        Case("--out under a file", "quantize {D}/good.onnx --calib {D}/calib.npy --config w8a8 --out {FILE}/sub", "cannot create it", "is a file"),
        Case("--out is a file (search)", "search {D}/good.onnx --calib {D}/calib.npy --out {FILE}", "is a file, expected a folder"),
        Case("--out not creatable (/proc)", "quantize {D}/good.onnx --calib {D}/calib.npy --config w8a8 --out /proc/mpq-out", "--out /proc/mpq-out", "not writable"),
        Case("--out not creatable (search)", "search {D}/good.onnx --calib {D}/calib.npy --out /proc/mpq-out/deeper", "not writable"),
        Case("--output in an unwritable folder", "run {D}/good.onnx --input x={D}/x.npy --output /proc/out.npz", "--output", "not writable"),
        Case("--output is a folder", "run {D}/good.onnx --input x={D}/x.npy --output {D}", "--output", "is a folder"),
        Case("--cache is a file", "search {D}/good.onnx --calib {D}/calib.npy --cache {FILE} --out {OUT}", "--cache", "is a file"),
    ]

    /// The crafted files, made once per test process.
    static let fixtures: URL = {
        let folder = temporaryFolder("mpq-bad-input")
        let script = repositoryRoot.appendingPathComponent("Tests/Scripts/make_bad_models.py").path
        let venv = repositoryRoot.appendingPathComponent(".venv/bin/python").path
        let python = FileManager.default.isExecutableFile(atPath: venv) ? [venv] : ["/usr/bin/env", "python3"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python[0])
        process.arguments = Array(python.dropFirst()) + [script, folder.path]
        process.standardOutput = FileHandle.nullDevice
        try? process.run()
        process.waitUntilExit()
        // An .npz of the good input, and an ordinary file.
        if let x = try? NPY.read(contentsOf: folder.appendingPathComponent("x.npy").path) {
            try? NPZ.write(["x": x], to: folder.appendingPathComponent("x.npz").path)
        }
        try? Data("not a folder\n".utf8).write(to: folder.appendingPathComponent("plain.txt"))
        return folder
    }()

    static var mobileNet: String { repositoryRoot.appendingPathComponent("examples/mobilenetv2/mobilenetv2.onnx").path }

    /// How one run of the tool ended.
    struct Outcome {
        var status: Int32
        var signalled: Bool
        var timedOut: Bool
        var stdout: String
        var stderr: String
        var stderrLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }
    }

    /// Runs the built `mpq` with a watchdog: a run longer than `timeout` is killed and reported (generous:
    /// the cases run in parallel with the rest of the suite on 2 cores).
    static func run(_ arguments: [String], timeout: TimeInterval = 300) throws -> Outcome {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mpq")
        let candidates = [beside, repositoryRoot.appendingPathComponent(".build/debug/mpq")]
        guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw MPQError.fileNotFound("mpq executable next to the test bundle")
        }
        let logs = temporaryFolder("mpq-bad-input-logs")
        defer { try? FileManager.default.removeItem(at: logs) }
        let outPath = logs.appendingPathComponent("stdout"), errPath = logs.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: outPath.path, contents: nil)
        FileManager.default.createFile(atPath: errPath.path, contents: nil)
        let out = try FileHandle(forWritingTo: outPath), err = try FileHandle(forWritingTo: errPath)
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                process.terminate()
                process.waitUntilExit()
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Outcome(status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal,
                       timedOut: timedOut,
                       stdout: (try? String(contentsOf: outPath, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOf: errPath, encoding: .utf8)) ?? "")
    }

    @Test("the crafted good model runs (sanity)", .timeLimit(.minutes(6)))
    func goodModelRuns() throws {
        let d = Self.fixtures.path
        for arguments in [["run", "\(d)/good.onnx", "--input", "x=\(d)/x.npy"], ["inspect", "\(d)/external_good.onnx"],
                          ["run", "\(d)/symbolic.onnx", "--input", "x=\(d)/x.npy"]] {
            let result = try Self.run(arguments)
            #expect(result.status == 0 && !result.signalled, "\(arguments): \(result.stderr)")
        }
    }

    @Test("bad input: exit status, one line on stderr naming the cause, nothing written", .timeLimit(.minutes(6)),
          arguments: cases)
    func badInput(_ c: Case) throws {
        let fixtures = Self.fixtures
        let out = temporaryFolder("mpq-bad-input-out").appendingPathComponent("out")
        defer { try? FileManager.default.removeItem(at: out.deletingLastPathComponent()) }
        let arguments = c.arguments.map {
            $0.replacingOccurrences(of: "{D}", with: fixtures.path)
                .replacingOccurrences(of: "{OUT}", with: out.path)
                .replacingOccurrences(of: "{M}", with: Self.mobileNet)
                .replacingOccurrences(of: "{FILE}", with: fixtures.appendingPathComponent("plain.txt").path)
        }
        let result = try Self.run(arguments)
        #expect(!result.timedOut, "\(c.name): timed out")
        #expect(!result.signalled, "\(c.name): killed by signal \(result.status): \(result.stderr)")
        #expect(result.status != 0, "\(c.name): exit status 0; stdout: \(result.stdout)")
        #expect(result.stderrLines.count == 1, "\(c.name): expected one line on stderr, got:\n\(result.stderr)")
        for word in c.mentions {
            #expect(result.stderr.contains(word), "\(c.name): '\(word)' missing from: \(result.stderr)")
        }
        let written = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
        #expect(written.isEmpty, "\(c.name): wrote \(written) to --out")
    }

    /// A tampered, corrupt or foreign score cache is dropped with one warning and recomputed;
    /// the search still succeeds and chooses as with a fresh cache.
    @Test("tampered cache entries are dropped with a warning", .timeLimit(.minutes(5)))
    func tamperedCache() throws {
        let d = Self.fixtures.path
        let work = temporaryFolder("mpq-bad-cache")
        defer { try? FileManager.default.removeItem(at: work) }
        let cache = work.appendingPathComponent("cache").path
        func search(_ out: String) throws -> Outcome {
            try Self.run(["search", "\(d)/good.onnx", "--calib", "\(d)/calib.npy", "--cache", cache, "--target-sqnr", "30",
                          "--threads", "1", "--out", work.appendingPathComponent(out).path], timeout: 240)
        }
        let fresh = try search("fresh")
        #expect(fresh.status == 0 && !fresh.signalled, "\(fresh.stderr)")
        #expect(!fresh.stderr.contains("warning"))
        let chosen = fresh.stdout.split(separator: "\n").first { $0.hasPrefix("chosen:") }
        // The config a search writes passes the config-key check of `quantize --config`.
        let requantized = try Self.run(["quantize", "\(d)/good.onnx", "--calib", "\(d)/calib.npy", "--config",
                                        work.appendingPathComponent("fresh/config.json").path,
                                        "--out", work.appendingPathComponent("requantized").path])
        #expect(requantized.status == 0, "\(requantized.stderr)")
        let scores = try #require(FileManager.default.enumerator(atPath: cache)?.compactMap { $0 as? String }
            .first { $0.hasSuffix("scores.json") })
        let file = URL(fileURLWithPath: cache).appendingPathComponent(scores)
        let text = try String(contentsOf: file, encoding: .utf8)

        // A score edited to 1e308 and one to nan: both fail their checksums.
        var values = text.components(separatedBy: "\"value\" : \"")
        #expect(values.count > 2)
        for (index, replacement) in [(1, "1e308"), (2, "nan")] where index < values.count {
            let rest = values[index]
            values[index] = replacement + rest[rest.firstIndex(of: "\"")!...]
        }
        try values.joined(separator: "\"value\" : \"").write(to: file, atomically: true, encoding: .utf8)
        let tampered = try search("tampered")
        #expect(tampered.status == 0 && !tampered.signalled, "\(tampered.stderr)")
        let warnings = tampered.stderrLines.filter { $0.contains("warning") }
        #expect(warnings.count == 1 && warnings.first?.contains("checksum") == true, "\(tampered.stderr)")
        #expect(warnings.first?.contains("dropped 2 entries") == true, "\(tampered.stderr)")
        #expect(tampered.stdout.split(separator: "\n").first { $0.hasPrefix("chosen:") } == chosen)

        // Garbage instead of JSON.
        try Data("{{{ not json".utf8).write(to: file)
        let corrupt = try search("corrupt")
        #expect(corrupt.status == 0 && !corrupt.signalled, "\(corrupt.stderr)")
        #expect(corrupt.stderrLines.filter { $0.contains("warning") && $0.contains("corrupt") }.count == 1, "\(corrupt.stderr)")
        #expect(corrupt.stdout.split(separator: "\n").first { $0.hasPrefix("chosen:") } == chosen)

        // The next run trusts the rewritten file: no warning.
        let again = try search("again")
        #expect(again.status == 0 && !again.stderr.contains("warning"), "\(again.stderr)")
    }
}
