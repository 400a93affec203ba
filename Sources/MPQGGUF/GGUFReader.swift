import Foundation

/// One tensor's entry in a GGUF file's tensor-info table.
public struct GGUFTensorInfo: Equatable, Sendable {
    /// Tensor name, e.g. "blk.0.attn_q.weight".
    public var name: String
    /// Sizes with ne0 (the contiguous row length) first, as in ggml; 1 to 4 entries.
    public var dimensions: [Int]
    /// Storage type.
    public var type: GGMLType
    /// Byte offset of the data from the start of the data section (a multiple of the alignment).
    public var offset: Int

    /// A tensor description; `offset` matters only for infos read from a file (writers recompute it).
    public init(name: String, dimensions: [Int], type: GGMLType, offset: Int = 0) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
    }

    /// Number of values (product of the dimensions; validated not to overflow when read from a
    /// file; 0 for an info built by hand whose product overflows or has a non-positive dimension).
    public var elementCount: Int { checkedElementCount ?? 0 }

    /// The product of the dimensions, or nil when a dimension is not positive or it overflows.
    public var checkedElementCount: Int? {
        var n = 1
        for d in dimensions {
            guard d > 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }
    /// Values per row (ne0).
    public var rowLength: Int { dimensions.first ?? 1 }
    /// Number of rows (product of the dimensions after ne0).
    public var rowCount: Int { rowLength > 0 ? elementCount / rowLength : 0 }
    /// Bytes of the tensor's data.
    public var byteCount: Int { type.byteCount(elements: elementCount) ?? 0 }
}

/// A GGUF file (version 3, or 2 which has the same little-endian layout), memory-mapped and validated.
///
/// Opening checks every count, length, dimension, type, offset and size with overflow-checked
/// arithmetic before it is used, so a corrupt or hostile file yields a `GGUFError` and never a trap
/// or an out-of-bounds read. Tensor data is not copied: `tensorData` slices the mapping.
public struct GGUFFile: Sendable {
    /// Path the file was read from ("" for in-memory data).
    public let path: String
    /// Format version (2 or 3).
    public let version: UInt32
    /// Metadata in file order, including keys mpq does not interpret.
    public let metadata: GGUFMetadata
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// Alignment of the data section and of every tensor offset (`general.alignment`, default 32).
    public let alignment: Int
    /// Absolute byte offset of the data section.
    public let dataOffset: Int
    /// The whole file (memory-mapped when read from disk).
    public let data: Data
    private let tensorIndex: [String: Int]

    /// The default `general.alignment`.
    public static let defaultAlignment = 32
    /// "GGUF" read as a little-endian uint32.
    static let magic: UInt32 = 0x4655_4747
    /// Deepest nesting of arrays accepted (bounds recursion on hostile input).
    static let maxArrayDepth = 8

    /// Maps and validates the file at `url`.
    public init(contentsOf url: URL) throws {
        try self.init(data: Self.mapped(url), path: url.path)
    }

