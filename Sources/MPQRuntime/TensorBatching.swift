import MPQGraph

extension Tensor {
    /// Rows `range` of the leading axis (a copy).
    public func rows(_ range: Range<Int>) -> Tensor {
        let rowBytes = shape.isEmpty || shape[0] == 0 ? 0 : byteCount / shape[0]
        let result = Tensor(uninitialized: dtype, shape: [range.count] + shape.dropFirst())
        result.rawPointer.copyMemory(from: rawPointer + range.lowerBound * rowBytes, byteCount: range.count * rowBytes)
        return result
    }

    /// Element `index` of the leading axis, keeping that axis with size 1.
    public func sample(_ index: Int) -> Tensor {
        guard let batch = shape.first, batch > 0 else { return self }
        return rows(index..<(index + 1))
    }

    /// Tensors of equal type joined along `axis` (same sizes on all other axes).
    public static func concatenate(_ parts: [Tensor], axis: Int) throws -> Tensor {
        guard let first = parts.first else { throw MPQError.invalidInput("nothing to concatenate") }
        let rank = first.rank
        guard rank >= 1 else {
            throw MPQError.shapeMismatch("cannot concatenate 0-d (scalar) arrays: samples go along axis 0 of arrays of rank >= 1")
        }
        let axis = try normalizedAxis(axis, rank: rank)
        for part in parts {
            guard part.dtype == first.dtype else {
                throw MPQError.typeMismatch("cannot concatenate \(first.dtype) with \(part.dtype)")
            }
            guard part.rank == rank,
                  (0..<rank).allSatisfy({ $0 == axis || part.shape[$0] == first.shape[$0] }) else {
                throw MPQError.shapeMismatch("cannot concatenate \(first.shape) with \(part.shape) on axis \(axis)")
            }
        }
        var shape = first.shape
        guard let total = parts.reduce(Optional(0), { sum, part in sum.flatMap { SizeLimits.add($0, part.shape[axis]) } }) else {
            throw MPQError.limitExceeded("concatenated size along axis \(axis) overflows a 64-bit integer")
        }
        shape[axis] = total
        try SizeLimits.checkedCount(shape, dtype: first.dtype, what: "the concatenation of \(parts.count) arrays")
        let result = Tensor(uninitialized: first.dtype, shape: shape)
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *) * first.dtype.byteSize
        let rowBytes = shape[axis] * inner
        var offset = 0
        for part in parts {
            let partBytes = part.shape[axis] * inner
            for o in 0..<outer {
                (result.rawPointer + o * rowBytes + offset)
                    .copyMemory(from: part.rawPointer + o * partBytes, byteCount: partBytes)
            }
            offset += partBytes
        }
        return result
    }
}
