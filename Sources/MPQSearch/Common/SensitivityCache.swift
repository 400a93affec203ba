import Crypto
import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// Scores of phase-1 and phase-3 evaluations on disk, so that a killed search
/// resumes where it stopped. One folder per search key: the SHA-256 of the
/// model (nodes and initializer bytes), the calibration data, the hardware
/// profile, the candidates and every setting that changes a score; its
/// `scores.json` is rewritten atomically after each evaluation.
///
/// The file is not trusted: it names the key it answers, and every entry
/// carries a checksum (SHA-256 of the key, the entry's name and its value
/// text, first 16 bytes in hex). Entries whose checksum does not match, whose
/// value does not parse or is not acceptable (NaN always; the caller's
/// `accepts` otherwise), and files for another key or in an older format, are
/// dropped with one warning line on standard error and recomputed. (A
/// checksum detects corruption and edits, not a forger who recomputes it.)
public final class SensitivityCache: @unchecked Sendable {
    /// The folder of this key (also holds spilled activations).
    public let folder: URL
    /// The search key (hex SHA-256) this cache answers for; also the folder's name.
    public let key: String
    private var scores: [String: Double]
    private let lock = NSLock()
    /// Entries dropped when the file was read (corrupt, tampered or unacceptable).
    public private(set) var droppedEntries = 0

    /// On-disk layout of scores.json.
    private struct File: Codable {
        struct Entry: Codable {
            var value: String
            var checksum: String
        }
        var key: String
        var entries: [String: Entry]
    }

    /// Opens (or creates) the cache for `key` under `root`; `accepts` says which
    /// stored values are plausible (NaN is never accepted).
    public init(root: URL, key: String, accepts: @escaping (Double) -> Bool = { $0 != -.infinity }) throws {
        self.key = key
        folder = root.appendingPathComponent(key)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw MPQError.io("cannot create cache folder \(folder.path): \(error.localizedDescription)")
        }
        var scores: [String: Double] = [:]
        let file = folder.appendingPathComponent("scores.json")
        var problem: String?
        var dropped = 0
        if let data = FileManager.default.contents(atPath: file.path) {
            if let stored = try? JSONDecoder().decode(File.self, from: data) {
                if stored.key != key {
                    dropped = stored.entries.count
                    problem = "it names key \(stored.key.prefix(16))..., not this folder's"
                } else {
                    for (name, entry) in stored.entries.sorted(by: { $0.key < $1.key }) {
                        // Scores are stored as text so that infinite SQNRs survive JSON.
                        guard entry.checksum == Self.checksum(key: key, name: name, value: entry.value) else {
                            dropped += 1
                            problem = problem ?? "entry '\(name)' fails its checksum"
                            continue
                        }
                        guard let value = Double(entry.value), !value.isNaN, accepts(value) else {
                            dropped += 1
                            problem = problem ?? "entry '\(name)' holds an implausible value \(entry.value)"
                            continue
                        }
                        scores[name] = value
                    }
                }
            } else if let legacy = try? JSONDecoder().decode([String: String].self, from: data) {
                dropped = legacy.count
                problem = "it is in an older format without checksums"
            } else {
                problem = "it is not a valid cache file (corrupt JSON)"
                dropped = -1
            }
        }
        if let problem {
            let what = dropped < 0 ? "ignored the file" : "dropped \(dropped) entr\(dropped == 1 ? "y" : "ies")"
            let message = "warning: cache \(file.path): \(problem); \(what), recomputing what is needed\n"
            FileHandle.standardError.write(Data(message.utf8))
        }
        self.scores = scores
        droppedEntries = max(dropped, 0)
    }

    /// First 16 bytes (hex) of SHA-256 over the key, the name and the value text.
    static func checksum(key: String, name: String, value: String) -> String {
        var hash = SHA256()
        hash.update(data: Data("mpq-cache-entry\u{0}\(key)\u{0}\(name)\u{0}\(value)".utf8))
        return hash.finalize().prefix(16).map { String(format: "%02x", $0) }.joined()
    }

    /// The default root: $XDG_CACHE_HOME/mpq or ~/.cache/mpq.
    public static var defaultRoot: URL {
        if let xdg = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("mpq")
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/mpq")
    }

    /// Number of stored scores.
    public var count: Int { lock.withLock { scores.count } }

    /// The stored score for entry `name` (e.g. a group-candidate pair), or nil when not yet computed.
    public func score(_ name: String) -> Double? { lock.withLock { scores[name] } }

    /// Stores a score and rewrites scores.json atomically.
    public func store(_ name: String, _ value: Double) throws { try store([name: value]) }

    /// Stores several scores with one rewrite of scores.json.
    public func store(_ values: [String: Double]) throws {
        let data: Data = try lock.withLock {
            scores.merge(values) { $1 }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            var entries: [String: File.Entry] = [:]
            for (name, value) in scores {
                let text = String(value)
                entries[name] = File.Entry(value: text, checksum: Self.checksum(key: key, name: name, value: text))
            }
            return try encoder.encode(File(key: key, entries: entries))
        }
        try AtomicFile.write(data, to: folder.appendingPathComponent("scores.json").path)
    }

    /// SHA-256 (hex) of everything that determines the scores of a search.
    public static func key(graph: Graph, data: CalibrationData, labels: [Int]?, settings: [String]) -> String {
        var hash = SHA256()
        func add(_ text: String) { hash.update(data: Data((text + "\u{0}").utf8)) }
        for node in graph.nodes {
            add("\(node.name)|\(node.opType)|\(node.domain)|\(node.inputs)|\(node.outputs)")
            for (name, value) in node.attributes.sorted(by: { $0.key < $1.key }) { add("\(name)=\(value)") }
        }
        for input in graph.inputs { add("input \(input.name) \(input.dtype)") }
        for output in graph.outputs { add("output \(output.name)") }
        for (name, tensor) in graph.initializers.sorted(by: { $0.key < $1.key }) {
            add("initializer \(name) \(tensor.dtype) \(tensor.shape)")
            let rowMajor = (try? tensor.rowMajor()) ?? tensor
            hash.update(bufferPointer: UnsafeRawBufferPointer(start: rowMajor.rawPointer, count: rowMajor.byteCount))
        }
        for (name, tensor) in data.inputs.sorted(by: { $0.key < $1.key }) {
            add("data \(name) \(tensor.dtype) \(tensor.shape)")
            hash.update(bufferPointer: UnsafeRawBufferPointer(start: tensor.rawPointer, count: tensor.byteCount))
        }
        if let labels { add("labels \(labels)") }
        settings.forEach(add)
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
