import Foundation

/// The pre-tokenizer (regex split) of a byte-level BPE vocabulary, chosen by `tokenizer.ggml.pre`.
///
/// Each kind is a hand-written matcher over code points that reproduces llama.cpp's
/// `unicode_regex_split_custom_*` functions (which are themselves exact for these regexes), so no
/// regular-expression engine is involved.
public enum GGUFPreTokenizer: String, Sendable, CaseIterable {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// Every \p{N} code point isolated first, then the GPT-2 pattern inside the pieces
    /// (llama.cpp's STARCODER / SMOLLM / REFACT / COMMAND_R / CODESHELL / EXAONE / MINERVA).
    case digitsThenGPT2
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    case llama3
    /// Qwen 2: as Llama 3 but `\p{N}` (single digits).
    case qwen2

    /// The `tokenizer.ggml.pre` values llama.cpp maps to each kind (only those whose other settings
    /// the tokenizer here reproduces: no SEP token, no whitespace escaping).
    static func kind(for pre: String) -> (kind: GGUFPreTokenizer, ignoreMerges: Bool, defaultAddBOS: Bool)? {
        switch pre {
        case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
             "modern-bert", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4":
            return (.gpt2, false, false)
        case "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2":
            return (.digitsThenGPT2, false, false)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            return (.llama3, true, true)
        case "dbrx", "smaug-bpe":
            return (.llama3, false, false)
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2":
            return (.qwen2, false, false)
        default:
            return nil
        }
    }

    /// Splits `cpts` (with `flags` from `CodepointClass`) into words; appends each word's end index to `ends`.
    func split(_ cpts: UnsafeBufferPointer<UInt32>, _ flags: UnsafeBufferPointer<UInt8>, into ends: inout [Int]) {
        switch self {
        case .gpt2:
            splitGPT2(cpts, flags, 0 ..< cpts.count, into: &ends)
        case .digitsThenGPT2:
            var start = 0
            var i = 0
            while i < cpts.count {
                if flags[i] & CodepointClass.number != 0 {
                    if start < i { splitGPT2(cpts, flags, start ..< i, into: &ends) }
                    ends.append(i + 1)
                    start = i + 1
                }
                i += 1
            }
            if start < cpts.count { splitGPT2(cpts, flags, start ..< cpts.count, into: &ends) }
        case .llama3:
            splitLlama3(cpts, flags, 0 ..< cpts.count, maxDigits: 3, into: &ends)
        case .qwen2:
            splitLlama3(cpts, flags, 0 ..< cpts.count, maxDigits: 1, into: &ends)
        }
    }
}

private let outOfRange: UInt32 = 0xFFFF_FFFF
private let L = CodepointClass.letter, N = CodepointClass.number, W = CodepointClass.whitespace

/// llama.cpp's `unicode_regex_split_custom_gpt2` over one segment.
@inline(__always)
private func splitGPT2(_ cpts: UnsafeBufferPointer<UInt32>, _ flags: UnsafeBufferPointer<UInt8>, _ segment: Range<Int>, into ends: inout [Int]) {
    let end = segment.upperBound
    @inline(__always) func cpt(_ p: Int) -> UInt32 { p < end ? cpts[p] : outOfRange }
    @inline(__always) func fl(_ p: Int) -> UInt8 { p < end ? flags[p] : 0 }
    var pos = segment.lowerBound
    while pos < end {
        let c = cpts[pos]
        // 's|'t|'re|'ve|'m|'ll|'d
        if c == 0x27, pos + 1 < end {
            let n = cpts[pos + 1]
            if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 { // s t m d
                pos += 2; ends.append(pos); continue
            }
            if pos + 2 < end {
                let nn = cpts[pos + 2]
                if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) { // re ve ll
                    pos += 3; ends.append(pos); continue
                }
            }
        }
        var f2 = c == 0x20 ? fl(pos + 1) : flags[pos]
        // ' ?\p{L}+'
        if f2 & L != 0 {
            if c == 0x20 { pos += 1 }
            while f2 & L != 0 { pos += 1; f2 = fl(pos) }
            ends.append(pos); continue
        }
        // ' ?\p{N}+'
        if f2 & N != 0 {
            if c == 0x20 { pos += 1 }
            while f2 & N != 0 { pos += 1; f2 = fl(pos) }
            ends.append(pos); continue
        }
        // ' ?[^\s\p{L}\p{N}]+'
        if f2 & (W | L | N) == 0, f2 != 0 {
            if c == 0x20 { pos += 1 }
            while f2 & (W | L | N) == 0, f2 != 0 { pos += 1; f2 = fl(pos) }
            ends.append(pos); continue
        }
        var spaces = 0
        while fl(pos + spaces) & W != 0 { spaces += 1 }
        // '\s+(?!\S)'
        if spaces > 1, cpt(pos + spaces) != outOfRange {
            pos += spaces - 1; ends.append(pos); continue
        }
        // '\s+'
        if spaces > 0 {
            pos += spaces; ends.append(pos); continue
        }
        pos += 1
        ends.append(pos)
    }
}

