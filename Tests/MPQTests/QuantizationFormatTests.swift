import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// Every integer format: 2...16 bits, signed or not, symmetric or not, full or narrow range.
private let allIntegerFormats: [QuantizationFormat] = (2...16).flatMap { bits in
    [true, false].flatMap { signed in
        [true, false].flatMap { symmetric in
            [false, true].map { QuantizationFormat.integer(bits: bits, signed: signed, symmetric: symmetric, narrowRange: $0) }
        }
    }
}

private let floatFormats: [QuantizationFormat] = [.float16, .bfloat16, .float8E4M3FN, .float8E5M2]

/// Granularities for a [3, 4, 10] tensor covering every layout the kernels use: shared runs, per-channel
/// with short runs (expanded parameter vectors), groups along the last dim and along an inner dim.
private let granularities: [QuantizationGranularity] = [
    .perTensor, .perChannel(axis: 0), .perChannel(axis: -2), .perChannel(axis: 2),
    .perGroup(axis: 2, size: 5), .perGroup(axis: 1, size: 2), .perGroup(axis: 0, size: 3),
]
private let caseShape = [3, 4, 10]

/// Inputs every reference case includes: NaN of both signs, infinities, signed zeros, float32 denormals,
/// huge values.
private let specialValues: [Float] = [
    .nan, -.nan, .infinity, -.infinity, 0, -0.0, 1e-40, -3e-42, 1e-45, 1e30, -1e30,
]

/// The parameter index element `flat` of a tensor of `shape` uses (straight from the ONNX definition).
private func parameterIndex(_ flat: Int, shape: [Int], _ granularity: QuantizationGranularity) -> Int {
    var index = [Int](repeating: 0, count: shape.count)
    var rest = flat
    for axis in shape.indices.reversed() {
        index[axis] = rest % shape[axis]
        rest /= shape[axis]
    }
    switch granularity {
    case .perTensor: return 0
    case .perChannel(let axis): return index[(axis + shape.count) % shape.count]
    case let .perGroup(axis, size):
        var groupShape = shape
        groupShape[axis] /= size
        index[axis] /= size
        return zip(index, contiguousStrides(groupShape)).map(*).reduce(0, +)
    }
}

/// Bit patterns as exported: integer codes widened, float formats' raw bits.
private func codes(_ tensor: Tensor) -> [Int] {
    switch tensor.dtype {
    case .float16: return tensor.scalars(as: Float16.self).map { Int($0.bitPattern) }
    case .bfloat16:
        return UnsafeBufferPointer(start: tensor.rawPointer.assumingMemoryBound(to: UInt16.self), count: tensor.count).map { Int($0) }
    default: return tensor.integers()
    }
}

/// The first element where the floats differ in bits (NaNs of any payload agree), described.
private func firstDifference(_ actual: [Float], _ expected: [Float], inputs: [Float], skip: (Int) -> Bool = { _ in false }) -> String? {
    guard actual.count == expected.count else { return "\(actual.count) elements, expected \(expected.count)" }
    for i in actual.indices where !skip(i) {
        let a = actual[i], e = expected[i]
        if a.bitPattern != e.bitPattern && !(a.isNaN && e.isNaN) {
            return "element \(i) (x = \(inputs[i])): \(a), expected \(e)"
        }
    }
    return nil
}

/// One fake quantization checked against numpy, onnx.reference and ONNX Runtime.
private struct ReferenceCase {
    var name: String
    var x: Tensor
    var parameters: QuantizationParameters

    var formatKind: String {
        switch parameters.format {
        case .integer: return "integer"
        case .float16: return "float16"
        case .bfloat16: return "bfloat16"
        case .float8E4M3FN: return "float8e4m3fn"
        case .float8E5M2: return "float8e5m2"
        case .float32: return "float32"
        }
    }

    /// Whether onnx.reference / ONNX Runtime have the format (full-range int2/4/8/16, uint likewise, fp8).
    var onnxHasFormat: Bool {
        switch parameters.format {
        case let .integer(bits, _, _, narrowRange): return [2, 4, 8, 16].contains(bits) && !narrowRange
        case .float8E4M3FN, .float8E5M2: return true
        default: return false
        }
    }

    func write(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let shape = try parameters.granularity.parameterShape(for: x.shape)
        try NPY.write(x, to: folder.appendingPathComponent("x.npy").path)
        try NPY.write(Tensor(shape: shape, scalars: parameters.scales), to: folder.appendingPathComponent("scale.npy").path)
        try NPY.write(Tensor(shape: shape, scalars: parameters.zeroPoints.map { Int64($0) }),
                      to: folder.appendingPathComponent("zero_point.npy").path)
        var axis = 0, block = 0
        switch parameters.granularity {
        case .perTensor: break
        case .perChannel(let a): axis = (a + x.rank) % x.rank
        case let .perGroup(a, size): (axis, block) = ((a + x.rank) % x.rank, size)
        }
        let json: [String: Any] = ["format": formatKind, "qmin": parameters.format.qmin, "qmax": parameters.format.qmax,
                                   "axis": axis, "block": block]
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("case.json"))
    }
}

