import Foundation

/// A llama.cpp importance matrix: per weight tensor, the sums of squared input activations per
/// column, as written by `llama-imatrix` and read by `llama-quantize --imatrix`.
///
/// Two file formats exist (tools/imatrix/imatrix.cpp, common/imatrix-loader.cpp):
/// - GGUF (current default): tensors `<name>.in_sum2` (F32, ne0 × n_mat, raw sums) and
///   `<name>.counts` (F32, 1 × n_mat, activation rows per matrix), metadata `general.type` =
///   "imatrix", `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`.
/// - legacy `.dat`: int32 entry count; per entry int32 name length, name, int32 ncall, int32 nval,
///   nval float32 values (already divided by the count and multiplied by ncall); then optionally
///   int32 chunk count, int32 dataset-name length and the dataset name.
public struct IMatrix: Equatable, Sendable {
    /// The two on-disk formats.
    public enum Format: Sendable { case gguf, legacy }

    /// One tensor's statistics.
    public struct Entry: Equatable, Sendable {
        /// GGUF: raw sums of squared activations, `counts.count` matrices of ne0 values each.
        /// Legacy: `(sum / count) × ncall` per value (counts = [ncall]).
        public var sums: [Float]
        /// GGUF: activation rows seen per matrix (one per expert for MoE tensors). Legacy: [ncall].
        public var counts: [Int64]

        /// An entry with these sums and counts (see the property docs for their meaning per format).
        public init(sums: [Float], counts: [Int64]) {
            self.sums = sums
            self.counts = counts
        }
    }

    /// The format the entries are expressed in (and written in by default).
    public var format: Format
    /// Entries by weight-tensor name, e.g. "blk.0.attn_q.weight".
    public var entries: [String: Entry]
    /// Names of the text files the statistics were computed on.
    public var datasets: [String]
    /// Number of chunks processed.
    public var chunkCount: Int32
    /// Tokens per chunk (GGUF only; 0 in legacy files).
    public var chunkSize: Int32

    /// An importance matrix built in memory (e.g. from activation statistics collected by mpq).
    public init(format: Format, entries: [String: Entry] = [:], datasets: [String] = [], chunkCount: Int32 = 0, chunkSize: Int32 = 0) {
        self.format = format
        self.entries = entries
        self.datasets = datasets
        self.chunkCount = chunkCount
        self.chunkSize = chunkSize
    }

    /// Reads either format (GGUF when the file starts with "GGUF", legacy otherwise).
    public init(contentsOf url: URL) throws {
        let data = try GGUFFile.mapped(url)
        if data.count >= 4 && data.prefix(4).elementsEqual(Array("GGUF".utf8)) {
            try self.init(gguf: GGUFFile(data: data, path: url.path))
        } else {
            try self.init(legacy: data, path: url.path)
        }
    }

    /// Extracts the importance matrix from a parsed GGUF imatrix file.
    public init(gguf file: GGUFFile) throws {
        format = .gguf
        datasets = []
        if case .array(.string(let names))? = file.metadata["imatrix.datasets"] { datasets = names.map(\.string) }
        func u32(_ key: String) throws -> Int32 {
            guard let v = file.metadata[key] else { return 0 }
            guard case .uint32(let x) = v else { throw GGUFError(.badValue, file: file.path, "'\(key)' must be uint32 but is \(v.type)") }
            return Int32(truncatingIfNeeded: x)
        }
        chunkCount = try u32("imatrix.chunk_count")
        chunkSize = try u32("imatrix.chunk_size")
        var sums: [String: GGUFTensorInfo] = [:], counts: [String: GGUFTensorInfo] = [:]
        for t in file.tensors {
            if t.name.hasSuffix(".in_sum2") { sums[String(t.name.dropLast(8))] = t }
            else if t.name.hasSuffix(".counts") { counts[String(t.name.dropLast(7))] = t }
        }
        entries = [:]
        for name in Set(sums.keys).union(counts.keys) {
            guard let s = sums[name], let c = counts[name] else {
                throw GGUFError(.badTensor, file: file.path, "imatrix entry '\(name)' has \(sums[name] == nil ? "no .in_sum2" : "no .counts") tensor")
            }
            guard s.type == .f32, c.type == .f32 else {
                throw GGUFError(.badTensor, file: file.path, "imatrix entry '\(name)': sums and counts must be F32")
            }
            guard c.elementCount > 0, s.elementCount % c.elementCount == 0 else {
                throw GGUFError(.badTensor, file: file.path, "imatrix entry '\(name)': \(s.elementCount) sums do not split into \(c.elementCount) matrices")
            }
            let countValues = try file.floats(c)
            entries[name] = Entry(sums: try file.floats(s), counts: countValues.map { v in
                // std::lround, without trapping on NaN or huge values.
                let r = v.rounded(.toNearestOrAwayFromZero)
                return r.isFinite && abs(r) < 9.2e18 ? Int64(r) : 0
            })
        }
    }

