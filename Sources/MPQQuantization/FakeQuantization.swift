import Foundation
import MPQGraph
import MPQRuntime

/// Validated parameters of one quantizer laid out for a tensor shape: per-parameter scales and bounds
/// of x / scale (integers: qmin - zp and qmax - zp, the clamp; floats: ± the largest finite value, for
/// counting clipped elements; float32: ± infinity).
struct Quantizer {
    let format: QuantizationFormat
    let layout: QuantizerLayout
    let grid: FloatGrid?
    let scales: [Float]
    let lowers: [Float]
    let uppers: [Float]

    init(_ parameters: QuantizationParameters, shape: [Int]) throws {
        try parameters.validate(for: shape)
        let format = parameters.format
        self.format = format
        grid = FloatGrid(format)
        var scales = parameters.scales
        var lowers: [Float], uppers: [Float]
        if let largest = format.largestFiniteValue {
            let bound: Float = format == .float32 ? .infinity : largest
            lowers = Array(repeating: -bound, count: scales.count)
            uppers = Array(repeating: bound, count: scales.count)
        } else {
            lowers = parameters.zeroPoints.map { Float(format.qmin - $0) }
            uppers = parameters.zeroPoints.map { Float(format.qmax - $0) }
        }
        let count = shape.reduce(1, *)
        switch parameters.granularity {
        case .perTensor:
            layout = QuantizerLayout(rows: 1, runLength: count)
        case .perChannel(let axis):
            let a = try parameters.granularity.normalizedAxis(axis, shape)
            let channels = shape[a], inner = shape[(a + 1)...].reduce(1, *)
            if inner >= QuantizerLayout.shortestSharedRun {
                layout = QuantizerLayout(rows: channels, runLength: inner, rowStride: 1)
            } else {
                // One vector of channels x inner parameters, walked along each outer index.
                let expand = { (values: [Float]) in values.flatMap { Array(repeating: $0, count: inner) } }
                scales = expand(scales)
                lowers = expand(lowers)
                uppers = expand(uppers)
                layout = QuantizerLayout(rows: 1, runLength: channels * inner, perElement: true)
            }
        case let .perGroup(axis, size):
            let a = try parameters.granularity.normalizedAxis(axis, shape)
            let dim = shape[a], inner = shape[(a + 1)...].reduce(1, *)
            if inner == 1 {
                layout = QuantizerLayout(rows: count / size, runLength: size, rowStride: 1)
            } else {
                layout = QuantizerLayout(rows: dim, runLength: inner, rowsPerParameter: size,
                                         outerStride: dim / size * inner, rowStride: inner, perElement: true)
            }
        }
        self.scales = scales
        self.lowers = lowers
        self.uppers = uppers
    }

    /// Quantizes `x[range]` into `y[0..<range.count]`: dequantized values, or (`dequantize` false) integer
    /// codes / float values on the format's grid. float32 copies.
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, range: Range<Int>, dequantize: Bool) {
        scales.withUnsafeBufferPointer { s in
            lowers.withUnsafeBufferPointer { lo in
                uppers.withUnsafeBufferPointer { hi in
                    layout.forEachRun(in: range) { start, count, j in
                        let source = x + start, target = y + (start - range.lowerBound)
                        let qmin = Float(format.qmin)
                        switch (grid, layout.perElement) {
                        case (nil, _) where format == .float32:
                            target.update(from: source, count: count)
                        case (nil, false):
                            quantizeIntegers(source, target, count, SharedParameters(s: s[j], lo: lo[j], hi: hi[j]),
                                             dequantize: dequantize, codeOffset: qmin)
                        case (nil, true):
                            let p = PerElementParameters(s: s.baseAddress! + j, lo: lo.baseAddress! + j, hi: hi.baseAddress! + j)
                            quantizeIntegers(source, target, count, p, dequantize: dequantize, codeOffset: qmin)
                        case (let grid?, false):
                            quantizeFloats(source, target, count, SharedParameters(s: s[j], lo: lo[j], hi: hi[j]),
                                           grid: grid, dequantize: dequantize)
                        case (let grid?, true):
                            let p = PerElementParameters(s: s.baseAddress! + j, lo: lo.baseAddress! + j, hi: hi.baseAddress! + j)
                            quantizeFloats(source, target, count, p, grid: grid, dequantize: dequantize)
                        }
                    }
                }
            }
        }
    }

    /// Elements of `x[range]` beyond the representable range (integers: x / scale outside
    /// [qmin - zp, qmax - zp]; floats: |x / scale| above the largest finite value; float32: none).
    func clippedCount(_ x: UnsafePointer<Float>, range: Range<Int>) -> Int {
        var clipped = 0
        scales.withUnsafeBufferPointer { s in
            lowers.withUnsafeBufferPointer { lo in
                uppers.withUnsafeBufferPointer { hi in
                    layout.forEachRun(in: range) { start, count, j in
                        if layout.perElement {
                            let p = PerElementParameters(s: s.baseAddress! + j, lo: lo.baseAddress! + j, hi: hi.baseAddress! + j)
                            clipped += countClipped(x + start, count, p)
                        } else {
                            clipped += countClipped(x + start, count, SharedParameters(s: s[j], lo: lo[j], hi: hi[j]))
                        }
                    }
                }
            }
        }
        return clipped
    }

    /// Runs `body(range, scratch)` over `0..<count` in blocks of at most `blockSize` elements (on all of
    /// `context`'s threads when given), with `scratch` holding the block quantized as `run` writes it.
    func forEachBlock(_ x: UnsafePointer<Float>, count: Int, dequantize: Bool, context: ExecutionContext?,
                      _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        let blockSize = 4096
        func work(_ chunk: Range<Int>) {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: blockSize)
            defer { scratch.deallocate() }
            for start in stride(from: chunk.lowerBound, to: chunk.upperBound, by: blockSize) {
                let block = start..<min(start + blockSize, chunk.upperBound)
                run(x, scratch, range: block, dequantize: dequantize)
                body(block, scratch)
            }
        }
        if let context {
            context.parallelFor(count, work)
        } else {
            work(0..<count)
        }
    }
}

