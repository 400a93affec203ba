import Foundation

/// Writes GGUF files in the standard layout that gguf-py's GGUFWriter and llama.cpp's
/// `gguf_write_to_file` produce: header, metadata in the given order, tensor infos, zero padding
/// to the alignment, then each tensor's data in info order, each padded with zeros to the alignment.
public enum GGUFWriter {
    /// Writes a GGUF file to `url`, streaming tensor data one tensor at a time.
    ///
    /// The file is written to a temporary file in the destination folder and renamed over `url`
    /// only when complete, so readers never see a partial file and a failure leaves `url` as it was.
    /// Tensor offsets in `tensors` are ignored and recomputed (packed, aligned).
    ///
    /// - Parameters:
    ///   - url: the file written (replaced atomically when it exists).
    ///   - metadata: key/value pairs written in this order; `general.alignment` (uint32) sets the alignment.
    ///   - tensors: names, dimensions (ne0 first) and types, in the order their data is written.
    ///   - version: format version written in the header (3, or 2 to reproduce a v2 file).
    ///   - tensorData: called once per tensor, in order, with its index; must return exactly
    ///     `tensors[i].byteCount` bytes. Only one tensor's data need be in memory at a time.
    public static func write(to url: URL, metadata: GGUFMetadata, tensors: [GGUFTensorInfo], version: UInt32 = 3,
                             tensorData: (Int) throws -> Data) throws {
        let path = url.path
        guard version == 2 || version == 3 else {
            throw GGUFError(.invalidArgument, file: path, "cannot write GGUF version \(version) (only 2 and 3)")
        }
        var alignment = GGUFFile.defaultAlignment
        if let value = metadata[GGUFKey.alignment] {
            guard case .uint32(let a) = value, a != 0, a & (a - 1) == 0 else {
                throw GGUFError(.badAlignment, file: path, "'\(GGUFKey.alignment)' must be a uint32 power of two, got \(value)")
            }
            alignment = Int(a)
        }
        for key in metadata.keys where key.isEmpty {
            throw GGUFError(.badName, file: path, "metadata key is empty")
        }
        // Validate tensors and compute packed offsets.
        var names = Set<String>()
        var offsets: [Int] = []
        var next = 0
        for t in tensors {
            guard !t.name.isEmpty else { throw GGUFError(.badName, file: path, "tensor name is empty") }
            // llama.cpp stores names in GGML_MAX_NAME (64) bytes including the terminator and refuses longer ones.
            guard t.name.utf8.count < GGUFWriter.maxTensorNameBytes else {
                throw GGUFError(.badName, file: path, "tensor name '\(t.name)' is \(t.name.utf8.count) bytes; llama.cpp accepts at most \(GGUFWriter.maxTensorNameBytes - 1)")
            }
            guard names.insert(t.name).inserted else { throw GGUFError(.duplicateTensor, file: path, "duplicate tensor name '\(t.name)'") }
            guard (1...4).contains(t.dimensions.count) else {
                throw GGUFError(.tooManyDimensions, file: path, "tensor '\(t.name)' has \(t.dimensions.count) dimensions (must be 1 to 4)")
            }
            guard t.dimensions.allSatisfy({ $0 > 0 }) else {
                throw GGUFError(.badDimension, file: path, "tensor '\(t.name)' has dimensions \(t.dimensions) (must be positive)")
            }
            var elements = 1
            for d in t.dimensions {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw GGUFError(.sizeOverflow, file: path, "tensor '\(t.name)' element count overflows") }
                elements = p
            }
            guard t.dimensions[0] % t.type.blockSize == 0 else {
                throw GGUFError(.notBlockMultiple, file: path, "tensor '\(t.name)' of type \(t.type.name) has ne0 = \(t.dimensions[0]), not a multiple of \(t.type.blockSize)")
            }
            guard let bytes = t.type.byteCount(elements: elements),
                  case let (end, o) = next.addingReportingOverflow(bytes), !o,
                  let padded = alignUp(end, alignment) else {
                throw GGUFError(.sizeOverflow, file: path, "tensor '\(t.name)' size overflows")
            }
            offsets.append(next)
            next = padded
        }

        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw GGUFError(.io, file: path, "cannot create temporary file in \(folder.path)")
        }
        var done = false
        defer { if !done { try? FileManager.default.removeItem(at: temporary) } }
        let out: BufferedOutput
        do {
            out = try BufferedOutput(FileHandle(forWritingTo: temporary), path: path)
        } catch {
            throw GGUFError(.io, file: path, "cannot open temporary file: \(error.localizedDescription)")
        }
        defer { try? out.handle.close() }

        var header = ByteWriter()
        header.u32(GGUFFile.magic)
        header.u32(version)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(metadata.count))
        for (key, value) in metadata {
            header.string(Array(key.utf8))
            header.u32(value.type.rawValue)
            header.value(value)
        }
        for (t, offset) in zip(tensors, offsets) {
            header.string(Array(t.name.utf8))
            header.u32(UInt32(t.dimensions.count))
            for d in t.dimensions { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
        }
        let headerSize = header.bytes.count
        header.bytes.append(contentsOf: repeatElement(0, count: (alignUp(headerSize, alignment) ?? headerSize) - headerSize))
        try out.write(header.bytes)

        for (i, t) in tensors.enumerated() {
            let bytes = try tensorData(i)
            guard bytes.count == t.byteCount else {
                throw GGUFError(.invalidArgument, file: path, "tensor '\(t.name)' data is \(bytes.count) bytes, expected \(t.byteCount)")
            }
            try out.write(bytes)
            let pad = (alignUp(bytes.count, alignment) ?? bytes.count) - bytes.count
            if pad > 0 { try out.write([UInt8](repeating: 0, count: pad)) }
        }
        try out.flush()
        do {
            try out.handle.synchronize()
        } catch {
            throw GGUFError(.io, file: path, "cannot flush: \(error.localizedDescription)")
        }
        guard rename(temporary.path, url.path) == 0 else {
            throw GGUFError(.io, file: path, "cannot rename temporary file into place: \(String(cString: strerror(errno)))")
        }
        done = true
    }

    /// GGML_MAX_NAME: llama.cpp's limit on tensor-name bytes, including the NUL terminator.
    public static let maxTensorNameBytes = 64

    /// `x` rounded up to a multiple of `alignment` (a power of two), or nil on overflow.
    static func alignUp(_ x: Int, _ alignment: Int) -> Int? {
        let (s, o) = x.addingReportingOverflow(alignment - 1)
        return o ? nil : s & ~(alignment - 1)
    }
}