    /// The file at `url`, memory-mapped; a read failure as a `GGUFError` (GGUF and imatrix files).
    static func mapped(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw GGUFError(.io, file: url.path, "cannot read: \(error.localizedDescription)")
        }
    }

    /// Validates GGUF bytes already in memory; `path` is only used in error messages.
    public init(data: Data, path: String = "") throws {
        self.path = path
        self.data = data
        let parsed = try data.withUnsafeBytes { raw in
            var parser = GGUFParser(raw, path: path)
            return try parser.parse()
        }
        version = parsed.version
        metadata = parsed.metadata
        tensors = parsed.tensors
        alignment = parsed.alignment
        dataOffset = parsed.dataOffset
        var index: [String: Int] = [:]
        for (i, t) in parsed.tensors.enumerated() { index[t.name] = i }
        tensorIndex = index
    }

    /// The info of the tensor called `name`, or nil.
    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The byte range of `tensor` within `data`, or nil when it does not lie inside the file
    /// (an info that did not come from this file).
    private func range(of tensor: GGUFTensorInfo) -> Range<Int>? {
        let (start, o1) = dataOffset.addingReportingOverflow(tensor.offset)
        let (end, o2) = start.addingReportingOverflow(tensor.byteCount)
        guard !o1, !o2, tensor.offset >= 0, end <= data.count else { return nil }
        return start ..< end
    }

    /// The raw bytes of `tensor` (a slice of the mapping, not a copy); empty when `tensor` does not
    /// describe data inside this file.
    public func tensorData(_ tensor: GGUFTensorInfo) -> Data {
        guard let r = range(of: tensor) else { return Data() }
        return data[(data.startIndex + r.lowerBound) ..< (data.startIndex + r.upperBound)]
    }

    /// Calls `body` with the raw bytes of `tensor`, without copying (empty when `tensor` does not
    /// describe data inside this file).
    public func withTensorBytes<R>(_ tensor: GGUFTensorInfo, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let r = range(of: tensor) else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try data.withUnsafeBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[r])) }
    }

    /// The tensor's values as float32 (dequantised with ggml's exact arithmetic).
    public func floats(_ tensor: GGUFTensorInfo) throws -> [Float] {
        guard let count = tensor.checkedElementCount, tensor.type.byteCount(elements: count) != nil, range(of: tensor) != nil else {
            throw GGUFError(.invalidArgument, file: path, "tensor '\(tensor.name)' (\(tensor.dimensions), \(tensor.type.name), offset \(tensor.offset)) does not describe data in this file")
        }
        return try withTensorBytes(tensor) { try GGMLQuants.dequantize(tensor.type, bytes: $0, count: count) }
    }

    /// Writes this file's metadata and tensors to `url` (atomically) in the standard layout.
    ///
    /// For a file in the standard layout (tensors packed in info order, each padded to the
    /// alignment, as gguf-py and llama.cpp write them) the output is byte-identical to the input.
    public func write(to url: URL) throws {
        try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors, version: version) { i in
            tensorData(tensors[i])
        }
    }
}

/// The header fields GGUFParser produces.
struct GGUFParsed {
    var version: UInt32
    var metadata: GGUFMetadata
    var tensors: [GGUFTensorInfo]
    var alignment: Int
    var dataOffset: Int
}

/// A bounds-checked little-endian reader over the file bytes.
struct GGUFParser {
    let raw: UnsafeRawBufferPointer
    let path: String
    var position = 0

    init(_ raw: UnsafeRawBufferPointer, path: String) {
        self.raw = raw
        self.path = path
    }

    var remaining: Int { raw.count - position }

    func fail(_ code: GGUFError.Code, _ message: String) -> GGUFError {
        GGUFError(code, file: path, message)
    }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n <= remaining else {
            throw fail(.truncated, "truncated: \(what()) needs \(n) bytes at offset \(position) but the file has \(remaining) left")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, what())
        let v = raw.loadUnaligned(fromByteOffset: position, as: T.self)
        position += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    /// A u64 count that must not exceed what `remaining` bytes could hold at `minimumSize` bytes per item.
    mutating func readCount(_ what: @autoclosure () -> String, minimumSize: Int) throws -> Int {
        let n = try read(UInt64.self, what())
        let limit = UInt64(remaining / max(1, minimumSize))
        guard n <= limit else {
            throw fail(.absurdCount, "\(what()) is \(n) but only \(remaining) bytes remain (at most \(limit) fit)")
        }
        return Int(n)
    }

    mutating func readBytes(_ what: @autoclosure () -> String) throws -> [UInt8] {
        let n = try read(UInt64.self, "length of \(what())")
        guard n <= UInt64(remaining) else {
            throw fail(.absurdCount, "\(what()) has length \(n) but only \(remaining) bytes remain")
        }
        let bytes = Array(UnsafeRawBufferPointer(rebasing: raw[position ..< position + Int(n)]))
        position += Int(n)
        return bytes
    }

