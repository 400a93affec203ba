/// An element of a `BinaryHeap`: `precedes` is true when `self` comes out before `other`.
protocol HeapOrdered {
    func precedes(_ other: Self) -> Bool
}

/// A binary heap, the element that precedes all others first: the merge queue of both the BPE
/// (lowest rank) and the SentencePiece (highest score) tokenizers.
struct BinaryHeap<Element: HeapOrdered> {
    var items: [Element] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ element: Element) {
        items.append(element)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].precedes(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let count = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < count && items[l].precedes(items[best]) { best = l }
                if r < count && items[r].precedes(items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