extension Tensor {
    /// Quantize-dequantize (float32 in, float32 out), exactly as ONNX QuantizeLinear followed by
    /// DequantizeLinear computes it:
    /// - integers: q = clamp(round_half_even(x / scale) + zp, qmin, qmax), y = (q - zp) * scale (x / scale
    ///   is a float32 division, as ONNX Runtime does; NaN gives qmin, as ONNX Runtime's kernels do);
    /// - fp16/bf16: round to nearest even, overflow to infinity (ONNX Cast); NaN stays NaN;
    /// - fp8: y = cast_fp8_saturating(x / scale) * scale; E4M3FN max 448 (no infinities; NaN stays NaN;
    ///   ±inf saturate to ±448), E5M2 max 57344 (±inf saturate to the max, as ONNX's saturate=1),
    ///   subnormals supported, round to nearest even;
    /// - float32: `self`.
    /// Parameters are checked against the shape (`MPQError.shapeMismatch` for a bad axis, group size or
    /// number of scales); runs on `context`'s threads when given.
    public func fakeQuantized(_ parameters: QuantizationParameters, context: ExecutionContext? = nil) throws -> Tensor {
        let (source, quantizer) = try prepared(parameters)
        if parameters.format == .float32 { return self }
        let result = Tensor(uninitialized: .float32, shape: shape)
        withExtendedLifetime(source) {
            let x = source.pointer(as: Float.self), y = result.pointer(as: Float.self)
            if let context {
                context.parallelFor(count) { range in
                    quantizer.run(x, y + range.lowerBound, range: range, dequantize: true)
                }
            } else {
                quantizer.run(x, y, range: 0..<count, dequantize: true)
            }
        }
        return result
    }

    /// The integer codes (integer formats, in `format.storageType`: int8/int16 signed, uint8/uint16
    /// unsigned) or the float bit patterns (fp16 -> .float16 tensor, bf16 -> .bfloat16, fp8 -> .uint8
    /// holding the OCP FP8 bits, NaN as 0x7F (E4M3FN) / 0x7E (E5M2) with the sign kept), for export.
    /// float32 gives `self`.
    public func quantized(_ parameters: QuantizationParameters, context: ExecutionContext? = nil) throws -> Tensor {
        let (source, quantizer) = try prepared(parameters)
        let format = parameters.format
        if format == .float32 { return self }
        let result = Tensor(uninitialized: format.storageType, shape: shape)
        let raw = result.rawPointer
        withExtendedLifetime(source) {
            quantizer.forEachBlock(source.pointer(as: Float.self), count: count, dequantize: false, context: context) { block, codes in
                // The values are on the grid and in range, so every conversion is exact.
                let n = block.count, target = raw + block.lowerBound * format.storageType.byteSize
                switch (format, format.storageType) {
                case (.integer, .int8):
                    let t = target.assumingMemoryBound(to: Int8.self)
                    for i in 0..<n { t[i] = Int8(codes[i]) }
                case (.integer, .int16):
                    let t = target.assumingMemoryBound(to: Int16.self)
                    for i in 0..<n { t[i] = Int16(codes[i]) }
                case (.integer, .uint8):
                    let t = target.assumingMemoryBound(to: UInt8.self)
                    for i in 0..<n { t[i] = UInt8(codes[i]) }
                case (.integer, _):
                    let t = target.assumingMemoryBound(to: UInt16.self)
                    for i in 0..<n { t[i] = UInt16(codes[i]) }
                case (.float16, _):
                    let t = target.assumingMemoryBound(to: Float16.self)
                    for i in 0..<n { t[i] = Float16(codes[i]) }
                case (.bfloat16, _):
                    // The high half is the bf16 value; NaN keeps its sign and stays quiet.
                    let t = target.assumingMemoryBound(to: UInt16.self)
                    for i in 0..<n { t[i] = UInt16(truncatingIfNeeded: codes[i].bitPattern >> 16) | (codes[i].isNaN ? 0x40 : 0) }
                case (.float8E4M3FN, _), (.float8E5M2, _):
                    let t = target.assumingMemoryBound(to: UInt8.self), grid = quantizer.grid!
                    let nan: UInt8 = format == .float8E4M3FN ? 0x7F : 0x7E
                    for i in 0..<n { t[i] = float8Bits(codes[i], grid, nan: nan) }
                case (.float32, _):
                    break
                }
            }
        }
        return result
    }