    mutating func readName(_ what: @autoclosure () -> String) throws -> String {
        let bytes = try readBytes(what())
        guard !bytes.isEmpty else { throw fail(.badName, "\(what()) is empty") }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw fail(.badName, "\(what()) is not valid UTF-8") }
        return s
    }

    mutating func parse() throws -> GGUFParsed {
        let magic = try read(UInt32.self, "magic")
        guard magic == GGUFFile.magic else {
            let b = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
            let shown = b.map { (32..<127).contains($0) ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
            throw fail(.badMagic, "not a GGUF file: magic is '\(shown)', expected 'GGUF'")
        }
        let version = try read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            if version.byteSwapped == 2 || version.byteSwapped == 3 {
                throw fail(.unsupportedVersion, "big-endian GGUF (version \(version.byteSwapped)) is not supported")
            }
            throw fail(.unsupportedVersion, "GGUF version \(version) is not supported (only 2 and 3)")
        }
        let tensorCount64 = try read(UInt64.self, "tensor count")
        let kvCount = try readCount("metadata entry count", minimumSize: 8 + 1 + 4 + 1)
        // Each tensor info takes at least 8 (name length) + 1 + 4 + 8 + 4 + 8 bytes.
        guard tensorCount64 <= UInt64(remaining / 33) else {
            throw fail(.absurdCount, "tensor count is \(tensorCount64) but only \(remaining) bytes remain")
        }
        let tensorCount = Int(tensorCount64)

        var metadata = GGUFMetadata()
        for i in 0..<kvCount {
            let key = try readName("key of metadata entry \(i)")
            guard !metadata.contains(key) else { throw fail(.duplicateKey, "duplicate metadata key '\(key)'") }
            let rawType = try read(UInt32.self, "type of key '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw fail(.badValueType, "key '\(key)' has unknown value type \(rawType)")
            }
            metadata[key] = try readValue(type, key: key, depth: 0)
        }

        var alignment = GGUFFile.defaultAlignment
        if let value = metadata[GGUFKey.alignment] {
            guard case .uint32(let a) = value else {
                throw fail(.badAlignment, "'\(GGUFKey.alignment)' must be uint32 but is \(value.type)")
            }
            guard a != 0, a & (a - 1) == 0 else {
                throw fail(.badAlignment, "'\(GGUFKey.alignment)' is \(a), not a power of two")
            }
            alignment = Int(a)
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(tensorCount)
        var names = Set<String>()
        for i in 0..<tensorCount {
            let name = try readName("name of tensor \(i)")
            guard names.insert(name).inserted else { throw fail(.duplicateTensor, "duplicate tensor name '\(name)'") }
            let nDims = try read(UInt32.self, "dimension count of tensor '\(name)'")
            guard nDims >= 1, nDims <= 4 else {
                throw fail(.tooManyDimensions, "tensor '\(name)' has \(nDims) dimensions (must be 1 to 4)")
            }
            var dims: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let v = try read(Int64.self, "dimension \(d) of tensor '\(name)'")
                guard v > 0 else { throw fail(.badDimension, "tensor '\(name)' dimension \(d) is \(v) (must be positive)") }
                let (p, o) = elements.multipliedReportingOverflow(by: Int(v))
                guard !o else {
                    throw fail(.sizeOverflow, "tensor '\(name)' element count overflows 64 bits (dimensions so far \(dims + [Int(v)]))")
                }
                elements = p
                dims.append(Int(v))
            }
            let rawType = try read(UInt32.self, "type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                throw fail(.unknownTensorType, "tensor '\(name)' has unknown ggml type \(rawType)")
            }
            guard dims[0] % type.blockSize == 0 else {
                throw fail(.notBlockMultiple, "tensor '\(name)' of type \(type.name) has ne0 = \(dims[0]), not a multiple of the block size \(type.blockSize)")
            }
            guard type.byteCount(elements: elements) != nil else {
                throw fail(.sizeOverflow, "tensor '\(name)' byte size overflows 64 bits")
            }
            let offset = try read(UInt64.self, "offset of tensor '\(name)'")
            guard offset <= UInt64(Int.max) else {
                throw fail(.dataPastEnd, "tensor '\(name)' offset \(offset) is past the end of the file")
            }
            guard Int(offset) % alignment == 0 else {
                throw fail(.misalignedOffset, "tensor '\(name)' offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            tensors.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: Int(offset)))
        }

        // The data section starts at the next multiple of the alignment.
        let (padded, overflow) = position.addingReportingOverflow(alignment - 1)
        guard !overflow else { throw fail(.sizeOverflow, "header size overflows") }
        let dataOffset = padded / alignment * alignment
        if !tensors.isEmpty && dataOffset > raw.count {
            throw fail(.truncated, "truncated: data section would start at \(dataOffset) but the file has \(raw.count) bytes")
        }
        let dataSize = max(0, raw.count - dataOffset)
        for t in tensors {
            let (end, o) = t.offset.addingReportingOverflow(t.byteCount)
            guard !o, end <= dataSize else {
                throw fail(.dataPastEnd, "tensor '\(t.name)' data [\(t.offset), +\(t.byteCount)) extends past the end of the data section (\(dataSize) bytes)")
            }
        }
        let byOffset = tensors.sorted { $0.offset < $1.offset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw fail(.overlappingTensors, "tensors '\(a.name)' [\(a.offset), +\(a.byteCount)) and '\(b.name)' [\(b.offset), +\(b.byteCount)) overlap")
        }
        return GGUFParsed(version: version, metadata: metadata, tensors: tensors, alignment: alignment, dataOffset: dataOffset)
    }

    mutating func readValue(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, "value of '\(key)'"))
        case .int8: return .int8(try read(Int8.self, "value of '\(key)'"))
        case .uint16: return .uint16(try read(UInt16.self, "value of '\(key)'"))
        case .int16: return .int16(try read(Int16.self, "value of '\(key)'"))
        case .uint32: return .uint32(try read(UInt32.self, "value of '\(key)'"))
        case .int32: return .int32(try read(Int32.self, "value of '\(key)'"))
        case .uint64: return .uint64(try read(UInt64.self, "value of '\(key)'"))
        case .int64: return .int64(try read(Int64.self, "value of '\(key)'"))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self, "value of '\(key)'")))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self, "value of '\(key)'")))
        case .bool: return .bool(try readBool(key))
        case .string: return .string(GGUFString(bytes: try readBytes("string value of '\(key)'")))
        case .array: return .array(try readArray(key: key, depth: depth + 1))
        }
    }

    mutating func readBool(_ key: String) throws -> Bool {
        let b = try read(UInt8.self, "value of '\(key)'")
        guard b <= 1 else { throw fail(.badValue, "key '\(key)' has bool value \(b) (must be 0 or 1)") }
        return b == 1
    }

    mutating func readFixed<T: FixedWidthInteger>(_: T.Type, _ n: Int) -> [T] {
        // Callers checked n * size <= remaining through readCount.
        let size = MemoryLayout<T>.size
        let out = [T](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n {
                buffer[i] = T(littleEndian: raw.loadUnaligned(fromByteOffset: position + i * size, as: T.self))
            }
            count = n
        }
        position += n * size
        return out
    }

    mutating func readArray(key: String, depth: Int) throws -> GGUFArray {
        guard depth <= GGUFFile.maxArrayDepth else {
            throw fail(.badValueType, "key '\(key)' nests arrays deeper than \(GGUFFile.maxArrayDepth) levels")
        }
        let rawType = try read(UInt32.self, "array element type of '\(key)'")
        guard let type = GGUFValueType(rawValue: rawType) else {
            throw fail(.badValueType, "key '\(key)' has arrays of unknown value type \(rawType)")
        }
        let n = try readCount("array length of '\(key)'", minimumSize: type.minimumSize)
        switch type {
        case .uint8: return .uint8(readFixed(UInt8.self, n))
        case .int8: return .int8(readFixed(Int8.self, n))
        case .uint16: return .uint16(readFixed(UInt16.self, n))
        case .int16: return .int16(readFixed(Int16.self, n))
        case .uint32: return .uint32(readFixed(UInt32.self, n))
        case .int32: return .int32(readFixed(Int32.self, n))
        case .uint64: return .uint64(readFixed(UInt64.self, n))
        case .int64: return .int64(readFixed(Int64.self, n))
        case .float32: return .float32(readFixed(UInt32.self, n).map { Float(bitPattern: $0) })
        case .float64: return .float64(readFixed(UInt64.self, n).map { Double(bitPattern: $0) })
        case .bool:
            var out: [Bool] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try readBool(key)) }
            return .bool(out)
        case .string:
            var out: [GGUFString] = []
            out.reserveCapacity(n)
            for i in 0..<n { out.append(GGUFString(bytes: try readBytes("element \(i) of '\(key)'"))) }
            return .string(out)
        case .array:
            var out: [GGUFArray] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try readArray(key: key, depth: depth + 1)) }
            return .array(out)
        }
    }
}
