import Foundation

/// The tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata, reproducing llama.cpp's `llama_tokenize`
/// and `llama_detokenize`.
///
/// Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the pre-tokenizers listed in
/// `GGUFPreTokenizer` (`gpt-2`, `smollm`/`starcoder`-style, `llama3`-style, `qwen2`-style), and `"llama"`
/// (SentencePiece BPE: score-ordered merges over the whole text with spaces written as U+2581, an optional
/// space prefix, and `<0xXX>` byte fallback, as llama.cpp's `llm_tokenizer_spm`). Other models (bert, t5, rwkv,
/// ...) and other pre-tokenizers are rejected with `GGUFTokenizerError.unsupported`.
///
/// Special tokens: `encode` follows llama.cpp with `parse_special = false` by default, the setting of
/// `llama-perplexity` and `llama-imatrix`: control (`token_type` 3) and unknown (2) tokens written in the text
/// are *not* recognised and are tokenized as ordinary text, while user-defined tokens (4) are still split out
/// first, longest first. `parseSpecial: true` also recognises control and unknown tokens (llama.cpp's
/// `parse_special = true`). llama.cpp's per-token lstrip/rstrip attributes, which only a few model families set
/// by token name, are not applied.
///
/// `decode` concatenates the token pieces (llama.cpp's detokenize with `remove_special = false` and without its
/// `clean_spaces` pass), so `decode(encode(text)) == text` for any text without special tokens.
///
/// \p{L}, \p{N} and \s come from the Swift standard library's Unicode tables (llama.cpp generates its own from
/// UnicodeData.txt); the two can differ only for code points one of the Unicode versions does not assign.
public struct GGUFTokenizer: Sendable {
    /// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// `tokenizer.ggml.model`.
    public let model: String
    /// `tokenizer.ggml.pre` ("" when absent).
    public let pre: String
    /// The pre-tokenizer `pre` selects (nil for SentencePiece, which has none).
    public let preTokenizer: GGUFPreTokenizer?
    /// SentencePiece only: a space is put before the text and after each special token
    /// (`tokenizer.ggml.add_space_prefix`, default true), and `decode` removes the first one.
    public let addSpacePrefix: Bool
    /// Each token's type (normal when the file has no `tokenizer.ggml.token_type`).
    public let tokenTypes: [TokenType]
    /// The beginning- and end-of-sequence tokens, when defined.
    public let bosID: Int?
    /// The end-of-sequence token (`tokenizer.ggml.eos_token_id`), when defined.
    public let eosID: Int?
    /// Whether `encode` adds BOS / EOS by default (`tokenizer.ggml.add_bos_token` / `add_eos_token`,
    /// else llama.cpp's default for the pre-tokenizer).
    public let addBOS: Bool
    /// Whether `encode` appends EOS by default (`tokenizer.ggml.add_eos_token`, else false).
    public let addEOS: Bool

    /// Number of tokens in the vocabulary.
    public var vocabularySize: Int { tokenTexts.count }

    /// Each token's text as stored (byte-level alphabet for BPE; empty ones replaced by "[EMPTY_<id>]" as llama.cpp does).
    let tokenTexts: [[UInt8]]
    /// Bytes each token decodes to, and whether it is hidden unless special tokens are rendered.
    let pieces: [[UInt8]]
    let hiddenUnlessSpecial: [Bool]
    /// Encoded-form text to id: vocabulary tokens (a repeated text maps to its last id, as in llama.cpp),
    /// then texts that merges produce but the vocabulary lacks (ids from `vocabularySize` on).
    let textToID: [[UInt8]: Int32]
    /// The vocabulary's texts for lookups from a buffer (SentencePiece).
    let textIndex: TextIndex
    let syntheticTexts: [[UInt8]]
    /// The id of each byte's one-character text (possibly synthetic).
    let byteSymbols: [Int32]
    /// The vocabulary id whose text is exactly this single byte, or -1 (llama.cpp's fallback for unknown symbols).
    let singleByteTokens: [Int32]
    /// (left id << 32 | right id) -> (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    /// Emit a word as one token when the whole word is in the vocabulary (llama.cpp's `ignore_merges`).
    let ignoreMerges: Bool
    /// Special tokens that can be matched in text, longest first.
    let specials: [SpecialToken]
    /// SentencePiece: whether the vocabulary is one, each token's score, each byte's fallback token (-1 none),
    /// and the longest token text in bytes.
    let isSentencePiece: Bool
    let scores: [Float]
    let byteTokens: [Int32]
    let maxTokenLength: Int
    /// SentencePiece: no token text contains "\n", so lines can be tokenized separately.
    let newlineSeparates: Bool