    /// Parses a legacy `.dat` file.
    public init(legacy data: Data, path: String = "") throws {
        format = .legacy
        entries = [:]
        datasets = []
        chunkCount = 0
        chunkSize = 0
        var pos = data.startIndex
        func int32(_ what: String) throws -> Int32 {
            guard data.endIndex - pos >= 4 else {
                throw GGUFError(.truncated, file: path, "truncated legacy imatrix: \(what) at offset \(pos - data.startIndex)")
            }
            var v: Int32 = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: data[pos ..< pos + 4]) }
            pos += 4
            return Int32(littleEndian: v)
        }
        func take(_ n: Int, _ what: String) throws -> Data {
            guard n >= 0, data.endIndex - pos >= n else {
                throw GGUFError(.absurdCount, file: path, "legacy imatrix: \(what) needs \(n) bytes but \(data.endIndex - pos) remain")
            }
            defer { pos += n }
            return data[pos ..< pos + n]
        }
        let n = try int32("entry count")
        guard n >= 1 else { throw GGUFError(.badValue, file: path, "legacy imatrix has \(n) entries (no data, or not an imatrix file)") }
        guard Int(n) <= (data.count - 4) / 12 else {
            throw GGUFError(.absurdCount, file: path, "legacy imatrix claims \(n) entries but has only \(data.count) bytes")
        }
        for i in 0..<Int(n) {
            let len = try int32("name length of entry \(i)")
            let nameBytes = try take(Int(len), "name of entry \(i)")
            guard let name = String(validating: Array(nameBytes), as: UTF8.self), !name.isEmpty else {
                throw GGUFError(.badName, file: path, "legacy imatrix entry \(i) has an empty or invalid name")
            }
            guard entries[name] == nil else { throw GGUFError(.duplicateKey, file: path, "legacy imatrix has entry '\(name)' twice") }
            let ncall = try int32("ncall of '\(name)'")
            let nval = try int32("value count of '\(name)'")
            guard nval >= 1 else { throw GGUFError(.badValue, file: path, "legacy imatrix entry '\(name)' has \(nval) values") }
            let raw = try take(Int(nval) * 4, "values of '\(name)'")
            let values = [Float](unsafeUninitializedCapacity: Int(nval)) { buffer, count in
                raw.withUnsafeBytes { r in
                    for j in 0..<Int(nval) {
                        buffer[j] = Float(bitPattern: UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)))
                    }
                }
                count = Int(nval)
            }
            entries[name] = Entry(sums: values, counts: [Int64(ncall)])
        }
        // Optional trailer: chunk count, then the dataset name.
        if data.endIndex - pos >= 4 {
            chunkCount = try int32("chunk count")
            if data.endIndex - pos >= 4 {
                let len = try int32("dataset name length")
                if len > 0, let bytes = try? take(Int(len), "dataset name") {
                    datasets = [String(decoding: bytes, as: UTF8.self)]
                }
            }
        }
    }

    /// The per-column weights llama-quantize passes to the quantisers for `tensor`
    /// (tools/quantize/quantize.cpp `load_imatrix`): GGUF sums divided by each matrix's count
    /// (1 where the count is 0); legacy values divided by ncall. nil when there is no entry.
    /// For MoE tensors the result holds one row of ne0 weights per expert.
    public func importance(for tensor: String) -> [Float]? {
        guard let e = entries[tensor] else { return nil }
        switch format {
        case .gguf:
            let ncounts = e.counts.count
            guard ncounts > 0 else { return e.sums }
            let ne0 = e.sums.count / ncounts
            var out = [Float](repeating: 0, count: e.sums.count)
            for j in 0..<ncounts {
                let count = Float(e.counts[j])
                for i in 0..<ne0 { out[j * ne0 + i] = count > 0 ? e.sums[j * ne0 + i] / count : 1 }
            }
            return out
        case .legacy:
            let ncall = e.counts.first ?? 0
            return ncall > 0 ? e.sums.map { $0 / Float(ncall) } : e.sums
        }
    }

    /// Writes the importance matrix in `format` (default: the one it is expressed in), atomically.
    ///
    /// Entries are written sorted by name, as llama-imatrix does. Converting GGUF statistics to the
    /// legacy format follows `save_imatrix_legacy` (needs `chunkSize` > 0); converting legacy to
    /// GGUF stores the legacy values as sums with their ncall as the count.
    public func write(to url: URL, format: Format? = nil) throws {
        switch format ?? self.format {
        case .gguf: try writeGGUF(to: url)
        case .legacy: try writeLegacy(to: url)
        }
    }

    private func writeGGUF(to url: URL) throws {
        var metadata = GGUFMetadata()
        metadata["general.type"] = .string("imatrix")
        metadata["imatrix.datasets"] = .array(.string(datasets.map { GGUFString($0) }))
        metadata["imatrix.chunk_count"] = .uint32(UInt32(bitPattern: chunkCount))
        metadata["imatrix.chunk_size"] = .uint32(UInt32(bitPattern: chunkSize))
        var tensors: [GGUFTensorInfo] = []
        var payload: [[Float]] = []
        // ggml_n_dims drops trailing dimensions of size 1.
        func dims(_ d: [Int]) -> [Int] { d.count > 1 && d.last == 1 ? Array(d.dropLast()) : d }
        for name in entries.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let e = entries[name]!
            let nmat = e.counts.count
            guard nmat > 0, !e.sums.isEmpty else { continue }
            guard e.sums.count % nmat == 0 else {
                throw GGUFError(.invalidArgument, file: url.path, "imatrix entry '\(name)': \(e.sums.count) sums do not split into \(nmat) matrices")
            }
            tensors.append(GGUFTensorInfo(name: name + ".in_sum2", dimensions: dims([e.sums.count / nmat, nmat]), type: .f32))
            payload.append(e.sums)
            tensors.append(GGUFTensorInfo(name: name + ".counts", dimensions: dims([1, nmat]), type: .f32))
            payload.append(e.counts.map { Float($0) })
        }
        try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors) { i in
            payload[i].withUnsafeBytes { Data($0) }
        }
    }

    private func writeLegacy(to url: URL) throws {
        var out = ByteWriter()
        var stored: [(String, Int32, [Float])] = []
        for name in entries.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let e = entries[name]!
            if format == .legacy {
                stored.append((name, Int32(truncatingIfNeeded: e.counts.first ?? 0), e.sums))
                continue
            }
            // save_imatrix_legacy: skip entries without data; values = (sum / count) * ncall.
            let nmat = e.counts.count
            guard nmat > 0, !e.sums.isEmpty, e.counts.contains(where: { $0 != 0 }) else { continue }
            guard chunkSize > 0 else {
                throw GGUFError(.invalidArgument, file: url.path, "converting to the legacy format needs a positive chunk size")
            }
            let maxCount = e.counts.max()!
            let ncall = Int32(truncatingIfNeeded: (maxCount + Int64(chunkSize) - 1) / Int64(chunkSize))
            let perMatrix = e.sums.count / nmat
            var values = [Float](repeating: 0, count: e.sums.count)
            for i in 0..<e.sums.count {
                var count = Float(e.counts[i / perMatrix])
                var value = e.sums[i]
                if count == 0 { value = 1; count = 1 }
                values[i] = (value / count) * Float(ncall)
            }
            stored.append((name, ncall, values))
        }
        out.int(Int32(stored.count))
        for (name, ncall, values) in stored {
            let bytes = Array(name.utf8)
            out.int(Int32(bytes.count))
            out.bytes.append(contentsOf: bytes)
            out.int(ncall)
            out.int(Int32(values.count))
            for v in values { out.int(v.bitPattern) }
        }
        out.int(chunkCount)
        let dataset = Array((datasets.last ?? "").utf8)
        out.int(Int32(dataset.count))
        out.bytes.append(contentsOf: dataset)
        try writeAtomically(Data(out.bytes), to: url)
    }
}

/// Writes `data` to a temporary file beside `url` and renames it into place.
func writeAtomically(_ data: Data, to url: URL) throws {
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    do {
        try data.write(to: temporary)
    } catch {
        throw GGUFError(.io, file: url.path, "cannot write: \(error.localizedDescription)")
    }
    guard rename(temporary.path, url.path) == 0 else {
        try? FileManager.default.removeItem(at: temporary)
        throw GGUFError(.io, file: url.path, "cannot rename temporary file into place: \(String(cString: strerror(errno)))")
    }
}
