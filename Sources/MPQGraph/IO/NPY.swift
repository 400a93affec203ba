import Foundation

/// numpy's `.npy` format (versions 1-3): a header naming dtype, order and
/// shape, then the raw little-endian elements.
public enum NPY {
    private static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    private static let descriptors: [(String, DataType)] = [
        ("f4", .float32), ("f2", .float16), ("f8", .float64), ("i8", .int64), ("i4", .int32),
        ("i2", .int16), ("i1", .int8), ("u1", .uint8), ("u2", .uint16), ("u4", .uint32), ("u8", .uint64),
        ("b1", .bool),
    ]

    /// Reads a `.npy` file.
    public static func read(contentsOf path: String) throws -> Tensor {
        guard FileManager.default.fileExists(atPath: path) else { throw MPQError.fileNotFound(path) }
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            throw MPQError.io("cannot read \(path)")
        }
        return try decode(data, source: path)
    }

    /// Decodes `.npy` bytes; `source` names them in errors.
    public static func decode(_ data: Data, source: String) throws -> Tensor {
        func fail(_ message: String) -> MPQError { .invalidTensorFile("\(source): \(message)") }
        let bytes = [UInt8](data.prefix(12))
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("not a .npy file (bad magic)") }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw fail("unsupported .npy version \(major)")
        }
        guard data.count >= headerStart + headerLength else { throw fail("truncated header") }
        let start = data.startIndex
        let header = String(decoding: data[(start + headerStart)..<(start + headerStart + headerLength)], as: UTF8.self)
        let (descr, fortran, shape) = try parseHeader(header, fail: fail)
        guard !fortran || shape.count <= 1 else {
            throw fail("Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)")
        }
        let order = descr.first!
        let code = String(descr.dropFirst())
        guard let dtype = descriptors.first(where: { $0.0 == code })?.1 else {
            throw fail("unsupported dtype '\(descr)' (supported: float32, float16, float64, int64, int32, int16, int8, uint8, uint16, uint32, uint64, bool)")
        }
        guard order == "<" || order == "|" || (order == "=" && dtype.byteSize > 0) else {
            throw fail("big-endian data ('\(descr)') is not supported")
        }
        let count = try SizeLimits.checkedCount(shape, dtype: dtype, what: "\(source): the array")
        let payloadStart = start + headerStart + headerLength
        let expected = count * dtype.byteSize
        guard data.count - headerStart - headerLength >= expected else {
            throw fail("holds \(data.count - headerStart - headerLength) data bytes, shape \(shape) of \(dtype) needs \(expected) (truncated?)")
        }
        return data[payloadStart..<(payloadStart + expected)].withUnsafeBytes {
            Tensor(dtype: dtype, shape: shape, bytes: $0)
        }
    }

    private static func parseHeader(_ header: String, fail: (String) -> MPQError) throws -> (String, Bool, [Int]) {
        func value(of key: String) -> Substring? {
            guard let range = header.range(of: "'\(key)':") else { return nil }
            return header[range.upperBound...].drop { $0 == " " }
        }
        guard let d = value(of: "descr"), d.first == "'" || d.first == "\"",
              let end = d.dropFirst().firstIndex(where: { $0 == "'" || $0 == "\"" }) else {
            throw fail("header has no 'descr'")
        }
        let descr = String(d[d.index(after: d.startIndex)..<end])
        guard descr.count >= 3 else { throw fail("unsupported dtype '\(descr)'") }
        let fortran = value(of: "fortran_order")?.hasPrefix("True") ?? false
        guard let s = value(of: "shape"), s.first == "(", let close = s.firstIndex(of: ")") else {
            throw fail("header has no 'shape'")
        }
        let parts = s[s.index(after: s.startIndex)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        for part in parts {
            guard let n = Int(part.hasSuffix("L") ? String(part.dropLast()) : part), n >= 0 else {
                throw fail("bad shape entry '\(part)'")
            }
            shape.append(n)
        }
        return (descr, fortran, shape)
    }

    /// Encodes a tensor as `.npy` (version 1.0) bytes.
    public static func encode(_ tensor: Tensor) throws -> Data {
        guard let code = descriptors.first(where: { $0.1 == tensor.dtype })?.0 else {
            throw MPQError.invalidTensorFile("\(tensor.dtype) cannot be stored in .npy")
        }
        let order = tensor.dtype.byteSize == 1 ? "|" : "<"
        let shape = tensor.shape.count == 1 ? "(\(tensor.shape[0]),)"
            : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(order)\(code)', 'fortran_order': False, 'shape': \(shape), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data(magic + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(Data(bytes: tensor.rawPointer, count: tensor.byteCount))
        return data
    }

    /// Writes a tensor to a `.npy` file (atomically).
    public static func write(_ tensor: Tensor, to path: String) throws {
        try AtomicFile.write(try encode(tensor), to: path)
    }
}