    struct SpecialToken: Sendable {
        var bytes: [UInt8]
        var id: Int32
        /// Matched with parse_special = false too (user-defined tokens).
        var always: Bool
    }

    /// Builds the tokenizer from a GGUF file's metadata.
    public init(metadata: GGUFMetadata) throws {
        let reader = MetadataReader(metadata: metadata)
        model = try reader.string("tokenizer.ggml.model")
        pre = try reader.optionalString("tokenizer.ggml.pre") ?? ""
        let kind: (kind: GGUFPreTokenizer, ignoreMerges: Bool, defaultAddBOS: Bool)?
        switch model {
        case "gpt2":
            guard let k = GGUFPreTokenizer.kind(for: pre) else {
                throw GGUFTokenizerError(.unsupported, key: "tokenizer.ggml.pre",
                                         pre.isEmpty ? "missing pre-tokenizer type (llama.cpp's 'default' regexes are not supported)"
                                                     : "pre-tokenizer '\(pre)' not supported")
            }
            kind = k
        case "llama":
            kind = nil // llama.cpp ignores tokenizer.ggml.pre for SentencePiece
        default:
            throw GGUFTokenizerError(.unsupported, key: "tokenizer.ggml.model", "tokenizer model '\(model)' not supported")
        }
        isSentencePiece = kind == nil
        preTokenizer = kind?.kind
        ignoreMerges = kind?.ignoreMerges ?? false
        addSpacePrefix = isSentencePiece ? try reader.optionalBool("tokenizer.ggml.add_space_prefix") ?? true : false

        // Vocabulary.
        let rawTokens = try reader.stringArray("tokenizer.ggml.tokens")
        guard !rawTokens.isEmpty else {
            throw GGUFTokenizerError(.inconsistent, key: "tokenizer.ggml.tokens", "the vocabulary is empty")
        }
        guard rawTokens.count < Int(Int32.max) / 2 else {
            throw GGUFTokenizerError(.inconsistent, key: "tokenizer.ggml.tokens", "too many tokens (\(rawTokens.count))")
        }
        let n = rawTokens.count
        var texts = [[UInt8]]()
        texts.reserveCapacity(n)
        for (i, t) in rawTokens.enumerated() {
            texts.append(t.bytes.isEmpty ? Array("[EMPTY_\(i)]".utf8) : t.bytes)
        }
        tokenTexts = texts
        textIndex = TextIndex(isSentencePiece ? texts : [])
        newlineSeparates = !texts.contains { $0.contains(0x0A) }
        maxTokenLength = texts.map(\.count).max() ?? 0

        if let types = try reader.optionalIntArray("tokenizer.ggml.token_type") {
            guard types.count >= n else {
                throw GGUFTokenizerError(.inconsistent, key: "tokenizer.ggml.token_type",
                                         "\(types.count) token types for \(n) tokens")
            }
            tokenTypes = types.prefix(n).map { TokenType(rawValue: Int32(clamping: $0)) ?? .undefined }
        } else {
            tokenTypes = [TokenType](repeating: .normal, count: n)
        }

        // Special ids and flags. llama.cpp's defaults: "gpt2" BOS = EOS = 11, "llama" BOS = 1, EOS = 2 (when in range).
        func specialID(_ key: String, default value: Int?) throws -> Int? {
            guard let id = try reader.optionalInt(key) else { return value.flatMap { $0 < n ? $0 : nil } }
            guard id >= 0, id < n else {
                throw GGUFTokenizerError(.inconsistent, key: key, "token id \(id) is outside the vocabulary of \(n) tokens")
            }
            return id
        }
        bosID = try specialID("tokenizer.ggml.bos_token_id", default: isSentencePiece ? 1 : 11)
        eosID = try specialID("tokenizer.ggml.eos_token_id", default: isSentencePiece ? 2 : 11)
        addBOS = try reader.optionalBool("tokenizer.ggml.add_bos_token") ?? (kind?.defaultAddBOS ?? true)
        addEOS = try reader.optionalBool("tokenizer.ggml.add_eos_token") ?? false
        if addBOS && bosID == nil {
            throw GGUFTokenizerError(.inconsistent, key: "tokenizer.ggml.add_bos_token", "BOS is to be added but no BOS token is defined")
        }
        if addEOS && eosID == nil {
            throw GGUFTokenizerError(.inconsistent, key: "tokenizer.ggml.add_eos_token", "EOS is to be added but no EOS token is defined")
        }

        // Interned texts: the vocabulary first, then (BPE) byte characters and merge parts it lacks.
        var ids = [[UInt8]: Int32](minimumCapacity: n * 2)
        for (i, t) in texts.enumerated() { ids[t] = Int32(i) }

        if let values = try reader.optionalFloatArray("tokenizer.ggml.scores") {
            guard values.count >= n else {
                throw GGUFTokenizerError(.inconsistent, key: "tokenizer.ggml.scores", "\(values.count) scores for \(n) tokens")
            }
            scores = Array(values.prefix(n))
        } else {
            scores = [Float](repeating: 0, count: n)
        }
        if isSentencePiece {
            // llama.cpp's byte_to_token: "<0xXX>", else the byte itself as a one-byte text.
            byteTokens = (0 ..< 256).map { b in
                ids[Array(String(format: "<0x%02X>", b).utf8)] ?? ids[[UInt8(b)]] ?? -1
            }
            byteSymbols = []
            singleByteTokens = []
            merges = [:]
            textToID = ids
            syntheticTexts = []
        } else {
            byteTokens = []
            (byteSymbols, singleByteTokens, merges, syntheticTexts, textToID) =
                try GGUFTokenizer.loadBPE(reader: reader, ids: ids, count: n)
        }

        specials = GGUFTokenizer.specialTokens(texts: texts, types: tokenTypes)
        (pieces, hiddenUnlessSpecial) = GGUFTokenizer.decodedPieces(texts: texts, types: tokenTypes, sentencePiece: isSentencePiece)
    }

