import Foundation

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
        hash.update(Data("mpq-cache-entry\u{0}\(key)\u{0}\(name)\u{0}\(value)".utf8))
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
        func add(_ text: String) { hash.update(Data((text + "\u{0}").utf8)) }
        for node in graph.nodes {
            add("\(node.name)|\(node.opType)|\(node.domain)|\(node.inputs)|\(node.outputs)")
            for (name, value) in node.attributes.sorted(by: { $0.key < $1.key }) { add("\(name)=\(value)") }
        }
        for input in graph.inputs { add("input \(input.name) \(input.dtype)") }
        for output in graph.outputs { add("output \(output.name)") }
        for (name, tensor) in graph.initializers.sorted(by: { $0.key < $1.key }) {
            add("initializer \(name) \(tensor.dtype) \(tensor.shape)")
            let rowMajor = (try? tensor.rowMajor()) ?? tensor
            hash.update(UnsafeRawBufferPointer(start: rowMajor.rawPointer, count: rowMajor.byteCount))
        }
        for (name, tensor) in data.inputs.sorted(by: { $0.key < $1.key }) {
            add("data \(name) \(tensor.dtype) \(tensor.shape)")
            hash.update(UnsafeRawBufferPointer(start: tensor.rawPointer, count: tensor.byteCount))
        }
        if let labels { add("labels \(labels)") }
        settings.forEach(add)
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// SHA-256 (FIPS 180-4), streaming.
struct SHA256 {
    private var state: [UInt32] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        length &+= UInt64(bytes.count)
        var offset = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(start: base, count: take))
            offset = take
            if pending.count == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while bytes.count - offset >= 64 {
            compress(base + offset)
            offset += 64
        }
        if offset < bytes.count {
            pending.append(contentsOf: UnsafeRawBufferPointer(start: base + offset, count: bytes.count - offset))
        }
    }

    mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail: [UInt8] = [0x80]
        while (pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        let saved = length
        tail.withUnsafeBytes { update($0) }
        length = saved
        return state.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (24 - 8 * UInt32($0))) } }
    }

    private mutating func compress(_ block: UnsafeRawPointer) {
        var w = [UInt32](repeating: 0, count: 64)
        w.withUnsafeMutableBufferPointer { w in
            for i in 0..<16 {
                let p = block + 4 * i
                w[i] = UInt32(p.load(fromByteOffset: 0, as: UInt8.self)) << 24 | UInt32(p.load(fromByteOffset: 1, as: UInt8.self)) << 16
                    | UInt32(p.load(fromByteOffset: 2, as: UInt8.self)) << 8 | UInt32(p.load(fromByteOffset: 3, as: UInt8.self))
            }
            for i in 16..<64 {
                let s0 = rotate(w[i - 15], 7) ^ rotate(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotate(w[i - 2], 17) ^ rotate(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, h) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
            Self.k.withUnsafeBufferPointer { k in
                for i in 0..<64 {
                    let t1 = h &+ (rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                    let t2 = (rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                    (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
                }
            }
            state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
            state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
        }
    }

    @inline(__always) private func rotate(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
}
