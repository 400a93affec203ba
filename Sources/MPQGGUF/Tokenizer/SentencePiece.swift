import Foundation

/// SentencePiece BPE as llama.cpp's `llm_tokenizer_spm_session`: the whole fragment (spaces written as U+2581,
/// optionally with a space put first) starts as one symbol per UTF-8 character; the adjacent pair whose
/// concatenation is the highest-scoring vocabulary token is merged first (leftmost on ties) until no pair is a
/// token; a final symbol that is not a token is written as byte tokens (`<0xXX>`).
struct SentencePieceSession {
    let tokenizer: GGUFTokenizer
    var text: [UInt8] = []
    var start: [Int32] = []
    var length: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap = BinaryHeap<SPMBigram>()

    init(tokenizer: GGUFTokenizer) {
        self.tokenizer = tokenizer
    }

    mutating func encode(_ fragment: Slice<UnsafeBufferPointer<UInt8>>, spacePrefix: Bool, into out: inout [Int32]) {
        // Escape spaces: " " -> U+2581 (E2 96 81).
        text.removeAll(keepingCapacity: true)
        if spacePrefix { text.append(contentsOf: [0xE2, 0x96, 0x81]) }
        for b in fragment {
            if b == 0x20 { text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { text.append(b) }
        }
        guard !text.isEmpty else { return }
        guard tokenizer.newlineSeparates else {
            encodeRange(0 ..< text.count, into: &out)
            return
        }
        // No token contains "\n", so no merge crosses one: each line is tokenized on its own (same result,
        // much smaller queues).
        var lineStart = 0
        for i in 0 ..< text.count where text[i] == 0x0A {
            if i > lineStart { encodeRange(lineStart ..< i, into: &out) }
            encodeRange(i ..< i + 1, into: &out)
            lineStart = i + 1
        }
        if lineStart < text.count { encodeRange(lineStart ..< text.count, into: &out) }
    }

    /// Tokenizes text[range] as one symbol chain.
    private mutating func encodeRange(_ range: Range<Int>, into out: inout [Int32]) {
        start.removeAll(keepingCapacity: true)
        length.removeAll(keepingCapacity: true)
        var offset = range.lowerBound
        while offset < range.upperBound {
            let b = text[offset]
            let n = b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4 // llama.cpp's unicode_len_utf8
            let len = min(n, range.upperBound - offset)
            start.append(Int32(offset))
            length.append(Int32(len))
            offset += len
        }
        let count = start.count
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        for k in 0 ..< count {
            prev.append(Int32(k - 1))
            next.append(k + 1 < count ? Int32(k + 1) : -1)
        }
        heap.removeAll()
        for i in 1 ..< max(count, 1) { tryAddBigram(Int32(i - 1), Int32(i)) }
        while let bigram = heap.pop() {
            let l = Int(bigram.left), r = Int(bigram.right)
            guard length[l] > 0, length[r] > 0, length[l] + length[r] == bigram.size else { continue }
            length[l] += length[r]
            length[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            tryAddBigram(prev[l], Int32(l))
            tryAddBigram(Int32(l), next[l])
        }
        text.withUnsafeBufferPointer { bytes in
            var i: Int32 = 0
            while i >= 0 {
                let s = Int(start[Int(i)]), n = Int(length[Int(i)])
                let id = tokenizer.textIndex.lookup(bytes, s, n)
                if id >= 0 {
                    out.append(id)
                } else {
                    // Merged symbols are always tokens, so this is a single character missing from the vocabulary.
                    for b in bytes[s ..< s + n] {
                        let t = tokenizer.byteTokens[Int(b)]
                        if t >= 0 { out.append(t) }
                    }
                }
                i = next[Int(i)]
            }
        }
    }

    private mutating func tryAddBigram(_ left: Int32, _ right: Int32) {
        guard left >= 0, right >= 0 else { return }
        let s = Int(start[Int(left)]), n = Int(length[Int(left)] + length[Int(right)])
        guard n <= tokenizer.maxTokenLength else { return }
        let id = text.withUnsafeBufferPointer { tokenizer.textIndex.lookup($0, s, n) }
        guard id >= 0 else { return }
        heap.push(SPMBigram(score: tokenizer.scores[Int(id)], left: left, right: right, size: Int32(n)))
    }
}

struct SPMBigram: HeapOrdered {
    var score: Float
    var left: Int32
    var right: Int32
    var size: Int32

    /// llama.cpp's order: higher score first, then the leftmost.
    @inline(__always)
    func precedes(_ other: SPMBigram) -> Bool {
        score > other.score || (score == other.score && left < other.left)
    }
}
