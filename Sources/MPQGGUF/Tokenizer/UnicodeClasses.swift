import Foundation

/// Character classes used by llama.cpp's hand-written pre-tokenizers (`unicode_cpt_flags` in unicode.cpp),
/// derived from the Swift standard library's Unicode tables.
///
/// llama.cpp generates its tables from UnicodeData.txt: \p{L} = Lu Ll Lt Lm Lo, \p{N} = Nd Nl No,
/// \s = the White_Space property (25 code points). The same definitions are used here; the only possible
/// difference is for code points assigned in a Unicode version that one of the two tables lacks.
enum CodepointClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4
    /// Set for every code point inside the text (llama.cpp's `as_uint() != 0`); 0 means "outside the segment".
    static let present: UInt8 = 8

    /// Flags of the Basic Multilingual Plane, computed once.
    static let bmp: [UInt8] = (0 ..< 0x1_0000).map { compute(UInt32($0)) }

    @inline(__always)
    static func flags(_ c: UInt32) -> UInt8 {
        c < 0x1_0000 ? bmp[Int(c)] : compute(c)
    }

    static func compute(_ c: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(c) else { return present }
        var f = present
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            f |= letter
        case .decimalNumber, .letterNumber, .otherNumber:
            f |= number
        default:
            break
        }
        if scalar.properties.isWhitespace { f |= whitespace }
        return f
    }
}

/// GPT-2's reversible mapping of bytes to printable code points (`bytes_to_unicode`; llama.cpp's
/// `unicode_byte_to_utf8_map`): printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards.
enum ByteLevel {
    /// The code point each byte is written as in a byte-level vocabulary.
    static let byteToCodepoint: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var assigned = [Bool](repeating: false, count: 256)
        for b in 0x21 ... 0x7E { map[b] = UInt32(b); assigned[b] = true }
        for b in 0xA1 ... 0xAC { map[b] = UInt32(b); assigned[b] = true }
        for b in 0xAE ... 0xFF { map[b] = UInt32(b); assigned[b] = true }
        var n: UInt32 = 0
        for b in 0 ..< 256 where !assigned[b] {
            map[b] = 256 + n
            n += 1
        }
        return map
    }()

    /// The inverse: code point (below 0x144) to byte, or -1.
    static let codepointToByte: [Int16] = {
        var inverse = [Int16](repeating: -1, count: 0x144)
        for (b, c) in byteToCodepoint.enumerated() { inverse[Int(c)] = Int16(b) }
        return inverse
    }()

    /// The UTF-8 of each byte's code point (one or two bytes).
    static let byteToUTF8: [[UInt8]] = byteToCodepoint.map { utf8(of: $0) }

    static func utf8(of c: UInt32) -> [UInt8] {
        Array(String(Unicode.Scalar(c)!).utf8)
    }

    /// `text` written in the byte-level alphabet, as UTF-8.
    static func encode<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(contentsOf: byteToUTF8[Int(b)]) }
        return out
    }
}

/// Decodes valid UTF-8 into code points (the caller guarantees validity: the bytes come from a Swift
/// `String`, cut only at the boundaries of complete, valid UTF-8 special-token texts).
@inline(__always)
func decodeCodepoints(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into cpts: inout [UInt32], lengths: inout [UInt8]) {
    cpts.removeAll(keepingCapacity: true)
    lengths.removeAll(keepingCapacity: true)
    var i = range.lowerBound
    let end = range.upperBound
    while i < end {
        let b0 = UInt32(bytes[i])
        if b0 < 0x80 {
            cpts.append(b0); lengths.append(1); i += 1
        } else if b0 < 0xE0, i + 1 < end {
            cpts.append((b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F)); lengths.append(2); i += 2
        } else if b0 < 0xF0, i + 2 < end {
            cpts.append((b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)); lengths.append(3); i += 3
        } else if i + 3 < end {
            cpts.append((b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F))
            lengths.append(4); i += 4
        } else {
            // Not reachable for valid UTF-8; keep going one byte at a time.
            cpts.append(0xFFFD); lengths.append(1); i += 1
        }
    }
}
