import Foundation

/// State for one `encode` call: scratch buffers and a cache of the tokens of every distinct word seen.
struct EncodeSession {
    let tokenizer: GGUFTokenizer
    /// The whole text's UTF-8 (alive for the session), which cached words point into.
    let text: UnsafeBufferPointer<UInt8>
    let vocabularySize: Int32

    // Pre-tokenizer scratch.
    var cpts: [UInt32] = []
    var lengths: [UInt8] = []
    var flags: [UInt8] = []
    var ends: [Int] = []

    // Word cache: FNV-1a hash of the word's bytes -> where the word lies in `text` and its tokens in `cacheTokens`.
    struct CacheEntry { var start: Int, count: Int, tokenStart: Int, tokenCount: Int }
    var cache: [UInt64: CacheEntry] = [:]
    var cacheTokens: [Int32] = []

    // BPE scratch.
    var symbolIDs: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap = BinaryHeap<Bigram>()

    init(tokenizer: GGUFTokenizer, text: UnsafeBufferPointer<UInt8>) {
        self.tokenizer = tokenizer
        self.text = text
        vocabularySize = Int32(tokenizer.tokenTexts.count)
    }

    /// Tokenizes text[range] (no special tokens inside) and appends the ids.
    mutating func encodeFragment(_ range: Range<Int>, into out: inout [Int32]) {
        decodeCodepoints(text, range, into: &cpts, lengths: &lengths)
        flags.removeAll(keepingCapacity: true)
        for c in cpts { flags.append(CodepointClass.flags(c)) }
        ends.removeAll(keepingCapacity: true)
        cpts.withUnsafeBufferPointer { c in
            flags.withUnsafeBufferPointer { f in
                (tokenizer.preTokenizer ?? .gpt2).split(c, f, into: &ends)
            }
        }
        var cpt = 0
        var byte = range.lowerBound
        for end in ends {
            let start = byte
            while cpt < end { byte += Int(lengths[cpt]); cpt += 1 }
            encodeWord(start ..< byte, into: &out)
        }
    }

    mutating func encodeWord(_ word: Range<Int>, into out: inout [Int32]) {
        if word.count == 1 {
            appendSymbol(tokenizer.byteSymbols[Int(text[word.lowerBound])], into: &out)
            return
        }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for i in word { hash = (hash ^ UInt64(text[i])) &* 0x100_0000_01B3 }
        if let entry = cache[hash] {
            if entry.count == word.count,
               memcmp(text.baseAddress! + entry.start, text.baseAddress! + word.lowerBound, word.count) == 0 {
                out.append(contentsOf: cacheTokens[entry.tokenStart ..< entry.tokenStart + entry.tokenCount])
                return
            }
            // A hash collision: tokenize without caching.
            bpe(word, into: &out)
            return
        }
        let before = out.count
        bpe(word, into: &out)
        cache[hash] = CacheEntry(start: word.lowerBound, count: word.count, tokenStart: cacheTokens.count, tokenCount: out.count - before)
        cacheTokens.append(contentsOf: out[before...])
    }

    /// Appends a final symbol: its id when it is a vocabulary token, else llama.cpp's fallback (the vocabulary
    /// tokens of the single bytes of its text, those that exist).
    @inline(__always)
    func appendSymbol(_ id: Int32, into out: inout [Int32]) {
        if id < vocabularySize {
            out.append(id)
        } else {
            for b in tokenizer.syntheticTexts[Int(id - vocabularySize)] {
                let t = tokenizer.singleByteTokens[Int(b)]
                if t >= 0 { out.append(t) }
            }
        }
    }

    /// Byte-level BPE of one word (llama.cpp's `llm_tokenizer_bpe_session::tokenize` for one word): one symbol
    /// per byte, then repeatedly the lowest-ranked adjacent pair, leftmost first.
    mutating func bpe(_ word: Range<Int>, into out: inout [Int32]) {
        if tokenizer.ignoreMerges {
            let encoded = ByteLevel.encode(text[word])
            if let id = tokenizer.textToID[encoded], id < vocabularySize {
                out.append(id)
                return
            }
        }
        let n = word.count
        symbolIDs.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        for (k, i) in word.enumerated() {
            symbolIDs.append(tokenizer.byteSymbols[Int(text[i])])
            prev.append(Int32(k - 1))
            next.append(k + 1 < n ? Int32(k + 1) : -1)
        }
        heap.removeAll()
        let merges = tokenizer.merges
        @inline(__always) func addBigram(_ left: Int32, _ right: Int32, _ ids: [Int32], _ heap: inout BinaryHeap<Bigram>) {
            guard left >= 0, right >= 0 else { return }
            let l = ids[Int(left)], r = ids[Int(right)]
            guard let m = merges[UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))] else { return }
            heap.push(Bigram(key: (m >> 32) << 32 | UInt64(UInt32(left)), leftID: l, rightID: r, right: right, merged: Int32(truncatingIfNeeded: m)))
        }
        for k in 1 ..< n { addBigram(Int32(k - 1), Int32(k), symbolIDs, &heap) }
        while let b = heap.pop() {
            let left = Int(UInt32(truncatingIfNeeded: b.key)), right = Int(b.right)
            guard symbolIDs[left] == b.leftID, symbolIDs[right] == b.rightID else { continue }
            symbolIDs[left] = b.merged
            symbolIDs[right] = -1
            let after = next[right]
            next[left] = after
            if after >= 0 { prev[Int(after)] = Int32(left) }
            addBigram(prev[left], Int32(left), symbolIDs, &heap)
            addBigram(Int32(left), after, symbolIDs, &heap)
        }
        var k: Int32 = 0
        while k >= 0 {
            appendSymbol(symbolIDs[Int(k)], into: &out)
            k = next[Int(k)]
        }
    }
}

/// A candidate merge: key = rank << 32 | left index (smaller first, as llama.cpp's comparator orders them).
struct Bigram: HeapOrdered {
    var key: UInt64
    var leftID: Int32
    var rightID: Int32
    var right: Int32
    var merged: Int32

    @inline(__always)
    func precedes(_ other: Bigram) -> Bool { key < other.key }
}