/// Little-endian serialisation of GGUF header structures into a byte array.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func int<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func u32(_ v: UInt32) { int(v) }
    mutating func u64(_ v: UInt64) { int(v) }
    mutating func string(_ s: [UInt8]) {
        u64(UInt64(s.count))
        bytes.append(contentsOf: s)
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case .uint8(let x): int(x)
        case .int8(let x): int(x)
        case .uint16(let x): int(x)
        case .int16(let x): int(x)
        case .uint32(let x): int(x)
        case .int32(let x): int(x)
        case .uint64(let x): int(x)
        case .int64(let x): int(x)
        case .float32(let x): int(x.bitPattern)
        case .float64(let x): int(x.bitPattern)
        case .bool(let x): int(UInt8(x ? 1 : 0))
        case .string(let s): string(s.bytes)
        case .array(let a): array(a)
        }
    }

    mutating func array(_ a: GGUFArray) {
        u32(a.elementType.rawValue)
        u64(UInt64(a.count))
        switch a {
        case .uint8(let xs): bytes.append(contentsOf: xs)
        case .int8(let xs): for x in xs { int(x) }
        case .uint16(let xs): for x in xs { int(x) }
        case .int16(let xs): for x in xs { int(x) }
        case .uint32(let xs): for x in xs { int(x) }
        case .int32(let xs): for x in xs { int(x) }
        case .uint64(let xs): for x in xs { int(x) }
        case .int64(let xs): for x in xs { int(x) }
        case .float32(let xs): for x in xs { int(x.bitPattern) }
        case .float64(let xs): for x in xs { int(x.bitPattern) }
        case .bool(let xs): for x in xs { int(UInt8(x ? 1 : 0)) }
        case .string(let xs): for x in xs { string(x.bytes) }
        case .array(let xs): for x in xs { array(x) }
        }
    }
}

/// Sequential file output with a 4 MiB buffer (large writes go straight through).
final class BufferedOutput {
    let handle: FileHandle
    let path: String
    private var buffer = Data()
    private let capacity = 4 << 20

    init(_ handle: FileHandle, path: String) {
        self.handle = handle
        self.path = path
        buffer.reserveCapacity(capacity)
    }

    func write<C: Collection>(_ bytes: C) throws where C.Element == UInt8 {
        if buffer.count + bytes.count > capacity { try flush() }
        if bytes.count >= capacity {
            try raw(Data(bytes))
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    func write(_ data: Data) throws {
        if buffer.count + data.count > capacity { try flush() }
        if data.count >= capacity { try raw(data) } else { buffer.append(data) }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try raw(buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    private func raw(_ data: Data) throws {
        do {
            try handle.write(contentsOf: data)
        } catch {
            throw GGUFError(.io, file: path, "write failed: \(error.localizedDescription)")
        }
    }
}