/// Runs the python references on all cases and records an issue for every disagreement of
/// `fakeQuantized` (bit-exact) or `quantized` (codes / bit patterns).
private func expectMatchesReferences(_ cases: [ReferenceCase], sourceLocation: SourceLocation = #_sourceLocation) throws {
    let root = temporaryFolder("mpq-quantize")
    defer { try? FileManager.default.removeItem(at: root) }
    for (index, c) in cases.enumerated() {
        try c.write(to: root.appendingPathComponent(String(format: "%05d", index)))
    }
    try runPython(["Tests/Scripts/quantize_reference.py", root.path])
    for (index, c) in cases.enumerated() {
        let folder = root.appendingPathComponent(String(format: "%05d", index))
        func load(_ name: String) throws -> Tensor? {
            let path = folder.appendingPathComponent("\(name).npy").path
            return FileManager.default.fileExists(atPath: path) ? try NPY.read(contentsOf: path) : nil
        }
        if let error = try? String(contentsOf: folder.appendingPathComponent("error.txt"), encoding: .utf8) {
            Issue.record("\(c.name): reference failed: \(error)", sourceLocation: sourceLocation)
            continue
        }
        let inputs = c.x.scalars(as: Float.self)
        let y = try c.x.fakeQuantized(c.parameters).scalars(as: Float.self)
        let q = codes(try c.x.quantized(c.parameters))
        // onnx.reference casts rint(x / s) to int32 before clipping, which is platform-defined for
        // non-finite and huge values: compare those with numpy and ONNX Runtime only.
        let outsideInt32 = { (i: Int) in c.parameters.format.isInteger && !(abs(inputs[i]) < 1e20) }
        var references: [(String, Tensor?, Tensor?, (Int) -> Bool)] = [
            ("numpy", try load("y_numpy"), try load("q_numpy"), { _ in false }),
        ]
        if c.onnxHasFormat {
            references.append(("onnx.reference", try load("y_onnx"), try load("q_onnx"), outsideInt32))
            if c.parameters.format.bitWidth != 2 {
                references.append(("ONNX Runtime", try load("y_ort"), nil, { _ in false }))
            }
        }
        for (reference, expectedY, expectedQ, skip) in references {
            guard let expectedY else {
                Issue.record("\(c.name): no \(reference) result", sourceLocation: sourceLocation)
                continue
            }
            if let problem = firstDifference(y, expectedY.scalars(as: Float.self), inputs: inputs, skip: skip) {
                Issue.record("\(c.name): fakeQuantized vs \(reference): \(problem)", sourceLocation: sourceLocation)
            }
            guard let expectedQ else { continue }
            let expected = codes(expectedQ)
            if let i = q.indices.first(where: { !skip($0) && q[$0] != expected[$0] }) {
                Issue.record("\(c.name): quantized vs \(reference): element \(i) (x = \(inputs[i])): \(q[i]), expected \(expected[i])",
                             sourceLocation: sourceLocation)
            }
        }
    }
}

/// x over the grid of each element's parameter: codes (relative to the zero point) around both ends and
/// around zero, exactly on them, half a step off (rounding ties) and a quarter step off; then the special values.
private func gridInputs(shape: [Int], _ parameters: QuantizationParameters) -> Tensor {
    let count = shape.reduce(1, *)
    var values = (0..<count).map { i -> Float in
        let p = parameterIndex(i, shape: shape, parameters.granularity)
        let low = parameters.format.qmin - parameters.zeroPoints[p], high = parameters.format.qmax - parameters.zeroPoints[p]
        let codes = [low - 2, low - 1, low, low + 1, -2, -1, 0, 1, 2, high - 1, high, high + 1, high + 2]
        let offsets: [Float] = [0.5, -0.5, 0, 0.25, 1.5]
        return (Float(codes[i % codes.count]) + offsets[(i / codes.count) % offsets.count]) * parameters.scales[p]
    }
    for (i, special) in specialValues.enumerated() { values[(i * 7 + 3) % count] = special }
    return Tensor(shape: shape, scalars: values)
}

/// Uniform x in [-3, 3] with the special values mixed in.
private func randomInputs(shape: [Int], using rng: inout SeededGenerator) -> Tensor {
    let count = shape.reduce(1, *)
    var values = (0..<count).map { _ in Float.random(in: -3...3, using: &rng) }
    for (i, special) in specialValues.enumerated() { values[(i * 5 + 1) % count] = special }
    return Tensor(shape: shape, scalars: values)
}

