import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch
import ONNXProto
import SwiftProtobuf
import ZIPFoundation

/// What the libFuzzer harness (`Sources/MPQFuzz`, `scripts/fuzz.sh`) runs on each input, kept in
/// the library so that the tests replay the seed corpus and every saved crash through the same
/// code without a sanitizer build (`Tests/MPQTests/FuzzRegressionTests.swift`).
///
/// Every entry point takes untrusted bytes and must return: errors thrown by the readers are the
/// expected outcome for most inputs and are swallowed; a trap, an overflow or a memory error is a bug.
public enum FuzzEntry {
    /// The parsers that are fuzzed. The raw value is the dispatch byte of a tagged input.
    public enum Target: UInt8, CaseIterable, Sendable, CustomStringConvertible {
        /// Protobuf decoding, import, validation and specialisation of an ONNX model.
        case onnx = 0
        /// A `.npy` file.
        case npy = 1
        /// A `.npz` archive.
        case npz = 2
        /// A GGUF file: header, metadata, every tensor's bytes, dequantisation of small tensors, tokenizer.
        case gguf = 3

        /// The target's name, as MPQ_FUZZ_TARGET and corpus folders spell it.
        public var description: String {
            switch self {
            case .onnx: return "onnx"
            case .npy: return "npy"
            case .npz: return "npz"
            case .gguf: return "gguf"
            }
        }

        /// The target called `name` (case-insensitive: onnx, npy, npz, gguf); nil for any other name.
        public init?(name: String) {
            guard let target = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
            self = target
        }
    }

    /// Leading dimension given to symbolic or unknown input axes when a model is specialised.
    public static let batch = 2
    /// Any other symbolic or unknown input axis.
    public static let otherDimension = 3
    /// Largest entry (in declared bytes) of an .npz input that the NPZ target reads.
    public static let maximumNPZEntryBytes = 1 << 22
    /// Largest tensor (in elements) that the GGUF target dequantises.
    public static let maximumDequantizedElements = 1 << 16

    /// Runs one input: the first byte picks the target (modulo the number of targets), the rest is
    /// that target's input. Empty input does nothing.
    @discardableResult
    public static func run(tagged input: Data) -> Bool {
        guard let tag = input.first else { return false }
        let target = Target.allCases[Int(tag) % Target.allCases.count]
        return run(target, input.dropFirst())
    }

    /// Runs `target` on `input`; true when the reader accepted it, false when it threw (as hostile input should).
    @discardableResult
    public static func run(_ target: Target, _ input: Data) -> Bool {
        (try? read(target, input)) != nil
    }

    /// Runs `target` on `input`, throwing the reader's error (tests show it; the fuzzer ignores it).
    public static func read(_ target: Target, _ input: Data) throws {
        let data = Data(input) // a slice's indices rebased to 0
        switch target {
        case .onnx: try onnx(data)
        case .npy: try npy(data)
        case .npz: try npz(data)
        case .gguf: try gguf(data)
        }
    }

    /// The target a corpus or regression file belongs to: the name of a folder on its path
    /// (`Fuzz/corpus/onnx/...`), else its extension; nil when neither names a target
    /// (such a file is a tagged input, see `run(tagged:)`).
    public static func target(forPath path: String) -> Target? {
        let url = URL(fileURLWithPath: path)
        for component in url.deletingLastPathComponent().pathComponents.reversed() {
            if let target = Target(name: component) { return target }
        }
        return Target(name: url.pathExtension)
    }

    /// Runs a file as `target(forPath:)` says (tagged when no target is named).
    @discardableResult
    public static func run(file path: String) throws -> Bool {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        if let target = target(forPath: path) { return run(target, data) }
        return run(tagged: data)
    }

    // MARK: - Targets

    static func onnx(_ data: Data) throws {
        let proto = try Onnx_ModelProto(serializedBytes: data)
        // No base directory: external data must not resolve against the fuzzer's working directory.
        let model = try Model(proto: proto, baseDirectory: nil)
        let session = try InferenceSession(model: model, options: SessionOptions(threads: 1))
        var shapes: [String: [Int]] = [:]
        for input in model.graph.inputs {
            shapes[input.name] = (input.shape ?? []).enumerated().map { axis, dim in
                if case .fixed(let n) = dim { return n }
                return axis == 0 ? batch : otherDimension
            }
        }
        let specialized = try session.specialize(inputShapes: shapes)
        _ = specialized.peakLiveBytes(outputs: model.graph.outputs.map(\.name),
                                      inputs: model.graph.inputs.map(\.name))
    }

    static func npy(_ data: Data) throws {
        let tensor = try NPY.decode(data, source: "fuzz.npy")
        // Round trip: what was read must be writable and read back the same.
        let again = try NPY.decode(try NPY.encode(tensor), source: "fuzz-roundtrip.npy")
        precondition(again.shape == tensor.shape && again.dtype == tensor.dtype, "NPY round trip changed \(tensor.dtype)\(tensor.shape) into \(again.dtype)\(again.shape)")
    }

    static func npz(_ data: Data) throws {
        // NPZ reads from a path (the zip reader seeks): one scratch file per call.
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("mpq-fuzz-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString).npz")
        try data.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        // NPZ.read reserves up to 1 GiB for an entry that declares it (and fails cleanly past the
        // machine's memory): correct, but under ASan every such input costs a second and its RSS
        // counts against libFuzzer's limit. Inputs declaring more than a few MiB are skipped.
        if let archive = try? Archive(url: url, accessMode: .read),
           archive.contains(where: { $0.uncompressedSize > UInt64(maximumNPZEntryBytes) }) {
            throw MPQError.limitExceeded("fuzz input declares an .npz entry over \(maximumNPZEntryBytes) bytes")
        }
        _ = try NPZ.read(contentsOf: url.path)
    }

    static func gguf(_ data: Data) throws {
        let file = try GGUFFile(data: data, path: "fuzz.gguf")
        for (_, value) in file.metadata {
            _ = value.stringValue
            _ = value.intValue
            _ = value.doubleValue
        }
        for tensor in file.tensors {
            // Every tensor's bytes, both ways the reader hands them out.
            var checksum: UInt8 = 0
            file.withTensorBytes(tensor) { for byte in $0 { checksum &+= byte } }
            let copy = file.tensorData(tensor)
            precondition(copy.count == tensor.byteCount, "tensor '\(tensor.name)': \(copy.count) bytes, declared \(tensor.byteCount)")
            if tensor.type.canDequantize, tensor.elementCount <= maximumDequantizedElements {
                _ = try? file.floats(tensor)
            }
        }
        if file.metadata.contains("tokenizer.ggml.model") {
            let tokenizer = try GGUFTokenizer(metadata: file.metadata)
            let ids = tokenizer.encode("Hello world! 123 <s> ünïcödé\n\t  done", parseSpecial: true)
            _ = tokenizer.decode(ids, special: true)
        }
    }
}