    /// Quantization error statistics vs `self`: SQNR in dB = 10 log10(sum x^2 / sum (x - q)^2) (infinite
    /// when exact), and the fraction of elements clipped (beyond the representable range: x / scale
    /// outside [qmin - zp, qmax - zp] for integers, |x / scale| above the largest finite value for floats).
    /// Streams over the tensor in blocks (no quantized copy is kept).
    public func quantizationError(_ parameters: QuantizationParameters, context: ExecutionContext? = nil) throws
        -> (sqnr: Double, clippedFraction: Double) {
        let (source, quantizer) = try prepared(parameters)
        var partials: [(start: Int, signal: Double, noise: Double, clipped: Int)] = []
        let lock = NSLock()
        withExtendedLifetime(source) {
            let x = source.pointer(as: Float.self)
            quantizer.forEachBlock(x, count: count, dequantize: true, context: context) { block, y in
                var signal = 0.0, noise = 0.0
                let values = x + block.lowerBound
                for i in 0..<block.count {
                    let value = Double(values[i]), error = value - Double(y[i])
                    signal += value * value
                    noise += error * error
                }
                let clipped = quantizer.clippedCount(x, range: block)
                lock.lock()
                partials.append((block.lowerBound, signal, noise, clipped))
                lock.unlock()
            }
        }
        // Sum in element order so the result does not depend on thread timing.
        let ordered = partials.sorted { $0.start < $1.start }
        let signal = ordered.reduce(0) { $0 + $1.signal }, noise = ordered.reduce(0) { $0 + $1.noise }
        let clipped = ordered.reduce(0) { $0 + $1.clipped }
        let sqnr = noise == 0 ? Double.infinity : 10 * log10(signal / noise)
        return (sqnr, count == 0 ? 0 : Double(clipped) / Double(count))
    }

    /// This tensor in row-major order (runtime values may be in a kernel library's blocked layout) and
    /// its quantizer; the tensor must hold float32.
    private func prepared(_ parameters: QuantizationParameters) throws -> (Tensor, Quantizer) {
        guard dtype == .float32 else {
            throw MPQError.typeMismatch("\(parameters.format) quantization needs a float32 tensor, not \(dtype)")
        }
        return (try rowMajor(), try Quantizer(parameters, shape: shape))
    }
}

/// OCP FP8 bits of `value`, which lies on `grid` within its range (or is NaN): exponent bias
/// 1 - minimumExponent, subnormals below 2^minimumExponent; NaN is `nan` with the sign kept.
private func float8Bits(_ value: Float, _ grid: FloatGrid, nan: UInt8) -> UInt8 {
    let sign = UInt8(truncatingIfNeeded: value.bitPattern >> 24) & 0x80
    if value.isNaN { return sign | nan }
    let magnitude = abs(value)
    if magnitude < grid.smallestNormal {
        let spacing = Float(sign: .plus, exponent: grid.minimumExponent - grid.mantissaBits, significand: 1)
        return sign | UInt8(magnitude / spacing)
    }
    let exponent = Int(magnitude.exponent) - grid.minimumExponent + 1
    let fraction = (magnitude.bitPattern >> grid.droppedBits) & ((1 << UInt32(grid.mantissaBits)) - 1)
    return sign | UInt8(exponent << grid.mantissaBits) | UInt8(fraction)
}