/// Ranges for `count` parameters: random ones, and (when there are enough) a zero range, a positive-only
/// and a negative-only one.
private func randomRanges(_ count: Int, using rng: inout SeededGenerator) -> (minimums: [Float], maximums: [Float]) {
    var minimums = (0..<count).map { _ in Float.random(in: -2.5...0.5, using: &rng) }
    var maximums = (0..<count).map { _ in Float.random(in: -0.5...2.5, using: &rng) }
    if count >= 3 {
        (minimums[0], maximums[0]) = (0, 0)
        (minimums[1], maximums[1]) = (0.4, 2)
        (minimums[2], maximums[2]) = (-1.5, -0.2)
    }
    return (minimums, maximums)
}

/// Values where a float format's rounding has edges: subnormal spacing and its ties, the normal/subnormal
/// border, ties at 1, the largest value, just above it, its rounding tie, overflow, then random magnitudes.
private func floatEdgeValues(_ format: QuantizationFormat, using rng: inout SeededGenerator) -> [Float] {
    let (mantissaBits, minimumExponent): (Int, Int) = switch format {
    case .float16: (10, -14)
    case .bfloat16: (7, -126)
    case .float8E4M3FN: (3, -6)
    default: (2, -14)
    }
    func power(_ e: Int) -> Float { Float(sign: .plus, exponent: e, significand: 1) }
    let spacing = power(minimumExponent - mantissaBits), smallestNormal = power(minimumExponent)
    let ulpOfOne = power(-mantissaBits)
    let largest = format.largestFiniteValue!
    let topUlp = power(Int(largest.exponent) - mantissaBits)
    var values: [Float] = [
        spacing, spacing / 2, 3 * spacing / 2, 5 * spacing / 2, 0.49 * spacing, 0.51 * spacing,
        smallestNormal - spacing, smallestNormal - spacing / 2, smallestNormal, smallestNormal + spacing / 2,
        smallestNormal + 3 * spacing / 2, 1, 1 + ulpOfOne / 2, 1 + 3 * ulpOfOne / 2, 1 + ulpOfOne / 4,
        largest, largest - topUlp / 2, largest + topUlp / 4, largest + topUlp / 2, largest + topUlp,
        largest.nextUp, 2 * largest, .greatestFiniteMagnitude,
    ]
    values += values.map { -$0 }
    values += specialValues
    values += (0..<200).map { _ in
        let exponent = Int.random(in: (minimumExponent - mantissaBits - 2)...(Int(largest.exponent) + 1), using: &rng)
        return Float(sign: Bool.random(using: &rng) ? .minus : .plus, exponent: exponent,
                     significand: Float.random(in: 1..<2, using: &rng))
    }
    return values
}

@Suite struct QuantizationFormatTests {
    // MARK: Names

    @Test func parsesFormatNames() throws {
        let expected: [(String, QuantizationFormat)] = [
            ("int8", .integer(bits: 8, signed: true, symmetric: true)),
            ("INT8", .integer(bits: 8, signed: true, symmetric: true)),
            ("uint8", .integer(bits: 8, signed: false, symmetric: false)),
            ("int4", .integer(bits: 4, signed: true, symmetric: true)),
            ("uint4", .integer(bits: 4, signed: false, symmetric: false)),
            ("int16", .integer(bits: 16, signed: true, symmetric: true)),
            ("uint16", .integer(bits: 16, signed: false, symmetric: false)),
            ("int2", .integer(bits: 2, signed: true, symmetric: true)),
            ("int7", .integer(bits: 7, signed: true, symmetric: true)),
            ("int8-asym", .integer(bits: 8, signed: true, symmetric: false)),
            ("uint8-sym", .integer(bits: 8, signed: false, symmetric: true)),
            ("int8-sym", .integer(bits: 8, signed: true, symmetric: true)),
            ("int8-narrow", .integer(bits: 8, signed: true, symmetric: true, narrowRange: true)),
            ("Int8-Narrow-Asym", .integer(bits: 8, signed: true, symmetric: false, narrowRange: true)),
            ("uint12-asym-narrow", .integer(bits: 12, signed: false, symmetric: false, narrowRange: true)),
            ("fp16", .float16), ("Float16", .float16), ("bf16", .bfloat16), ("BFLOAT16", .bfloat16),
            ("fp8e4m3", .float8E4M3FN), ("float8e4m3fn", .float8E4M3FN), ("fp8e4m3fn", .float8E4M3FN),
            ("fp8e5m2", .float8E5M2), ("float8e5m2", .float8E5M2), ("fp32", .float32), ("float32", .float32),
        ]
        for (name, format) in expected {
            #expect(try QuantizationFormat(parsing: name) == format, "\(name)")
        }
    }

