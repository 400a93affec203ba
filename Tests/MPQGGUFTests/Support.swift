import Foundation
import Testing
@testable import MPQGGUF

/// Root of the repository (Tests/MPQGGUFTests/Support.swift is three levels down).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A new empty folder under the system temporary directory.
func makeTemporaryFolder(_ prefix: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

struct ScriptFailure: Error, CustomStringConvertible {
    var description: String
}

/// The repository's virtual-environment Python (with numpy and gguf), else python3 on the PATH.
var pythonCommand: [String] {
    let venv = repoRoot.appendingPathComponent(".venv/bin/python")
    return FileManager.default.isExecutableFile(atPath: venv.path) ? [venv.path] : ["/usr/bin/env", "python3"]
}

/// Runs a program from the repository root; returns stdout, throws with stderr on failure.
@discardableResult
func runProgram(_ command: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: command[0])
    process.arguments = Array(command.dropFirst())
    process.currentDirectoryURL = repoRoot
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read stderr concurrently so a chatty process cannot block on a full pipe.
    nonisolated(unsafe) var errors = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errors = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let output = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ScriptFailure(description: "\(command.joined(separator: " ")) failed (\(process.terminationStatus)): \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: output, as: UTF8.self)
}

/// Runs Tests/Scripts/gguf_reference.py with `arguments`.
@discardableResult
func runReference(_ arguments: [String]) throws -> String {
    try runProgram(pythonCommand + ["Tests/Scripts/gguf_reference.py"] + arguments)
}

/// Float32 values of a raw little-endian file.
func readFloats(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return data.withUnsafeBytes { raw in
        (0 ..< data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
}

/// Writes float32 values as raw little-endian bytes.
func writeFloats(_ values: [Float], to url: URL) throws {
    try values.withUnsafeBytes { Data($0) }.write(to: url)
}

/// Deterministic generator for reproducible test inputs (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    mutating func normal() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne ..< 1, using: &self)
        let u2 = Double.random(in: 0 ..< 1, using: &self)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}

/// Rows with varied distributions (normal, scaled, positive, sparse, constant, outliers).
func sampleRows(rows: Int, length: Int, seed: UInt64) -> [Float] {
    var rng = SeededRandom(seed: seed)
    var out: [Float] = []
    out.reserveCapacity(rows * length)
    for r in 0..<rows {
        switch r % 6 {
        case 0: for _ in 0..<length { out.append(rng.normal()) }
        case 1: for _ in 0..<length { out.append(rng.normal() * 0.02) }
        case 2: for _ in 0..<length { out.append(Float.random(in: 0..<4, using: &rng)) }
        case 3:
            var row = [Float](repeating: 0, count: length)
            for _ in 0..<8 { row[Int.random(in: 0..<length, using: &rng)] = rng.normal() }
            out += row
        case 4:
            for _ in 0..<length { out.append(rng.normal() * 1e-3) }
            out[out.count - length + Int.random(in: 0..<length, using: &rng)] = 3
        default: for _ in 0..<length { out.append(rng.normal() * 40) }
        }
    }
    return out
}

/// Index and bits of the first element whose bit pattern differs, or nil when all match.
func firstBitDifference(_ a: [Float], _ b: [Float]) -> String? {
    guard a.count == b.count else { return "count \(a.count) vs \(b.count)" }
    for i in a.indices where a[i].bitPattern != b[i].bitPattern {
        return "element \(i): \(a[i]) (0x\(String(a[i].bitPattern, radix: 16))) vs \(b[i]) (0x\(String(b[i].bitPattern, radix: 16)))"
    }
    return nil
}

/// Index of the first differing byte and the count of differing bytes, or nil when equal.
func byteDifference(_ a: [UInt8], _ b: [UInt8]) -> String? {
    guard a.count == b.count else { return "size \(a.count) vs \(b.count)" }
    let diffs = a.indices.filter { a[$0] != b[$0] }
    guard let first = diffs.first else { return nil }
    return "\(diffs.count) of \(a.count) bytes differ, first at \(first): \(a[first]) vs \(b[first])"
}