    /// The byte-level BPE tables: byte symbols, single-byte fallback tokens, the merge table and the
    /// texts merges produce that the vocabulary lacks.
    private static func loadBPE(reader: MetadataReader, ids vocabularyIDs: [[UInt8]: Int32], count n: Int) throws
        -> ([Int32], [Int32], [UInt64: UInt64], [[UInt8]], [[UInt8]: Int32]) {
        var ids = vocabularyIDs
        var synthetic: [[UInt8]] = []
        func intern(_ text: [UInt8]) -> Int32 {
            if let id = ids[text] { return id }
            let id = Int32(n + synthetic.count)
            synthetic.append(text)
            ids[text] = id
            return id
        }
        let byteSymbols = ByteLevel.byteToUTF8.map { intern($0) }
        var single = [Int32](repeating: -1, count: 256)
        for b in 0 ..< 256 { if let id = ids[[UInt8(b)]], Int(id) < n { single[b] = id } }

        // Merges "left right", rank = position; the first occurrence of a pair wins (llama.cpp's emplace).
        let rawMerges = try reader.stringArray("tokenizer.ggml.merges")
        var table = [UInt64: UInt64](minimumCapacity: rawMerges.count)
        for (rank, merge) in rawMerges.enumerated() {
            let b = merge.bytes
            guard b.count >= 3, let space = b[1...].firstIndex(of: 0x20) else { continue }
            let left = Array(b[..<space]), right = Array(b[(space + 1)...])
            guard !right.isEmpty else { continue }
            let key = UInt64(UInt32(intern(left))) << 32 | UInt64(UInt32(intern(right)))
            if table[key] == nil {
                table[key] = UInt64(rank) << 32 | UInt64(UInt32(intern(left + right)))
            }
        }
        return (byteSymbols, single, table, synthetic, ids)
    }

    /// Special tokens, longest first (ties by id; llama.cpp's sort leaves ties unordered). Texts that are not
    /// valid UTF-8 are never matched: they could cut a character of the text in two.
    private static func specialTokens(texts: [[UInt8]], types: [TokenType]) -> [SpecialToken] {
        var specials: [SpecialToken] = []
        for (i, type) in types.enumerated() where type == .control || type == .userDefined || type == .unknown {
            guard String(validating: texts[i], as: UTF8.self) != nil else { continue }
            specials.append(SpecialToken(bytes: texts[i], id: Int32(i), always: type == .userDefined))
        }
        specials.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
        return specials
    }

    /// Decoded pieces (llama.cpp's token_to_piece) and whether each is hidden unless special tokens are rendered.
    private static func decodedPieces(texts: [[UInt8]], types: [TokenType], sentencePiece: Bool) -> ([[UInt8]], [Bool]) {
        var pieces: [[UInt8]] = []
        var hidden: [Bool] = []
        pieces.reserveCapacity(texts.count)
        for (i, text) in texts.enumerated() {
            switch types[i] {
            case .control, .unknown:
                pieces.append(text); hidden.append(true)
            case .userDefined:
                pieces.append(text); hidden.append(false)
            case .normal:
                pieces.append(sentencePiece ? unescapeWhitespace(text) : byteDecode(text)); hidden.append(false)
            case .byte:
                pieces.append([hexByte(text)]); hidden.append(false)
            case .undefined, .unused:
                pieces.append([]); hidden.append(false)
            }
        }
        return (pieces, hidden)
    }

