import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// numpy quantize-dequantize with the grid `UniformGrid` documents (QuantizeLinear, ties to even).
private let numpyFakeQuant = """
import json, sys
import numpy as np

def fake_quant(x, lo, hi, levels, symmetric):
    lo, hi = np.float32(lo), np.float32(hi)
    s = np.float32((hi - lo) / np.float32(levels - 1))
    zp = np.float32(levels // 2) if symmetric else np.float32(np.clip(np.round(-lo / s), 0, levels - 1))
    q = np.clip(np.round(x / s) + zp, 0, levels - 1)
    return (q - zp) * s

def mse(x, lo, hi, levels, symmetric):
    return float(np.mean((fake_quant(x, lo, hi, levels, symmetric).astype(np.float64) - x) ** 2))

"""

@Suite final class RangeEstimatorTests {
    let folder = temporaryFolder("mpq-ranges")

    deinit { try? FileManager.default.removeItem(at: folder) }

    /// Standard normal samples (Box-Muller).
    private static func gaussian(_ count: Int, sigma: Float = 1, using rng: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in
            let u = Double.random(in: Double.ulpOfOne..<1, using: &rng), v = Double.random(in: 0..<1, using: &rng)
            return sigma * Float((-2 * log(u)).squareRoot() * cos(2 * .pi * v))
        }
    }

    /// Laplace(0, 1) samples.
    private static func laplacian(_ count: Int, using rng: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in
            let u = Double.random(in: -0.5..<0.5, using: &rng)
            return Float(-(u < 0 ? -1.0 : 1.0) * log(max(1 - 2 * abs(u), .leastNormalMagnitude)))
        }
    }

    /// Splits `values` into batches of varying sizes and shapes.
    private static func batches(_ values: [Float], sizes: [Int]) -> [Tensor] {
        var result: [Tensor] = [], start = 0, k = 0
        while start < values.count {
            let count = min(sizes[k % sizes.count], values.count - start)
            let shape = count % 4 == 0 ? [2, 2, count / 4] : [count]
            result.append(Tensor(shape: shape, scalars: Array(values[start..<(start + count)])))
            start += count
            k += 1
        }
        return result
    }

    private static func observer(_ method: RangeMethod, _ batches: [Tensor], percentile: Double = 99.99) throws -> RangeObserver {
        let observer = RangeObserver(method: method, percentile: percentile)
        for batch in batches { try observer.observe(batch) }
        return observer
    }

    /// Runs `script` with the folder as argv[1] and `input` saved as JSON in folder/input.json; returns its JSON output.
    private func python(_ script: String, input: Any = [Any]()) throws -> [[Double]] {
        try JSONSerialization.data(withJSONObject: input).write(to: folder.appendingPathComponent("input.json"))
        let output = try runPython(["-c", numpyFakeQuant + script, folder.path])
        return try #require(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[Double]])
    }

    @Test func minMaxIsExact() throws {
        var rng = SeededGenerator(seed: 1)
        var all: [Float] = []
        let observer = RangeObserver(method: .minMax)
        for k in 0..<6 {
            let batch = Tensor.random([3, 100 + k], in: -Float(k + 1)...(Float(k) / 2 + 0.25), using: &rng)
            try observer.observe(batch)
            all += batch.scalars(as: Float.self)
        }
        let lo = all.min()!, hi = all.max()!
        #expect(observer.count == all.count)
        #expect(observer.minimum == lo && observer.maximum == hi)
        #expect(observer.range(levels: 256, symmetric: false) == (lo, hi))
        #expect(observer.range(levels: 255, symmetric: true) == (-max(-lo, hi), max(-lo, hi)))

        // One large tensor (split over threads) and positive-only data: the range still contains 0.
        let large = Tensor.random([4, 64, 56, 56], in: 0.5...3, using: &rng)
        let positive = RangeObserver(method: .minMax)
        try positive.observe(large)
        let values = large.scalars(as: Float.self)
        #expect(positive.count == values.count)
        #expect(positive.minimum == values.min()! && positive.maximum == values.max()!)
        #expect(positive.range(levels: 256, symmetric: false) == (0, values.max()!))
    }

    /// Batches whose spread grows 1.5x each time force the histogram to widen repeatedly.
    @Test func percentileMatchesNumpyWithGrowingRanges() throws {
        var rng = SeededGenerator(seed: 2)
        var signed: [Float] = []
        for k in 0..<10 {
            signed += Self.gaussian(4000, sigma: pow(1.5, Float(k)), using: &rng)
            signed += Self.laplacian(1000, using: &rng).map { $0 * Float(k + 1) }
        }
        let relu = Self.gaussian(50_000, using: &rng).enumerated().map { max(0, $1 * (1 + Float($0) / 5000)) }
        try NPY.write(Tensor(shape: [signed.count], scalars: signed), to: folder.appendingPathComponent("signed.npy").path)
        try NPY.write(Tensor(shape: [relu.count], scalars: relu), to: folder.appendingPathComponent("relu.npy").path)

        let percentiles = [99.99, 99.9, 99.0, 90.0]
        var ours: [[Double]] = [], widths: [Double] = []
        for data in [signed, relu] {
            for p in percentiles {
                let observer = try Self.observer(.percentile, Self.batches(data, sizes: [5000, 1234, 777]), percentile: p)
                let asymmetric = observer.range(levels: 256, symmetric: false)
                let symmetric = observer.range(levels: 256, symmetric: true)
                ours.append([Double(asymmetric.minimum), Double(asymmetric.maximum), Double(symmetric.maximum)])
                widths.append(Double(observer.binWidth))
                #expect(symmetric.minimum == -symmetric.maximum)
            }
        }
        let expected = try python("""
            d = sys.argv[1]
            out = []
            for name in ["signed", "relu"]:
                x = np.load(f"{d}/{name}.npy").astype(np.float64)
                for p in \(percentiles):
                    lo, hi = np.percentile(x, 100 - p), np.percentile(x, p)
                    out.append([min(lo, 0.0), max(hi, 0.0), np.percentile(np.abs(x), p)])
            print(json.dumps(out))
            """)
        for (i, (mine, reference)) in zip(ours, expected).enumerated() {
            for j in 0..<3 {
                #expect(abs(mine[j] - reference[j]) <= widths[i], "case \(i) value \(j): \(mine[j]) vs numpy \(reference[j]), bin width \(widths[i])")
            }
        }
    }

    /// MSE ranges on heavy-tailed data beat min-max and come within 2% of a brute-force numpy search.
    @Test func mseBeatsMinMaxAndNearlyMatchesBruteForce() throws {
        var rng = SeededGenerator(seed: 3)
        let datasets: [(String, [Float])] = [
            ("gauss", Self.gaussian(40_000, using: &rng) + [9, -8, 11, -12]),
            ("laplace", Self.laplacian(40_000, using: &rng) + [18, -16, 22, -24]),
            ("relu", Self.gaussian(40_000, using: &rng).map { max(0, $0) } + [9, 11]),
        ]
        var cases: [[Double]] = []
        for (index, (name, data)) in datasets.enumerated() {
            try NPY.write(Tensor(shape: [data.count], scalars: data), to: folder.appendingPathComponent("\(name).npy").path)
            let observer = try Self.observer(.mse, Self.batches(data.shuffled(using: &rng), sizes: [3000, 4096, 999]))
            for levels in [16, 256] {
                for symmetric in [true, false] {
                    let range = observer.range(levels: levels, symmetric: symmetric)
                    let minMax = quantizationRange(data.min()!, data.max()!, symmetric: symmetric)
                    cases.append([Double(index), Double(levels), symmetric ? 1 : 0, Double(range.minimum), Double(range.maximum),
                                  Double(minMax.minimum), Double(minMax.maximum)])
                }
            }
        }
        let results = try python("""
            d = sys.argv[1]
            cases = json.load(open(f"{d}/input.json"))
            names = ["gauss", "laplace", "relu"]

            def refine(c, i, n):
                return np.linspace(c[max(i - 1, 0)], c[min(i + 1, len(c) - 1)], n)

            def brute(x, levels, symmetric):
                lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
                if symmetric:
                    c = np.geomspace(max(-lo, hi) * 1e-3, max(-lo, hi) * 1.2, 400)
                    e = [mse(x, -a, a, levels, True) for a in c]
                    c = refine(c, int(np.argmin(e)), 200)
                    return min(min(e), min(mse(x, -a, a, levels, True) for a in c))
                los = np.concatenate([lo * np.geomspace(1, 1e-3, 50), [0.0]]) if lo < 0 else np.array([0.0])
                his = np.concatenate([[0.0], hi * np.geomspace(1e-3, 1, 50)]) if hi > 0 else np.array([0.0])
                best = np.inf
                for n in [0, 15, 15]:
                    if n:
                        los, his = refine(los, i, n), refine(his, j, n)
                    e = np.array([[mse(x, a, b, levels, False) if b > a else np.inf for b in his] for a in los])
                    i, j = np.unravel_index(np.argmin(e), e.shape)
                    best = min(best, e[i, j])
                return best

            out = []
            for index, levels, sym, lo, hi, mlo, mhi in cases:
                x = np.load(f"{d}/{names[int(index)]}.npy")
                levels, sym = int(levels), bool(sym)
                out.append([mse(x, lo, hi, levels, sym), mse(x, mlo, mhi, levels, sym), brute(x, levels, sym)])
            print(json.dumps(out))
            """, input: cases)
        for (c, r) in zip(cases, results) {
            let label = "dataset \(Int(c[0])) levels \(Int(c[1])) symmetric \(c[2] == 1): range [\(c[3]), \(c[4])], MSE \(r[0]), min-max \(r[1]), brute force \(r[2])"
            #expect(r[0] < r[1], "\(label)")
            #expect(r[0] <= 1.02 * r[2], "\(label)")
        }
    }

    /// The histogram's width is the smallest power of two that fits all values,
    /// so batch order and splitting (the parallel path, concurrent callers) change nothing.
    @Test func streamingOrderDoesNotMatter() throws {
        var rng = SeededGenerator(seed: 4)
        var values: [Float] = []
        for k in 0..<8 {
            values += Self.gaussian(100_000, sigma: Float(k + 1), using: &rng).map { $0 + Float(k) }
        }
        let whole = [Tensor(shape: [8, 100, 1000], scalars: values)]
        let forward = Self.batches(values, sizes: [20_000, 3_333, 70_001])
        let shuffled = Self.batches(values, sizes: [50_000, 11]).shuffled(using: &rng)
        for method in [RangeMethod.percentile, .mse] {
            var observers = try [whole, forward, Array(forward.reversed()), shuffled].map { try Self.observer(method, $0) }
            let concurrent = RangeObserver(method: method)
            DispatchQueue.concurrentPerform(iterations: forward.count) { try? concurrent.observe(forward[$0]) }
            observers.append(concurrent)
            for observer in observers {
                #expect(observer.count == values.count)
                #expect(observer.binWidth == observers[0].binWidth)
                for (levels, symmetric) in [(256, true), (256, false), (16, true)] {
                    #expect(observer.range(levels: levels, symmetric: symmetric) == observers[0].range(levels: levels, symmetric: symmetric),
                            "\(method) levels \(levels) symmetric \(symmetric)")
                }
            }
        }
    }

    @Test func nonFiniteValuesThrowAndLeaveTheObserverUnchanged() throws {
        var rng = SeededGenerator(seed: 5)
        let small = Tensor.random([7], using: &rng), large = Tensor.random([3, 64, 64, 64], using: &rng)
        for method in RangeMethod.allCases {
            let observer = RangeObserver(method: method)
            try observer.observe(Tensor.random([1000], using: &rng))
            let before = observer.range(levels: 256, symmetric: false)
            for bad in [Float.nan, .infinity, -.infinity] {
                for good in [small, large] {
                    var scalars = good.scalars(as: Float.self)
                    scalars[scalars.count * 2 / 3] = bad
                    #expect {
                        try observer.observe(Tensor(shape: good.shape, scalars: scalars))
                    } throws: { error in
                        guard case MPQError.invalidInput(let message) = error else { return false }
                        return message.contains("non-finite")
                    }
                }
            }
            #expect(observer.count == 1000)
            #expect(observer.range(levels: 256, symmetric: false) == before)
            #expect(throws: MPQError.self) { try observer.observe(Tensor(shape: [2], scalars: [Int64(1), 2])) }
        }
        #expect(throws: MPQError.self) {
            try WeightRanges.ranges(of: Tensor(shape: [2, 2], scalars: [Float(1), .nan, 0, 2]), method: .minMax,
                                    axis: 0, groupSize: nil, levels: 256, symmetric: true)
        }
    }

    @Test func constantTensorsGiveNonEmptyRanges() throws {
        for method in RangeMethod.allCases {
            let zeros = try Self.observer(method, [Tensor(zeros: .float32, shape: [4, 100])])
            let empty = RangeObserver(method: method)
            for observer in [zeros, empty] {
                #expect(observer.range(levels: 256, symmetric: true) == (-1, 1))
                #expect(observer.range(levels: 16, symmetric: false) == (0, 1))
            }

            let constant = try Self.observer(method, [Tensor(shape: [500], scalars: [Float](repeating: 3.5, count: 500))])
            #expect(constant.minimum == 3.5 && constant.maximum == 3.5)
            let asymmetric = constant.range(levels: 256, symmetric: false)
            #expect(asymmetric.minimum == 0 && abs(asymmetric.maximum - 3.5) <= 3.5e-3, "\(method): \(asymmetric)")
            // With 256 levels a symmetric grid reaches 127/127.5 of its threshold above 0.
            let symmetric = constant.range(levels: 256, symmetric: true)
            #expect(symmetric.minimum == -symmetric.maximum && symmetric.maximum >= 3.5 && symmetric.maximum <= 3.52,
                    "\(method): \(symmetric)")

            let negative = try Self.observer(method, [Tensor(shape: [3], scalars: [Float](repeating: -2, count: 3))])
            let range = negative.range(levels: 16, symmetric: false)
            #expect(abs(range.minimum + 2) <= 2e-2 && range.maximum == 0, "\(method): \(range)")
        }
        let zeroWeights = try WeightRanges.ranges(of: Tensor(zeros: .float32, shape: [3, 4]), method: .mse, axis: 0,
                                                  groupSize: nil, levels: 256, symmetric: false)
        #expect(zeroWeights.minimums == [0, 0, 0] && zeroWeights.maximums == [1, 1, 1])
    }

    /// Values near the float32 limits, denormals and tiny histograms neither trap nor give empty or non-finite ranges.
    @Test func extremeMagnitudesStayFinite() throws {
        let batches: [[Float]] = [[3e38, -3e38, 1e-45, -1e-45, 0], [1e-42, 2e-42, 5e-43], [-7, 1e-30], [-.greatestFiniteMagnitude]]
        for method in RangeMethod.allCases {
            for bins in [8, 2048] {
                for values in batches {
                    let observer = RangeObserver(method: method, bins: bins)
                    try observer.observe(Tensor(shape: [values.count], scalars: values))
                    for (levels, symmetric) in [(2, true), (3, false), (256, true), (65536, false)] {
                        let range = observer.range(levels: levels, symmetric: symmetric)
                        #expect(range.minimum.isFinite && range.maximum.isFinite && range.minimum <= 0 && range.maximum >= 0
                                && range.maximum > range.minimum, "\(method) \(bins) bins \(values): \(range)")
                    }
                }
            }
        }
    }

    /// Per-tensor, per-channel and per-group slices (including a partial last group) against numpy reductions.
    @Test func weightRangesMatchNumpy() throws {
        var rng = SeededGenerator(seed: 6)
        let conv = Tensor(shape: [8, 6, 3, 3], scalars: Self.gaussian(8 * 6 * 9, using: &rng).map { $0 + 0.3 })
        let matmul = Tensor(shape: [24, 10], scalars: Self.laplacian(240, using: &rng))
        try NPY.write(conv, to: folder.appendingPathComponent("w0.npy").path)
        try NPY.write(matmul, to: folder.appendingPathComponent("w1.npy").path)
        let layouts: [(weight: Int, axis: Int?, group: Int?)] = [
            (0, nil, nil), (0, 0, nil), (0, 1, nil), (0, -1, nil), (0, 1, 2), (0, 1, 4), (0, 3, 3),
            (1, nil, nil), (1, 1, nil), (1, 0, 8), (1, 0, 7), (1, 1, 10),
        ]
        var cases: [[Double]] = []
        var ours: [[Float]] = []
        for layout in layouts {
            for symmetric in [false, true] {
                for method in [RangeMethod.minMax, .mse] {
                    for levels in method == .mse ? [16, 256] : [256] {
                        let ranges = try WeightRanges.ranges(of: [conv, matmul][layout.weight], method: method, axis: layout.axis,
                                                             groupSize: layout.group, levels: levels, symmetric: symmetric)
                        cases.append([Double(layout.weight), Double(layout.axis ?? 99), Double(layout.group ?? 0),
                                      symmetric ? 1 : 0, method == .mse ? 1 : 0, Double(levels)])
                        ours.append(ranges.minimums + ranges.maximums)
                    }
                }
            }
        }
        let cheaper = try WeightRanges.ranges(of: conv, method: .percentile, axis: 0, groupSize: nil, levels: 256, symmetric: false)
        let exact = try WeightRanges.ranges(of: conv, method: .minMax, axis: 0, groupSize: nil, levels: 256, symmetric: false)
        #expect(cheaper == exact)

        let results = try python("""
            d = sys.argv[1]
            cases, ours = json.load(open(f"{d}/input.json"))

            def slices(w, axis, group):
                # Rows of the result are slices, in the element order of ONNX scales.
                if axis is None:
                    return [w.reshape(-1)]
                a = axis % w.ndim
                if not group:
                    return list(np.moveaxis(w, a, 0).reshape(w.shape[a], -1))
                blocks = -(-w.shape[a] // group)
                parts = [np.take(w, range(b * group, min((b + 1) * group, w.shape[a])), axis=a) for b in range(blocks)]
                shape = w.shape[:a] + (blocks,) + w.shape[a + 1:]
                out = [None] * int(np.prod(shape))
                for flat in range(len(out)):
                    index = np.unravel_index(flat, shape)
                    part = parts[index[a]]
                    out[flat] = part[index[:a] + (slice(None),) + index[a + 1:]].reshape(-1)
                return out

            def finish(lo, hi, sym):
                lo, hi = min(lo, np.float32(0)), max(hi, np.float32(0))
                if sym:
                    hi = max(-lo, hi); lo = -hi
                return (lo, hi) if hi - lo > 0 else ((np.float32(-1), np.float32(1)) if sym else (np.float32(0), np.float32(1)))

            out = []
            for (weight, axis, group, sym, use_mse, levels), mine in zip(cases, ours):
                w = np.load(f"{d}/w{int(weight)}.npy")
                s = slices(w, None if axis == 99 else int(axis), int(group))
                n = len(s)
                lows, highs = np.float32(mine[:n]), np.float32(mine[n:])
                if len(mine) != 2 * n:
                    out.append([1.0, 0.0]); continue
                if not use_mse:
                    ref = [finish(v.min(), v.max(), bool(sym)) for v in s]
                    same = all(lo == r[0] and hi == r[1] for lo, hi, r in zip(lows, highs, ref))
                    out.append([0.0 if same else 1.0, 0.0]); continue
                worst, beats = 0.0, 1.0
                for v, lo, hi in zip(s, lows, highs):
                    base = finish(v.min(), v.max(), bool(sym))
                    errors = [mse(v, base[0] * f, base[1] * f, int(levels), bool(sym))
                              for f in np.arange(30, 101, dtype=np.float32) / np.float32(100)]
                    mine_error = mse(v, lo, hi, int(levels), bool(sym))
                    worst = max(worst, mine_error - min(errors) * (1 + 1e-6) - 1e-12)
                    beats = min(beats, 1.0 if mine_error <= errors[-1] * (1 + 1e-6) + 1e-12 else 0.0)
                out.append([worst, beats])
            print(json.dumps(out))
            """, input: [cases, ours.map { $0.map(Double.init) }])
        for (c, r) in zip(cases, results) {
            let label = "weight \(Int(c[0])) axis \(Int(c[1])) group \(Int(c[2])) symmetric \(c[3] == 1) mse \(c[4] == 1) levels \(Int(c[5]))"
            if c[4] == 1 {
                #expect(r[0] <= 0, "\(label): error above the best shrink factor's by \(r[0])")
                #expect(r[1] == 1, "\(label): worse than min-max")
            } else {
                #expect(r[0] == 0, "\(label): ranges differ from numpy")
            }
        }
        let sizes = try layouts.map { layout in
            try WeightRanges.ranges(of: [conv, matmul][layout.weight], method: .minMax, axis: layout.axis,
                                    groupSize: layout.group, levels: 256, symmetric: false).minimums.count
        }
        #expect(sizes == [1, 8, 6, 3, 8 * 3 * 9, 8 * 2 * 9, 8 * 6 * 3, 1, 10, 30, 40, 24])
    }

    @Test func invalidWeightArgumentsThrow() throws {
        let weights = Tensor(shape: [4, 6], scalars: (0..<24).map { Float($0) - 10 })
        for (axis, group, levels) in [(2, nil, 256), (-3, nil, 256), (nil, 2, 256), (1, 0, 256), (0, nil, 1), (0, nil, 70_000)] as [(Int?, Int?, Int)] {
            #expect(throws: MPQError.self, "axis \(String(describing: axis)) group \(String(describing: group)) levels \(levels)") {
                try WeightRanges.ranges(of: weights, method: .mse, axis: axis, groupSize: group, levels: levels, symmetric: true)
            }
        }
        #expect(throws: MPQError.self) {
            try WeightRanges.ranges(of: Tensor(shape: [2], scalars: [Int32(1), 2]), method: .minMax, axis: nil,
                                    groupSize: nil, levels: 256, symmetric: true)
        }
    }
}
