/// Token id by token text, looked up straight from a byte buffer without building a key
/// (open addressing over FNV-1a hashes; a repeated text keeps its last id, as llama.cpp's `token_to_id`).
struct TextIndex: Sendable {
    private var slots: [Int32]
    private let mask: Int
    private let arena: [UInt8]
    private let offsets: [Int]

    init(_ texts: [[UInt8]]) {
        var capacity = 16
        while capacity < texts.count * 2 { capacity *= 2 }
        mask = capacity - 1
        var arena: [UInt8] = []
        var offsets: [Int] = [0]
        for t in texts { arena.append(contentsOf: t); offsets.append(arena.count) }
        self.arena = arena
        self.offsets = offsets
        slots = [Int32](repeating: -1, count: capacity)
        arena.withUnsafeBufferPointer { a in
            for (i, t) in texts.enumerated() {
                var slot = TextIndex.hash(t) & mask
                while slots[slot] >= 0 {
                    let other = Int(slots[slot])
                    if offsets[other + 1] - offsets[other] == t.count,
                       t.withUnsafeBufferPointer({ p in (0 ..< t.count).allSatisfy { p[$0] == a[offsets[other] + $0] } }) {
                        break
                    }
                    slot = (slot + 1) & mask
                }
                slots[slot] = Int32(i)
            }
        }
    }

    @inline(__always)
    static func hash<C: Collection>(_ bytes: C) -> Int where C.Element == UInt8 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The id of the token whose text is bytes[start ..< start + count], or -1.
    @inline(__always)
    func lookup(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int32 {
        var slot = TextIndex.hash(UnsafeBufferPointer(rebasing: bytes[start ..< start + count])) & mask
        return arena.withUnsafeBufferPointer { a in
            while true {
                let id = slots[slot]
                if id < 0 { return -1 }
                let o = offsets[Int(id)]
                if offsets[Int(id) + 1] - o == count {
                    var equal = true
                    for k in 0 ..< count where a[o + k] != bytes[start + k] { equal = false; break }
                    if equal { return id }
                }
                slot = (slot + 1) & mask
            }
        }
    }
}
