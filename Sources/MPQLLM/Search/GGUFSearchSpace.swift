import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// The choices of a per-tensor ggml-type search over a GGUF decoder: groups of weight matrices
/// that take one type together, the types each group may take, and the exact bytes of the GGUF
/// file every choice writes.
///
/// - Groups: every 2-D weight tensor (norms and other 1-D tensors keep their type), one group
///   per tensor unless the caller ties several (e.g. all `ffn_down` of a layer) into one.
/// - Candidates: the requested types, each mapped through llama.cpp's shape fallback
///   (`tensor_type_fallback` in llama-quant.cpp: a row length that is not a multiple of the
///   type's block size demotes q2_K/q3_K to q4_0, q4_K to q5_0, q5_K to q5_1, q6_K to q8_0, and
///   to f16 when even that does not fit); duplicates after the fallback are dropped and the
///   fallbacks reported in `notes`.
/// - Cost: the bytes of the written file (header, metadata and tensor infos padded to the
///   alignment, then every tensor's data padded to the alignment), and bits per weight as
///   llama.cpp prints them (8 x tensor data bytes / weights, all tensors).
public struct GGUFSearchSpace: Sendable {
    /// One candidate type of a group.
    public struct Candidate: Sendable, Equatable {
        /// The type asked for.
        public var requested: GGMLType
        /// The type written (after llama.cpp's shape fallback).
        public var type: GGMLType
        /// Data bytes of the group's tensors in this type (unpadded).
        public var dataBytes: Int
        /// File bytes of the group's tensors in this type (each padded to the alignment).
        public var fileBytes: Int
    }

    /// Tensors that take one type together.
    public struct Group: Sendable {
        /// The tensor's name, or the tied tensors' names joined by "+".
        public var name: String
        /// GGUF names of the group's tensors.
        public var tensors: [String]
        /// Weights in the group's tensors.
        public var elements: Int
        /// Layer of the group's tensors (nil for token_embd; `layers` for the output head).
        public var layer: Int?
        /// Candidates by increasing bytes.
        public var candidates: [Candidate]
    }

    /// The searched groups, in the order of their first tensor in the file.
    public let groups: [Group]
    /// Tensor index in the source file of each group's tensors.
    public let tensorIndex: [String: Int]
    /// File bytes that no choice changes: the padded header and the padded data of fixed tensors.
    public let fixedFileBytes: Int
    /// Data bytes of the fixed tensors (for bits per weight).
    public let fixedDataBytes: Int
    /// Weights of the whole model (every tensor).
    public let totalElements: Int
    /// The header (metadata as it will be written, tensor infos), padded to the alignment.
    public let headerBytes: Int
    /// Data alignment of the file in bytes (`general.alignment`, default GGUF's 32).
    public let alignment: Int
    /// Lines about the space (fallbacks, tied groups).
    public let notes: [String]

    /// The types tried by default: the K-quants, q8_0 and f16.
    public static let defaultTypes: [GGMLType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_0, .f16]

    /// llama.cpp's `tensor_type_fallback` for a row of `rowLength` values.
    public static func fallback(_ type: GGMLType, rowLength: Int) -> GGMLType {
        guard rowLength % type.blockSize != 0 else { return type }
        var next: GGMLType
        switch type {
        case .iq1_s, .iq1_m, .iq2_xxs, .iq2_xs, .iq2_s, .iq3_xxs, .iq3_s, .iq4_xs: next = .iq4_nl
        case .q2_0, .q2_K, .q3_K, .tq1_0, .tq2_0: next = .q4_0
        case .q4_K: next = .q5_0
        case .q5_K: next = .q5_1
        case .q6_K: next = .q8_0
        default: next = type
        }
        return rowLength % next.blockSize == 0 ? next : .f16
    }