    /// U+2581 (SentencePiece's visible space) back to " ".
    static func unescapeWhitespace(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            if i + 2 < text.count, text[i] == 0xE2, text[i + 1] == 0x96, text[i + 2] == 0x81 {
                out.append(0x20); i += 3
            } else {
                out.append(text[i]); i += 1
            }
        }
        return out
    }

    /// Reads the tokenizer of the GGUF file at `url`.
    public init(contentsOf url: URL) throws {
        try self.init(metadata: GGUFFile(contentsOf: url).metadata)
    }

    // MARK: Encoding

    /// Token ids of `text`.
    ///
    /// - Parameters:
    ///   - text: UTF-8 text to tokenize.
    ///   - addSpecial: nil adds BOS / EOS as `addBOS` / `addEOS` say (llama.cpp's `add_special = true`);
    ///     true adds both (those defined), false adds neither.
    ///   - parseSpecial: also recognise control and unknown tokens written in the text (llama.cpp's `parse_special`).
    public func encode(_ text: String, addSpecial: Bool? = nil, parseSpecial: Bool = false) -> [Int] {
        var out: [Int32] = []
        let wantBOS = addSpecial ?? addBOS, wantEOS = addSpecial ?? addEOS
        if wantBOS, let bosID { out.append(Int32(bosID)) }
        let bytes = Array(text.utf8)
        bytes.withUnsafeBufferPointer { raw in
            let fragments = partition(raw, parseSpecial: parseSpecial)
            if isSentencePiece {
                var session = SentencePieceSession(tokenizer: self)
                var previousSpecial = true
                for fragment in fragments {
                    switch fragment {
                    case .token(let id):
                        out.append(id)
                        previousSpecial = true
                    case .text(let range):
                        session.encode(raw[range], spacePrefix: addSpacePrefix && previousSpecial, into: &out)
                        previousSpecial = false
                    }
                }
            } else {
                var session = EncodeSession(tokenizer: self, text: raw)
                for fragment in fragments {
                    switch fragment {
                    case .token(let id): out.append(id)
                    case .text(let range): session.encodeFragment(range, into: &out)
                    }
                }
            }
        }
        if wantEOS, let eosID { out.append(Int32(eosID)) }
        return out.map(Int.init)
    }

    enum Fragment { case text(Range<Int>), token(Int32) }

    /// Splits the text at special tokens (llama.cpp's `tokenizer_st_partition`).
    func partition(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = bytes.isEmpty ? [] : [.text(0 ..< bytes.count)]
        for special in specials where special.always || parseSpecial {
            let pattern = special.bytes
            let first = pattern[0], m = pattern.count
            var next: [Fragment] = []
            next.reserveCapacity(fragments.count)
            for fragment in fragments {
                guard case .text(let range) = fragment else { next.append(fragment); continue }
                var start = range.lowerBound
                var i = start
                while i + m <= range.upperBound {
                    if bytes[i] == first && (1 ..< m).allSatisfy({ bytes[i + $0] == pattern[$0] }) {
                        if i > start { next.append(.text(start ..< i)) }
                        next.append(.token(special.id))
                        i += m
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < range.upperBound { next.append(.text(start ..< range.upperBound)) }
            }
            fragments = next
        }
        return fragments
    }

    // MARK: Decoding

    /// The text of `ids` (llama.cpp's detokenize without space clean-up): control and unknown tokens are
    /// omitted unless `special`; ids outside the vocabulary are skipped. Bytes that do not form valid UTF-8
    /// become U+FFFD. With `addSpacePrefix` (SentencePiece) one space is removed from the start of the first
    /// piece (llama.cpp removes it only when the first id is not BOS).
    public func decode(_ ids: [Int], special: Bool = false) -> String {
        String(decoding: decodeBytes(ids, special: special), as: UTF8.self)
    }

    /// The bytes of `ids`, before UTF-8 decoding.
    public func decodeBytes(_ ids: [Int], special: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var removeSpace = addSpacePrefix
        for id in ids where id >= 0 && id < pieces.count {
            if hiddenUnlessSpecial[id] && !special { continue }
            let piece = pieces[id]
            if removeSpace, piece.first == 0x20 {
                out.append(contentsOf: piece.dropFirst())
            } else {
                out.append(contentsOf: piece)
            }
            if !piece.isEmpty { removeSpace = false }
        }
        return out
    }

    /// The stored text of token `id` (in the byte-level alphabet for BPE vocabularies).
    public func tokenText(_ id: Int) -> String? {
        id >= 0 && id < tokenTexts.count ? String(decoding: tokenTexts[id], as: UTF8.self) : nil
    }

    /// The id of the token whose stored text is `text`, if any.
    public func tokenID(_ text: String) -> Int? {
        textToID[Array(text.utf8)].flatMap { Int($0) < tokenTexts.count ? Int($0) : nil }
    }

    /// llama.cpp's `llama_decode_text`: byte-level characters back to bytes.
    static func byteDecode(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for scalar in String(decoding: text, as: UTF8.self).unicodeScalars {
            let c = scalar.value
            if c < 0x144, ByteLevel.codepointToByte[Int(c)] >= 0 {
                out.append(UInt8(ByteLevel.codepointToByte[Int(c)]))
            } else {
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for b in String(scalar).utf8 { out.append(contentsOf: Array(String(format: "%02x", b).utf8)) }
                out.append(contentsOf: text)
                out.append(UInt8(ascii: "]"))
            }
        }
        return out
    }

    /// llama.cpp's `token_to_byte`: the hex digits at offset 3 of "<0xXX>" (strtol semantics: stops at a non-digit).
    static func hexByte(_ text: [UInt8]) -> UInt8 {
        var value = 0
        for b in text.dropFirst(3).prefix(2) {
            guard let d = Int(String(UnicodeScalar(b)), radix: 16) else { break }
            value = value * 16 + d
        }
        return UInt8(truncatingIfNeeded: value)
    }
}

/// Typed access to tokenizer metadata with errors naming the key.
struct MetadataReader {
    let metadata: GGUFMetadata

    func string(_ key: String) throws -> String {
        guard let s = try optionalString(key) else {
            throw GGUFTokenizerError(.missingKey, key: key, "missing")
        }
        return s
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = metadata[key] else { return nil }
        guard case .string(let s) = value else {
            throw GGUFTokenizerError(.wrongType, key: key, "expected a string, found \(value.type)")
        }
        return s.string
    }

    func stringArray(_ key: String) throws -> [GGUFString] {
        guard let value = metadata[key] else {
            throw GGUFTokenizerError(.missingKey, key: key, "missing")
        }
        guard case .array(.string(let a)) = value else {
            throw GGUFTokenizerError(.wrongType, key: key, "expected an array of strings, found \(describe(value))")
        }
        return a
    }

    func optionalIntArray(_ key: String) throws -> [Int]? {
        guard let value = metadata[key] else { return nil }
        let result: [Int]?
        switch value {
        case .array(.int32(let a)): result = a.map(Int.init)
        case .array(.uint32(let a)): result = a.map(Int.init)
        case .array(.int8(let a)): result = a.map(Int.init)
        case .array(.uint8(let a)): result = a.map(Int.init)
        case .array(.int16(let a)): result = a.map(Int.init)
        case .array(.uint16(let a)): result = a.map(Int.init)
        case .array(.int64(let a)): result = a.map(Int.init)
        default: result = nil
        }
        guard let result else {
            throw GGUFTokenizerError(.wrongType, key: key, "expected an array of integers, found \(describe(value))")
        }
        return result
    }

    func optionalFloatArray(_ key: String) throws -> [Float]? {
        guard let value = metadata[key] else { return nil }
        switch value {
        case .array(.float32(let a)): return a
        case .array(.int32(let a)): return a.map(Float.init)
        default:
            throw GGUFTokenizerError(.wrongType, key: key, "expected an array of float32, found \(describe(value))")
        }
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let value = metadata[key] else { return nil }
        guard let v = value.intValue else {
            throw GGUFTokenizerError(.wrongType, key: key, "expected an integer, found \(describe(value))")
        }
        return v
    }

    func optionalBool(_ key: String) throws -> Bool? {
        guard let value = metadata[key] else { return nil }
        guard case .bool(let b) = value else {
            throw GGUFTokenizerError(.wrongType, key: key, "expected a bool, found \(describe(value))")
        }
        return b
    }

    private func describe(_ value: GGUFValue) -> String {
        if case .array(let a) = value { return "an array of \(a.elementType)" }
        return "\(value.type)"
    }
}
