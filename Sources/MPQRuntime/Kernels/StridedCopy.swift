import Foundation
import MPQGraph

// Data-movement kernels shared by the shape, indexing and resize operators.
// They move elements as opaque words of the dtype's byte size, so they work
// for every element type.

/// Bytes of output one parallel chunk should move at least.
private let bytesPerChunk = 128 * 1024

/// Side of the square tiles a blocked transpose copies at a time.
private let transposeTile = 16

/// A data-movement kernel written once for any element width: it moves each
/// element as one unsigned integer `Word` of the element's byte size.
protocol ElementMover {
    func move<Word: FixedWidthInteger>(_ word: Word.Type)
}

extension ElementMover {
    /// Runs the kernel for elements of `dtype` (specialized per word width).
    func run(for dtype: DataType) {
        switch dtype.byteSize {
        case 1: move(UInt8.self)
        case 2: move(UInt16.self)
        case 4: move(UInt32.self)
        default: move(UInt64.self)
        }
    }
}

/// How many work items of `bytesPerItem` bytes one parallel chunk should hold.
func minimumChunk(bytesPerItem: Int) -> Int {
    max(1, bytesPerChunk / max(1, bytesPerItem))
}

/// Row-major walk over an index space that tracks the matching element
/// offsets in a source and a destination layout.
struct StridedCursor {
    private let shape: [Int]
    private let sourceStrides: [Int]
    private let destinationStrides: [Int]
    private(set) var index: [Int]
    private(set) var source = 0
    private(set) var destination = 0