    /// - Parameters:
    ///   - file: the base model.
    ///   - metadata: the metadata the written file will hold (its size enters the header bytes).
    ///   - types: candidate types (those `GGMLQuants` can write).
    ///   - tied: groups of tensor names that take one type together (each name at most once).
    ///   - include: the 2-D tensors to search (default all); the others keep their type.
    public init(file: GGUFFile, metadata: GGUFMetadata, types: [GGMLType] = GGUFSearchSpace.defaultTypes,
                tied: [[String]] = [], include: ((String) -> Bool)? = nil) throws {
        guard !types.isEmpty else { throw MPQError.invalidInput("no candidate types given") }
        for type in types where !type.canQuantize {
            throw MPQError.invalidInput("type \(type.name) cannot be written by mpq (supported: "
                                        + GGMLType.arithmeticTypes.map(\.name).sorted().joined(separator: ", ") + ")")
        }
        var alignment = GGUFFile.defaultAlignment
        if case .uint32(let a)? = metadata[GGUFKey.alignment] { alignment = Int(a) }
        self.alignment = alignment
        func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
        let layers = metadata[GGUFKey.architecture]?.stringValue.flatMap { metadata["\($0).block_count"]?.intValue } ?? 0
        var index: [String: Int] = [:]
        for (i, t) in file.tensors.enumerated() { index[t.name] = i }
        let searchable = file.tensors.filter { $0.dimensions.count == 2 && $0.type.canDequantize && (include?($0.name) ?? true) }
        guard !searchable.isEmpty else { throw MPQError.invalidInput("no 2-D weight tensor to search") }
        var tiedOf: [String: Int] = [:]
        for (g, names) in tied.enumerated() {
            for name in names {
                guard let info = index[name].map({ file.tensors[$0] }) else { throw MPQError.invalidInput("tied group names no tensor '\(name)'") }
                guard info.dimensions.count == 2 else { throw MPQError.invalidInput("tied tensor '\(name)' is not a 2-D weight") }
                guard tiedOf[name] == nil else { throw MPQError.invalidInput("tensor '\(name)' is in two tied groups") }
                tiedOf[name] = g
            }
        }
        var notes: [String] = []
        var members: [[GGUFTensorInfo]] = []
        var tiedSlot: [Int: Int] = [:]
        for info in searchable {
            if let g = tiedOf[info.name] {
                if let slot = tiedSlot[g] { members[slot].append(info) } else { tiedSlot[g] = members.count; members.append([info]) }
            } else {
                members.append([info])
            }
        }
        func layerOf(_ name: String) -> Int? {
            if name.hasPrefix("blk.") { return Int(name.dropFirst(4).prefix { $0.isNumber }) }
            if name == "output.weight" { return layers }
            return nil
        }
        var groups: [Group] = []
        var reported = Set<String>()
        for tensors in members {
            var candidates: [Candidate] = []
            for requested in types {
                var data = 0, bytes = 0
                var effective = requested
                for t in tensors {
                    let type = Self.fallback(requested, rowLength: t.rowLength)
                    if type != requested, reported.insert("\(t.name) \(requested.name)").inserted {
                        notes.append("\(t.name): row length \(t.rowLength) is not a multiple of \(requested.blockSize); "
                                     + "\(requested.name) falls back to \(type.name) (llama.cpp's fallback)")
                    }
                    effective = type
                    let n = type.byteCount(elements: t.elementCount) ?? 0
                    data += n
                    bytes += padded(n)
                }
                let candidate = Candidate(requested: requested, type: effective, dataBytes: data, fileBytes: bytes)
                if !candidates.contains(where: { $0.type == effective }) { candidates.append(candidate) }
            }
            candidates.sort { ($0.fileBytes, $0.dataBytes) < ($1.fileBytes, $1.dataBytes) }
            let layerSet = Set(tensors.map { layerOf($0.name) })
            let layer: Int? = layerSet.contains(nil) ? nil : layerSet.compactMap { $0 }.min()
            let name = tensors.count == 1 ? tensors[0].name : tensors.map(\.name).joined(separator: "+")
            groups.append(Group(name: name, tensors: tensors.map(\.name), elements: tensors.reduce(0) { $0 + $1.elementCount },
                                layer: layer, candidates: candidates))
        }
        if !tied.isEmpty { notes.append("\(tied.count) tied group(s) of tensors take one type each") }
        let grouped = Set(groups.flatMap(\.tensors))
        var fixedData = 0, fixedFile = 0
        for t in file.tensors where !grouped.contains(t.name) {
            fixedData += t.byteCount
            fixedFile += padded(t.byteCount)
        }
        headerBytes = padded(Self.headerSize(metadata: metadata, tensors: file.tensors))
        fixedDataBytes = fixedData
        fixedFileBytes = headerBytes + fixedFile
        totalElements = file.tensors.reduce(0) { $0 + $1.elementCount }
        tensorIndex = index
        self.groups = groups
        self.notes = notes
    }

    /// Bytes of the GGUF header (magic to the last tensor info), unpadded.
    static func headerSize(metadata: GGUFMetadata, tensors: [GGUFTensorInfo]) -> Int {
        func arraySize(_ array: GGUFArray) -> Int {
            switch array {
            case .string(let items): return items.reduce(0) { $0 + 8 + $1.bytes.count }
            case .array(let items): return items.reduce(0) { $0 + 4 + 8 + arraySize($1) }
            default: return array.count * (array.elementType.fixedSize ?? 0)
            }
        }
        func valueSize(_ value: GGUFValue) -> Int {
            switch value {
            case .string(let s): return 8 + s.bytes.count
            case .array(let a): return 4 + 8 + arraySize(a)
            default: return value.type.fixedSize ?? 0
            }
        }
        var size = 4 + 4 + 8 + 8
        for (key, value) in metadata { size += 8 + key.utf8.count + 4 + valueSize(value) }
        for t in tensors { size += 8 + t.name.utf8.count + 4 + 8 * t.dimensions.count + 4 + 8 }
        return size
    }