    @Test(arguments: ["int1", "int17", "int", "uint", "int8-sym-asym", "int8-narrow-narrow", "int8-", "int8x",
                      "int+8", "int 8", "fp8", "float8", "", "q8", "-int8", "int-8", "uint0"])
    func rejectsUnknownNames(_ name: String) {
        do {
            _ = try QuantizationFormat(parsing: name)
            Issue.record("'\(name)' parsed")
        } catch let error as MPQError {
            guard case .invalidInput(let message) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(message.contains("'\(name)'") && message.contains("accepted") && message.contains("fp8e4m3"))
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func canonicalNamesRoundTrip() throws {
        for format in allIntegerFormats + floatFormats + [.float32] {
            #expect(try QuantizationFormat(parsing: format.name) == format, "\(format.name)")
            #expect(format.description == format.name)
        }
        #expect(QuantizationFormat.integer(bits: 8, signed: true, symmetric: true).name == "int8")
        #expect(QuantizationFormat.integer(bits: 8, signed: false, symmetric: false).name == "uint8")
        #expect(QuantizationFormat.integer(bits: 4, signed: false, symmetric: true, narrowRange: true).name == "uint4-sym-narrow")
        #expect(QuantizationFormat.float8E4M3FN.name == "fp8e4m3")
    }

    @Test func codableUsesNames() throws {
        let formats: [QuantizationFormat] = [.integer(bits: 8, signed: true, symmetric: false), .bfloat16, .float8E5M2]
        let json = String(decoding: try JSONEncoder().encode(formats), as: UTF8.self)
        #expect(json == #"["int8-asym","bf16","fp8e5m2"]"#)
        #expect(try JSONDecoder().decode([QuantizationFormat].self, from: Data(#"["INT8-asym","bfloat16","float8e5m2"]"#.utf8)) == formats)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([QuantizationFormat].self, from: Data(#"["int99"]"#.utf8)) }
        let granularities: [QuantizationGranularity] = [.perTensor, .perChannel(axis: 1), .perGroup(axis: 0, size: 32)]
        #expect(try JSONDecoder().decode([QuantizationGranularity].self, from: JSONEncoder().encode(granularities)) == granularities)
    }

    @Test func integerRangesAndWidths() {
        let table: [(String, Int, Int, Int, DataType)] = [
            ("int8", -128, 127, 8, .int8), ("int8-narrow", -127, 127, 8, .int8), ("uint8", 0, 255, 8, .uint8),
            ("uint8-narrow", 1, 255, 8, .uint8), ("int7", -64, 63, 7, .int8), ("int4", -8, 7, 4, .int8),
            ("uint4", 0, 15, 4, .uint8), ("int2", -2, 1, 2, .int8), ("uint2", 0, 3, 2, .uint8),
            ("int9", -256, 255, 9, .int16), ("uint12", 0, 4095, 12, .uint16), ("int16", -32768, 32767, 16, .int16),
            ("uint16", 0, 65535, 16, .uint16), ("int16-narrow", -32767, 32767, 16, .int16),
        ]
        for (name, qmin, qmax, bits, storage) in table {
            let format = try! QuantizationFormat(parsing: name)
            #expect(format.qmin == qmin && format.qmax == qmax && format.bitWidth == bits && format.isInteger, "\(name)")
            #expect(format.storageType == storage, "\(name)")
        }
        let floats: [(QuantizationFormat, Int, DataType)] = [
            (.float16, 16, .float16), (.bfloat16, 16, .bfloat16), (.float8E4M3FN, 8, .uint8), (.float8E5M2, 8, .uint8),
            (.float32, 32, .float32),
        ]
        for (format, bits, storage) in floats {
            #expect(format.bitWidth == bits && !format.isInteger && format.qmin == 0 && format.qmax == 0)
            #expect(format.storageType == storage)
        }
    }

    // MARK: Parameters

    /// Scales and zero points equal ONNX Runtime's `quant_utils.compute_scale_zp` for every integer
    /// format (scales bit-exact); zero ranges of symmetric formats keep the symmetric zero point.
    @Test func parametersMatchOnnxRuntimeQuantizationTool() throws {
        var rng = SeededGenerator(seed: 7)
        var minimums: [Float] = [0, 0, -1, 0, -1e-39, -3.3e38, -0.1, -7, 0.5, -2]
        var maximums: [Float] = [0, 1, 0, 1e-40, 1e-39, 3.3e38, 0.1, 3, 4, -1]
        for _ in 0..<20 {
            let a = Float.random(in: -5...5, using: &rng), b = Float.random(in: -5...5, using: &rng)
            minimums.append(min(a, b))
            maximums.append(max(a, b))
        }
        let configurations = allIntegerFormats.flatMap { format -> [Int64] in
            guard case let .integer(_, _, symmetric, _) = format else { return [] }
            return [Int64(format.qmin), Int64(format.qmax), symmetric ? 1 : 0]
        }
        let folder = temporaryFolder("mpq-scales")
        defer { try? FileManager.default.removeItem(at: folder) }
        try NPY.write(Tensor(shape: [minimums.count], scalars: minimums), to: folder.appendingPathComponent("min.npy").path)
        try NPY.write(Tensor(shape: [maximums.count], scalars: maximums), to: folder.appendingPathComponent("max.npy").path)
        try NPY.write(Tensor(shape: [allIntegerFormats.count, 3], scalars: configurations),
                      to: folder.appendingPathComponent("configurations.npy").path)
        let script = """
        import sys, numpy as np
        from onnxruntime.quantization.quant_utils import compute_scale_zp
        d = sys.argv[1]
        mins, maxs = np.load(d + "/min.npy"), np.load(d + "/max.npy")
        scales, zeros = [], []
        for qmin, qmax, symmetric in np.load(d + "/configurations.npy"):
            # compute_scale_zp wants qmin <= 0: narrow unsigned grids [1, qmax] are [0, qmax - 1] shifted by one.
            shift = max(qmin, 0)
            for lo, hi in zip(mins, maxs):
                z, s = compute_scale_zp(np.float32(lo), np.float32(hi), np.int64(qmin - shift), np.int64(qmax - shift), bool(symmetric))
                scales.append(np.float32(s)); zeros.append(np.int64(z) + shift)
        np.save(d + "/scales.npy", np.array(scales, np.float32)); np.save(d + "/zeros.npy", np.array(zeros, np.int64))
        """
        try runPython(["-c", script, folder.path])
        let scales = try NPY.read(contentsOf: folder.appendingPathComponent("scales.npy").path).scalars(as: Float.self)
        let zeros = try NPY.read(contentsOf: folder.appendingPathComponent("zeros.npy").path).integers()
        for (f, format) in allIntegerFormats.enumerated() {
            let parameters = QuantizationParameters(format: format, granularity: .perChannel(axis: 0),
                                                    minimums: minimums, maximums: maximums)
            guard case let .integer(_, _, symmetric, _) = format else { continue }
            for r in minimums.indices {
                let ort = f * minimums.count + r
                // ONNX Runtime gives zero ranges zero point 0 even when symmetric; mpq keeps the symmetric one.
                let symmetricZero = (format.qmin + format.qmax + 1) / 2
                let expectedZero = symmetric ? symmetricZero : zeros[ort]
                #expect(!symmetric || zeros[ort] == symmetricZero || scales[ort] == 1)
                #expect(parameters.scales[r].bitPattern == scales[ort].bitPattern && parameters.zeroPoints[r] == expectedZero,
                        "\(format) range [\(minimums[r]), \(maximums[r])]: scale \(parameters.scales[r]) zero point \(parameters.zeroPoints[r]), ONNX Runtime \(scales[ort]) \(zeros[ort])")
                #expect((format.qmin...format.qmax).contains(parameters.zeroPoints[r]))
            }
        }
    }

    @Test func parameterConventions() throws {
        let int8 = try QuantizationFormat(parsing: "int8"), narrow = try QuantizationFormat(parsing: "int8-narrow")
        let uint8 = try QuantizationFormat(parsing: "uint8"), uint8Sym = try QuantizationFormat(parsing: "uint8-sym")
        let p = QuantizationParameters(format: int8, granularity: .perTensor, minimums: [-3], maximums: [2])
        #expect(p.scales == [Float(6.0 / 255)] && p.zeroPoints == [0] && p.minimums == [-3] && p.maximums == [3])
        #expect(QuantizationParameters(format: narrow, granularity: .perTensor, minimums: [-1], maximums: [2.54]).scales == [0.02])
        let asymmetric = QuantizationParameters(format: uint8, granularity: .perTensor, minimums: [0.5], maximums: [2.55])
        #expect(asymmetric.scales == [0.01] && asymmetric.zeroPoints == [0] && asymmetric.minimums == [0])
        let symmetricUnsigned = QuantizationParameters(format: uint8Sym, granularity: .perTensor, minimums: [-1], maximums: [0.5])
        #expect(symmetricUnsigned.zeroPoints == [128] && symmetricUnsigned.scales == [Float(2.0 / 255)])
        for format in allIntegerFormats + floatFormats + [.float32] {
            let zero = QuantizationParameters(format: format, granularity: .perTensor, minimums: [0], maximums: [0])
            #expect(zero.scales == [1], "\(format)")
            let x = Tensor(shape: [3], scalars: [0, 0, -0.0] as [Float])
            #expect(try x.fakeQuantized(zero).scalars(as: Float.self) == [0, 0, 0], "\(format)")
        }
        let e4m3 = QuantizationParameters(format: .float8E4M3FN, granularity: .perChannel(axis: 0),
                                          minimums: [-896, 0, -1], maximums: [10, 0, 2])
        #expect(e4m3.scales == [2, 1, Float(2.0 / 448)] && e4m3.zeroPoints == [0, 0, 0])
        #expect(e4m3.minimums == [-896, 0, -2] && e4m3.maximums == [896, 0, 2])
        let e5m2 = QuantizationParameters(format: .float8E5M2, granularity: .perTensor, minimums: [-57344 * 4], maximums: [1])
        #expect(e5m2.scales == [4])
        #expect(QuantizationParameters(format: .float16, granularity: .perTensor, minimums: [-1e6], maximums: [5]).scales == [1])

        let explicit = QuantizationParameters(format: uint8, granularity: .perChannel(axis: 0), scales: [0.5, 2], zeroPoints: [10, 0])
        #expect(explicit.minimums == [-5, 0] && explicit.maximums == [122.5, 510])
        let explicitFloat = QuantizationParameters(format: .float8E4M3FN, granularity: .perTensor, scales: [0.5], zeroPoints: [0])
        #expect(explicitFloat.minimums == [-224] && explicitFloat.maximums == [224])
    }

    // MARK: Fake quantization against references

    /// Every integer format on every granularity, with parameters from ranges (incl. zero and one-sided
    /// ones) and with power-of-two scales whose inputs hit rounding ties exactly, saturate at both ends,
    /// and include NaN, infinities and denormals.
    @Test func integerFormatsMatchReferences() throws {
        var rng = SeededGenerator(seed: 11)
        var cases: [ReferenceCase] = []
        for format in allIntegerFormats {
            for granularity in granularities {
                let count = try granularity.parameterShape(for: caseShape).reduce(1, *)
                let (minimums, maximums) = randomRanges(count, using: &rng)
                let ranged = QuantizationParameters(format: format, granularity: granularity, minimums: minimums, maximums: maximums)
                cases.append(ReferenceCase(name: "\(format) \(granularity) ranges", x: randomInputs(shape: caseShape, using: &rng),
                                           parameters: ranged))
                guard case let .integer(_, _, symmetric, _) = format else { continue }
                let scales = (0..<count).map { Float(sign: .plus, exponent: -($0 % 4) - 1, significand: 1) }
                let zeroPoints = (0..<count).map { _ in
                    symmetric ? ranged.zeroPoints[0] : Int.random(in: format.qmin...format.qmax, using: &rng)
                }
                let grid = QuantizationParameters(format: format, granularity: granularity, scales: scales, zeroPoints: zeroPoints)
                cases.append(ReferenceCase(name: "\(format) \(granularity) grid", x: gridInputs(shape: caseShape, grid), parameters: grid))
            }
        }
        try expectMatchesReferences(cases)
    }

    /// fp16, bf16, fp8 E4M3FN and E5M2 at scale 1 on their edge values (subnormals, ties, largest value,
    /// values just above it, overflow, NaN, infinities), and with scales from ranges on every granularity.
    @Test func floatFormatsMatchReferences() throws {
        var rng = SeededGenerator(seed: 12)
        var cases: [ReferenceCase] = []
        for format in floatFormats {
            let edges = floatEdgeValues(format, using: &rng)
            cases.append(ReferenceCase(
                name: "\(format) edges", x: Tensor(shape: [edges.count], scalars: edges),
                parameters: QuantizationParameters(format: format, granularity: .perTensor, scales: [1], zeroPoints: [0])))
            cases.append(ReferenceCase(
                name: "\(format) edges scaled", x: Tensor(shape: [edges.count], scalars: edges.map { $0 / 4 }),
                parameters: QuantizationParameters(format: format, granularity: .perTensor, scales: [0.25], zeroPoints: [0])))
            for granularity in granularities {
                let count = try granularity.parameterShape(for: caseShape).reduce(1, *)
                let (minimums, maximums) = randomRanges(count, using: &rng)
                cases.append(ReferenceCase(
                    name: "\(format) \(granularity) ranges", x: randomInputs(shape: caseShape, using: &rng),
                    parameters: QuantizationParameters(format: format, granularity: granularity, minimums: minimums, maximums: maximums)))
            }
        }
        try expectMatchesReferences(cases)
    }

    /// Hand-computed ties: half to even, on both sides of zero and of a nonzero zero point.
    @Test func roundingTiesGoToEven() throws {
        let x = Tensor(shape: [8], scalars: [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5] as [Float])
        let int8 = QuantizationParameters(format: try QuantizationFormat(parsing: "int8"), granularity: .perTensor,
                                          scales: [1], zeroPoints: [0])
        #expect(try x.fakeQuantized(int8).scalars(as: Float.self) == [0, 2, 2, 0, -2, -2, 4, 126])
        let uint8 = QuantizationParameters(format: try QuantizationFormat(parsing: "uint8"), granularity: .perTensor,
                                           scales: [0.5], zeroPoints: [3])
        let halves = Tensor(shape: [5], scalars: [0.25, 0.75, -0.25, -0.75, -1.75] as [Float])
        #expect(try halves.quantized(uint8).integers() == [3, 5, 3, 1, 0])
        #expect(try halves.fakeQuantized(uint8).scalars(as: Float.self) == [0, 1, 0, -1, -1.5])
    }

    /// Parallel runs (chunks that start mid-run) give the serial results bit for bit.
    @Test func parallelResultsMatchSerial() throws {
        var rng = SeededGenerator(seed: 13)
        let shape = [9, 61, 127]
        let x = Tensor.random(shape, in: -3...3, using: &rng)
        let context = ExecutionContext(threads: 2)
        let formats: [QuantizationFormat] = [
            .integer(bits: 8, signed: true, symmetric: true), .integer(bits: 4, signed: false, symmetric: false),
            .float8E4M3FN, .bfloat16, .float16,
        ]
        let layouts: [QuantizationGranularity] = [
            .perTensor, .perChannel(axis: 0), .perChannel(axis: 1), .perChannel(axis: 2),
            .perGroup(axis: 0, size: 3), .perGroup(axis: 2, size: 127), .perGroup(axis: 1, size: 61),
        ]
        var cases: [ReferenceCase] = []
        for format in formats {
            for granularity in layouts {
                let count = try granularity.parameterShape(for: shape).reduce(1, *)
                let (minimums, maximums) = randomRanges(count, using: &rng)
                let parameters = QuantizationParameters(format: format, granularity: granularity, minimums: minimums, maximums: maximums)
                let serial = try x.fakeQuantized(parameters).scalars(as: Float.self)
                let parallel = try x.fakeQuantized(parameters, context: context).scalars(as: Float.self)
                #expect(firstDifference(parallel, serial, inputs: x.scalars(as: Float.self)) == nil, "\(format) \(granularity)")
                #expect(codes(try x.quantized(parameters, context: context)) == codes(try x.quantized(parameters)))
                let a = try x.quantizationError(parameters), b = try x.quantizationError(parameters, context: context)
                #expect(abs(a.sqnr - b.sqnr) < 1e-9 && a.clippedFraction == b.clippedFraction, "\(format) \(granularity)")
                if format == .float8E4M3FN || format.bitWidth == 4 {
                    cases.append(ReferenceCase(name: "\(format) \(granularity) large", x: x, parameters: parameters))
                }
            }
        }
        try expectMatchesReferences(cases)
    }

    // MARK: Statistics, errors, identity

    @Test func errorStatistics() throws {
        let int8 = try QuantizationFormat(parsing: "int8")
        let x = Tensor(shape: [8], scalars: [0.2, -1.3, 2.6, 126, 127.6, 200, -300, .infinity] as [Float])
        let parameters = QuantizationParameters(format: int8, granularity: .perTensor, scales: [1], zeroPoints: [0])
        let finite = Tensor(shape: [7], scalars: Array(x.scalars(as: Float.self).prefix(7)))
        let y = try finite.fakeQuantized(parameters).scalars(as: Float.self)
        let values = finite.scalars(as: Float.self).map(Double.init)
        let signal = values.map { $0 * $0 }.reduce(0, +)
        let noise = zip(values, y).map { ($0 - Double($1)) * ($0 - Double($1)) }.reduce(0, +)
        let (sqnr, clipped) = try finite.quantizationError(parameters)
        #expect(abs(sqnr - 10 * log10(signal / noise)) < 1e-9)
        #expect(clipped == 3.0 / 7)   // 127.6 > 127, 200 and -300
        #expect(try x.quantizationError(parameters).clippedFraction == 4.0 / 8)

        let exact = Tensor(shape: [4], scalars: [1, -2, 0, 127] as [Float])
        #expect(try exact.quantizationError(parameters).sqnr == .infinity)
        #expect(try exact.quantizationError(QuantizationParameters(format: .float32, granularity: .perTensor,
                                                                    minimums: [-1], maximums: [1])) == (.infinity, 0))
        let e4m3 = QuantizationParameters(format: .float8E4M3FN, granularity: .perTensor, scales: [1], zeroPoints: [0])
        let large = Tensor(shape: [4], scalars: [448, 449, -1000, 3] as [Float])
        #expect(try large.quantizationError(e4m3).clippedFraction == 0.5)
        let fp16 = QuantizationParameters(format: .float16, granularity: .perTensor, scales: [1], zeroPoints: [0])
        #expect(try large.quantizationError(fp16).clippedFraction == 0)
        #expect(try Tensor(shape: [2], scalars: [7e4, 1] as [Float]).quantizationError(fp16).clippedFraction == 0.5)
    }

    @Test func shapeAndParameterErrors() throws {
        let x = Tensor(zeros: .float32, shape: [2, 6, 4])
        let int8 = try QuantizationFormat(parsing: "int8")
        func expectError(_ granularity: QuantizationGranularity, scales: Int, format: QuantizationFormat = int8,
                         scale: Float = 1, zeroPoint: Int = 0, _ check: (MPQError) -> Bool) {
            let p = QuantizationParameters(format: format, granularity: granularity,
                                           scales: Array(repeating: scale, count: scales),
                                           zeroPoints: Array(repeating: zeroPoint, count: scales))
            for operation in [{ _ = try x.fakeQuantized(p) }, { _ = try x.quantized(p) }, { _ = try x.quantizationError(p) }] {
                do {
                    try operation()
                    Issue.record("\(granularity) with \(scales) scales did not throw")
                } catch let error as MPQError {
                    #expect(check(error), "\(error)")
                } catch {
                    Issue.record("\(error)")
                }
            }
        }
        let isShape = { (e: MPQError) in if case .shapeMismatch = e { return true } else { return false } }
        let isInput = { (e: MPQError) in if case .invalidInput = e { return true } else { return false } }
        expectError(.perChannel(axis: 3), scales: 4, isShape)
        expectError(.perChannel(axis: -4), scales: 2, isShape)
        expectError(.perChannel(axis: 1), scales: 4, isShape)
        expectError(.perTensor, scales: 2, isShape)
        expectError(.perGroup(axis: 1, size: 4), scales: 8, isShape)
        expectError(.perGroup(axis: 1, size: 0), scales: 8, isShape)
        expectError(.perGroup(axis: 1, size: 3), scales: 4, isShape)
        expectError(.perTensor, scales: 1, format: .integer(bits: 17, signed: true, symmetric: true), isInput)
        expectError(.perTensor, scales: 1, format: .integer(bits: 1, signed: false, symmetric: true), isInput)
        expectError(.perTensor, scales: 1, scale: 0, isInput)
        expectError(.perTensor, scales: 1, scale: .nan, isInput)
        expectError(.perTensor, scales: 1, scale: .infinity, isInput)
        expectError(.perTensor, scales: 1, zeroPoint: 200, isInput)
        expectError(.perTensor, scales: 1, format: .float8E4M3FN, zeroPoint: 1, isInput)
        let nanRange = QuantizationParameters(format: int8, granularity: .perTensor, minimums: [.nan], maximums: [1])
        #expect(throws: MPQError.self) { try x.fakeQuantized(nanRange) }
        let mismatched = QuantizationParameters(format: int8, granularity: .perChannel(axis: 1),
                                                minimums: Array(repeating: -1, count: 6), maximums: [1, 2])
        #expect(throws: MPQError.shapeMismatch("per-channel (axis 1) int8 quantization of a tensor of shape [2, 6, 4] needs 6 scales and zero points, got 2 and 2")) {
            try x.fakeQuantized(mismatched)
        }
        let ints = Tensor(shape: [2], scalars: [1, 2] as [Int32])
        #expect(throws: MPQError.typeMismatch("int8 quantization needs a float32 tensor, not int32")) {
            try ints.fakeQuantized(QuantizationParameters(format: int8, granularity: .perTensor, scales: [1], zeroPoints: [0]))
        }
        // Negative axes count from the back, as in ONNX.
        let negative = QuantizationParameters(format: int8, granularity: .perGroup(axis: -2, size: 3), scales: Array(repeating: 1, count: 16),
                                              zeroPoints: Array(repeating: 0, count: 16))
        #expect(try x.fakeQuantized(negative).shape == [2, 6, 4])
        #expect(try QuantizationGranularity.perGroup(axis: -2, size: 3).parameterShape(for: [2, 6, 4]) == [2, 2, 4])
    }

    @Test func float32IsIdentityAndEmptyTensorsWork() throws {
        var rng = SeededGenerator(seed: 14)
        let x = Tensor.random([5, 7], using: &rng)
        let identity = QuantizationParameters(format: .float32, granularity: .perChannel(axis: 1),
                                              minimums: Array(repeating: -1, count: 7), maximums: Array(repeating: 1, count: 7))
        #expect(try x.fakeQuantized(identity).scalars(as: Float.self) == x.scalars(as: Float.self))
        #expect(try x.quantized(identity).scalars(as: Float.self) == x.scalars(as: Float.self))
        let empty = Tensor(zeros: .float32, shape: [0, 4])
        for format in [QuantizationFormat.integer(bits: 8, signed: true, symmetric: true), .float8E5M2] {
            let p = QuantizationParameters(format: format, granularity: .perChannel(axis: 1),
                                           minimums: Array(repeating: -1, count: 4), maximums: Array(repeating: 1, count: 4))
            #expect(try empty.fakeQuantized(p).shape == [0, 4])
            #expect(try empty.quantized(p).shape == [0, 4])
            #expect(try empty.quantizationError(p) == (.infinity, 0))
        }
    }
}