/// llama.cpp's `unicode_regex_split_custom_llama3` (maxDigits 3) and `_qwen2` (maxDigits 1) over one segment.
@inline(__always)
private func splitLlama3(_ cpts: UnsafeBufferPointer<UInt32>, _ flags: UnsafeBufferPointer<UInt8>, _ segment: Range<Int>, maxDigits: Int, into ends: inout [Int]) {
    let end = segment.upperBound
    @inline(__always) func cpt(_ p: Int) -> UInt32 { p < end ? cpts[p] : outOfRange }
    @inline(__always) func fl(_ p: Int) -> UInt8 { p < end ? flags[p] : 0 }
    // Only ASCII letters matter in the contractions, and no other code point lower-cases to them.
    @inline(__always) func lower(_ c: UInt32) -> UInt32 { (c >= 0x41 && c <= 0x5A) ? c + 0x20 : c }
    var last = segment.lowerBound
    @inline(__always) func add(_ e: Int) { if e > last { ends.append(e) }; last = e }
    var pos = segment.lowerBound
    while pos < end {
        let c = cpts[pos]
        let f = flags[pos]
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == 0x27, pos + 1 < end {
            let n = lower(cpts[pos + 1])
            if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 {
                pos += 2; add(pos); continue
            }
            if pos + 2 < end {
                let nn = lower(cpts[pos + 2])
                if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) {
                    pos += 3; add(pos); continue
                }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(c == 0x0D || c == 0x0A || f & N != 0) {
            if f & L != 0 || fl(pos + 1) & L != 0 {
                pos += 1
                while fl(pos) & L != 0 { pos += 1 }
                add(pos); continue
            }
        }
        // \p{N}{1,3} (llama3) or \p{N} (qwen2)
        if f & N != 0 {
            var ini = pos
            while fl(pos) & N != 0 {
                pos += 1
                if pos - ini >= maxDigits { add(pos); ini = pos }
            }
            add(pos); continue
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        var f2 = c == 0x20 ? fl(pos + 1) : f
        if f2 & (W | L | N) == 0, f != 0 {
            if c == 0x20 { pos += 1 }
            while f2 & (W | L | N) == 0, f2 != 0 { pos += 1; f2 = fl(pos) }
            var c2 = cpt(pos)
            while c2 == 0x0D || c2 == 0x0A { pos += 1; c2 = cpt(pos) }
            add(pos); continue
        }
        var spaces = 0
        var lastEndRN = 0
        while fl(pos + spaces) & W != 0 {
            let c2 = cpt(pos + spaces)
            if c2 == 0x0D || c2 == 0x0A { lastEndRN = pos + spaces + 1 }
            spaces += 1
        }
        // \s*[\r\n]+
        if lastEndRN > 0 {
            pos = lastEndRN; add(pos); continue
        }
        // \s+(?!\S)
        if spaces > 1, cpt(pos + spaces) != outOfRange {
            pos += spaces - 1; add(pos); continue
        }
        // \s+
        if spaces > 0 {
            pos += spaces; add(pos); continue
        }
        pos += 1
        add(pos)
    }
}