    /// Exact bytes of the file written for `choice` (candidate index per group).
    public func fileBytes(_ choice: [Int]) -> Int {
        zip(groups, choice).reduce(fixedFileBytes) { $0 + $1.0.candidates[$1.1].fileBytes }
    }

    /// llama.cpp's bits per weight of `choice`: 8 x tensor data bytes / weights.
    public func bitsPerWeight(_ choice: [Int]) -> Double {
        let data = zip(groups, choice).reduce(fixedDataBytes) { $0 + $1.0.candidates[$1.1].dataBytes }
        return Double(data) * 8 / Double(max(totalElements, 1))
    }

    /// Every group at its cheapest candidate.
    public var smallest: [Int] { groups.map { _ in 0 } }
    /// Every group at its most expensive candidate.
    public var largest: [Int] { groups.map { $0.candidates.count - 1 } }

    /// The candidate index of `type` (after fallback) in every group, nil when some group lacks it.
    public func uniform(_ type: GGMLType) -> [Int]? {
        var choice: [Int] = []
        for group in groups {
            guard let i = group.candidates.firstIndex(where: { $0.requested == type || $0.type == type }) else { return nil }
            choice.append(i)
        }
        return choice
    }

    /// The type each tensor takes under `choice`.
    public func types(_ choice: [Int]) -> [String: GGMLType] {
        var types: [String: GGMLType] = [:]
        for (group, c) in zip(groups, choice) { for t in group.tensors { types[t] = group.candidates[c].type } }
        return types
    }
}

/// What a search must meet: a file size, a bits-per-weight figure, or a mean KL divergence.
public enum GGUFSearchTarget: Sendable, Equatable, CustomStringConvertible {
    /// The written file has at most this many bytes.
    case fileBytes(Int)
    /// llama.cpp's bits per weight (8 x tensor data bytes / weights) is at most this.
    case bitsPerWeight(Double)
    /// The measured mean KL divergence from the base model on the calibration chunks, in nats, is at most this.
    case maxKLD(Double)

    /// The target as reports print it, e.g. "file size <= 90000000 bytes".
    public var description: String {
        switch self {
        case .fileBytes(let b): return "file size <= \(b) bytes"
        case .bitsPerWeight(let b): return String(format: "<= %.4f bits per weight", b)
        case .maxKLD(let k): return "mean KLD <= \(k)"
        }
    }

    /// Whether `choice` meets a size target (always true for a KLD target).
    public func fits(_ choice: [Int], in space: GGUFSearchSpace) -> Bool {
        switch self {
        case .fileBytes(let b): return space.fileBytes(choice) <= b
        case .bitsPerWeight(let b): return space.bitsPerWeight(choice) <= b + 1e-12
        case .maxKLD: return true
        }
    }

    /// Throws, naming the reachable range, when no choice of `space` can meet the target, or the
    /// target is above the largest choice (nothing to search).
    public func check(in space: GGUFSearchSpace) throws {
        let low = space.smallest, high = space.largest
        switch self {
        case .fileBytes(let b):
            let range = "reachable: \(space.fileBytes(low)) to \(space.fileBytes(high)) bytes"
            guard b >= space.fileBytes(low) else { throw MPQError.invalidInput("target size \(b) bytes is below the smallest mix (\(range))") }
            guard b <= space.fileBytes(high) else { throw MPQError.invalidInput("target size \(b) bytes is above the largest mix (\(range))") }
        case .bitsPerWeight(let b):
            let range = String(format: "reachable: %.4f to %.4f bits per weight", space.bitsPerWeight(low), space.bitsPerWeight(high))
            guard b.isFinite, b >= space.bitsPerWeight(low) - 1e-12 else {
                throw MPQError.invalidInput(String(format: "target %.4f bits per weight is below the smallest mix (", b) + range + ")")
            }
            guard b <= space.bitsPerWeight(high) + 1e-12 else {
                throw MPQError.invalidInput(String(format: "target %.4f bits per weight is above the largest mix (", b) + range + ")")
            }
        case .maxKLD(let k):
            guard k.isFinite, k > 0 else { throw MPQError.invalidInput("--max-kld must be a positive number, got \(k)") }
        }
    }

    /// Bytes from text: a plain integer, or a number with B, KB, MB, GB (powers of 1000) or
    /// KiB, MiB, GiB (powers of 1024), e.g. "90MB", "6985056", "6.5MiB".
    public static func parseSize(_ text: String) throws -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824),
                                         ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("B", 1)]
        var number = trimmed, scale = 1.0
        for (suffix, factor) in units where trimmed.uppercased().hasSuffix(suffix) {
            number = String(trimmed.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value > 0, value * scale < 1e15 else {
            throw MPQError.invalidInput("cannot read size '\(text)' (e.g. 6985056, 90MB, 6.5MiB)")
        }
        return Int((value * scale).rounded(.down))
    }
}