    /// A cursor at the `position`-th index (row-major) of `shape`.
    init(shape: [Int], sourceStrides: [Int], destinationStrides: [Int], position: Int) {
        self.shape = shape
        self.sourceStrides = sourceStrides
        self.destinationStrides = destinationStrides
        index = [Int](repeating: 0, count: shape.count)
        var rest = position
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
            source += index[axis] * sourceStrides[axis]
            destination += index[axis] * destinationStrides[axis]
        }
    }

    /// Moves to the next index in row-major order.
    @inline(__always)
    mutating func advance() {
        var axis = shape.count - 1
        while axis >= 0 {
            index[axis] += 1
            source += sourceStrides[axis]
            destination += destinationStrides[axis]
            if index[axis] < shape[axis] { return }
            source -= sourceStrides[axis] * shape[axis]
            destination -= destinationStrides[axis] * shape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
}

extension Tensor {
    /// The elements of a strided view of `self` as a new contiguous tensor.
    ///
    /// Element `i` of the result (row-major in `shape`) is the source element at
    /// `offset + Σ i[k] * strides[k]`. Strides may be negative (reversed slices) or
    /// zero (broadcasts). A view that is the source layout itself is returned
    /// without copying.
    func gathered(shape: [Int], strides: [Int], offset: Int = 0, context: ExecutionContext) -> Tensor {
        let count = shape.reduce(1, *)
        if offset == 0, count == self.count,
           zip(zip(shape, strides), contiguousStrides(shape)).allSatisfy({ $0.0 == 1 || $0.1 == $1 }) {
            return reshaped(shape)
        }
        let result = context.allocate(dtype, shape)
        guard count > 0 else { return result }
        StridedCopy(source: rawPointer + offset * dtype.byteSize, strides: strides, destination: result.rawPointer,
                    shape: shape, context: context).run(for: dtype)
        return result
    }
}

/// Copies a strided source view into a contiguous destination of `shape`.
///
/// Dimensions are first simplified (size-1 axes dropped, axes that are
/// contiguous in the source merged). Then, by the innermost source stride:
/// 1 copies whole rows with memcpy; another axis with stride 1 (a transpose)
/// copies square tiles so that both sides stay in cache; anything else walks
/// elements.
private struct StridedCopy: ElementMover {
    let source: UnsafeRawPointer
    let strides: [Int]
    let destination: UnsafeMutableRawPointer
    let shape: [Int]
    let context: ExecutionContext

    func move<Word: FixedWidthInteger>(_ word: Word.Type) {
        var dims: [Int] = []
        var steps: [Int] = []
        for (size, step) in zip(shape, strides) where size != 1 {
            if let outer = dims.last, steps[steps.count - 1] == step * size {
                dims[dims.count - 1] = outer * size
                steps[steps.count - 1] = step
            } else {
                dims.append(size)
                steps.append(step)
            }
        }
        let src = source.assumingMemoryBound(to: Word.self)
        let dst = destination.assumingMemoryBound(to: Word.self)
        guard let inner = dims.last, let innerStep = steps.last else {
            dst[0] = src[0]
            return
        }
        let outerDims = Array(dims.dropLast())
        let outerSteps = Array(steps.dropLast())
        if innerStep != 0, innerStep != 1, let axis = outerSteps.firstIndex(of: 1) {
            copyTransposed(src, into: dst, dims: dims, steps: steps, rowAxis: axis, context: context)
            return
        }
        let rows = outerDims.reduce(1, *)
        let rowBytes = inner * MemoryLayout<Word>.stride
        let rowStrides = contiguousStrides(outerDims).map { $0 * inner }
        context.parallelFor(rows, minimumChunk: minimumChunk(bytesPerItem: rowBytes)) { range in
            var cursor = StridedCursor(shape: outerDims, sourceStrides: outerSteps,
                                       destinationStrides: rowStrides, position: range.lowerBound)
            for _ in range {
                let from = src + cursor.source
                let to = dst + cursor.destination
                if innerStep == 1 {
                    memcpy(to, from, rowBytes)
                } else {
                    for j in 0..<inner { to[j] = from[j * innerStep] }
                }
                cursor.advance()
            }
        }
    }
}

/// The transpose case of `copyStrided`: axis `rowAxis` is contiguous in the
/// source, the last axis is contiguous in the destination. Work items are
/// strips of `transposeTile` rows of `rowAxis` for every index of the other axes.
private func copyTransposed<Word: FixedWidthInteger>(
    _ src: UnsafePointer<Word>, into dst: UnsafeMutablePointer<Word>,
    dims: [Int], steps: [Int], rowAxis: Int, context: ExecutionContext
) {
    let last = dims.count - 1
    let columns = dims[last]
    let columnStep = steps[last]
    let rows = dims[rowAxis]
    let destinationStrides = contiguousStrides(dims)
    let rowStride = destinationStrides[rowAxis]
    var walkDims: [Int] = []
    var walkSource: [Int] = []
    var walkDestination: [Int] = []
    for axis in 0..<last where axis != rowAxis {
        walkDims.append(dims[axis])
        walkSource.append(steps[axis])
        walkDestination.append(destinationStrides[axis])
    }
    walkDims.append((rows + transposeTile - 1) / transposeTile)
    walkSource.append(transposeTile)
    walkDestination.append(transposeTile * rowStride)
    let strips = walkDims.reduce(1, *)
    let stripBytes = transposeTile * columns * MemoryLayout<Word>.stride
    context.parallelFor(strips, minimumChunk: minimumChunk(bytesPerItem: stripBytes)) { range in
        var cursor = StridedCursor(shape: walkDims, sourceStrides: walkSource,
                                   destinationStrides: walkDestination, position: range.lowerBound)
        for _ in range {
            let height = min(transposeTile, rows - cursor.index[cursor.index.count - 1] * transposeTile)
            let from = src + cursor.source
            let to = dst + cursor.destination
            var start = 0
            while start < columns {
                let end = min(start + transposeTile, columns)
                for i in 0..<height {
                    let target = to + i * rowStride
                    let origin = from + i
                    for j in start..<end { target[j] = origin[j * columnStep] }
                }
                start = end
            }
            cursor.advance()
        }
    }
}

/// Fills `destination` (contiguous, one index map per axis) from a contiguous
/// `source`: output element (i0, i1, ...) is source element
/// (maps[0][i0], maps[1][i1], ...), or `fill` where any map entry is negative.
/// Pad and nearest-neighbour Resize are both such per-axis gathers.
func gatherAlongAxes(from source: Tensor, maps: [[Int]], fill: Tensor?, into destination: Tensor,
                     context: ExecutionContext) {
    guard destination.count > 0 else { return }
    AxisGather(source: source, maps: maps, fill: fill, destination: destination, context: context)
        .run(for: source.dtype)
}

/// The kernel of `gatherAlongAxes`: one output row (all axes but the last) at a time.
private struct AxisGather: ElementMover {
    let source: Tensor
    let maps: [[Int]]
    let fill: Tensor?
    let destination: Tensor
    let context: ExecutionContext

    func move<Word: FixedWidthInteger>(_ word: Word.Type) {
        let src = source.rawPointer.assumingMemoryBound(to: Word.self)
        let dst = destination.rawPointer.assumingMemoryBound(to: Word.self)
        let value = fill.map { $0.rawPointer.assumingMemoryBound(to: Word.self)[0] } ?? 0
        guard let lastMap = maps.last else {
            dst[0] = src[0]
            return
        }
        // Map entries become source element offsets (-1 stays "fill").
        let strides = contiguousStrides(source.shape)
        let offsets = zip(maps, strides).map { map, stride in map.map { $0 < 0 ? -1 : $0 * stride } }
        let outerOffsets = Array(offsets.dropLast())
        let innerOffsets = offsets[offsets.count - 1]
        let outerShape = outerOffsets.map(\.count)
        let width = lastMap.count
        let rows = destination.count / width
        context.parallelFor(rows, minimumChunk: minimumChunk(bytesPerItem: width * MemoryLayout<Word>.stride)) { range in
            var index = [Int](repeating: 0, count: outerShape.count)
            var rest = range.lowerBound
            for axis in stride(from: outerShape.count - 1, through: 0, by: -1) {
                index[axis] = rest % outerShape[axis]
                rest /= outerShape[axis]
            }
            innerOffsets.withUnsafeBufferPointer { inner in
                for row in range {
                    let to = dst + row * width
                    var base = 0
                    var filled = false
                    for axis in 0..<outerShape.count {
                        let offset = outerOffsets[axis][index[axis]]
                        if offset < 0 { filled = true }
                        base += offset
                    }
                    if filled {
                        for j in 0..<width { to[j] = value }
                    } else {
                        let from = src + base
                        for j in 0..<width {
                            let offset = inner[j]
                            to[j] = offset < 0 ? value : from[offset]
                        }
                    }
                    var axis = outerShape.count - 1
                    while axis >= 0 {
                        index[axis] += 1
                        if index[axis] < outerShape[axis] { break }
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
        }
    }
}
