import Foundation
import MPQGraph
import MPQRuntime

/// Quantization error of each quantizer and of the model output over a data
/// set, written as report.json next to the exported model.
public struct QuantizationReport: Sendable {
    /// Error statistics of one quantizer.
    public struct Entry: Sendable {
        /// The quantizer measured.
        public var site: QuantizerPlacement.Site
        /// Its scales, zero points and clipping ranges.
        public var parameters: QuantizationParameters
        /// Σx² and Σ(x − q(x))² over every element seen (SQNR's numerator and denominator).
        public var signalEnergy = 0.0, noiseEnergy = 0.0
        /// Elements outside the clipping range, and all elements seen.
        public var clipped = 0, count = 0
        /// SQNR of the quantized tensor against its float value, dB.
        public var sqnr: Double { noiseEnergy == 0 ? .infinity : 10 * log10(signalEnergy / noiseEnergy) }
        /// Fraction of elements clipped (0 when none were seen).
        public var clippedFraction: Double { count == 0 ? 0 : Double(clipped) / Double(count) }

        mutating func add(original: Tensor, quantized: Tensor) {
            let low = parameters.minimums.min() ?? -.infinity, high = parameters.maximums.max() ?? .infinity
            original.withUnsafeBufferPointer(as: Float.self) { x in
                quantized.withUnsafeBufferPointer(as: Float.self) { q in
                    var signal = 0.0, noise = 0.0, outside = 0
                    for i in x.indices {
                        signal += Double(x[i] * x[i])
                        let d = Double(x[i] - q[i])
                        noise += d * d
                        if x[i] < low || x[i] > high { outside += 1 }
                    }
                    signalEnergy += signal
                    noiseEnergy += noise
                    clipped += outside
                    count += x.count
                }
            }
        }
    }

    /// One entry per placed quantizer that has parameters, in placement order.
    public var entries: [Entry]
    /// The weight granularity the configuration asked for.
    public var configuredGranularity: QuantizationConfig.WeightGranularity
    /// Quantized against FP32 model output over the data (SQNR, top-1 agreement, cosine similarity).
    public var output: OutputComparison
    /// How formats were expressed in the export.
    public var exportNotes: [String] = []
    /// What the deployment target changed in the requested configuration.
    public var deploymentNotes: [String] = []
    /// Whether `output` was measured on data disjoint from the calibration data.
    public var heldOut = false
    /// What the quantization techniques did (from the model).
    public var techniqueNotes: [String] = []

    /// Evaluates `model` against its FP32 graph over `data`.
    public init(model: QuantizedModel, data: CalibrationData, batchSize: Int = 16, labels: [Int]? = nil,
                options: SessionOptions = SessionOptions(), progress: ((Int, Int) -> Void)? = nil) throws {
        deploymentNotes = model.deploymentNotes
        techniqueNotes = model.techniqueNotes
        var entries: [String: Entry] = [:]
        for site in model.placement.sites {
            guard let p = model.parameters[site.value] else { continue }
            var entry = Entry(site: site, parameters: p)
            if site.role == .weight, let w = model.original.initializers[site.value] {
                entry.add(original: w, quantized: model.graph.initializers[site.value] ?? w)
            }
            entries[site.value] = entry
        }
        let reference = try InferenceSession(graph: model.reference ?? model.original, options: options)
        var comparison = OutputComparison()
        let batches = data.batches(of: batchSize)
        var offset = 0
        for (index, batch) in batches.enumerated() {
            let expected = try reference.run(batch)
            let actual = try model.run(batch) { name, original, quantized in
                entries[name]?.add(original: original, quantized: quantized)
                return nil
            }
            let size = batch.values.first?.shape.first ?? 0
            comparison.add(reference: expected, quantized: actual, feeds: batch,
                           labels: labels.map { Array($0[offset..<min(offset + size, $0.count)]) })
            offset += size
            progress?(index + 1, batches.count)
        }
        self.entries = model.placement.sites.compactMap { entries[$0.value] }
        configuredGranularity = model.config.weightGranularity
        output = comparison
    }

    /// Where the configuration could not be followed as written: per-group weights whose
    /// reduction dim the group size does not divide are quantized per channel instead.
    public var calibrationNotes: [String] {
        guard case .perGroup(let size) = configuredGranularity else { return [] }
        return entries.compactMap { e in
            guard e.site.role == .weight else { return nil }
            if case .perGroup = e.parameters.granularity { return nil }
            return "\(e.site.value): groups of \(size) do not divide its reduction dim; quantized \(e.parameters.granularity)"
        }
    }

    /// The report as report.json: output metrics, notes, and per-quantizer format, SQNR and clipping
    /// (infinite values written as "inf" / "-inf").
    public func json() throws -> Data {
        func finite(_ x: Double) -> Any { x.isFinite ? x : (x > 0 ? "inf" : "-inf") }
        var outputObject: [String: Any] = ["sqnr_db": finite(output.sqnr)]
        if let top1 = output.top1Agreement { outputObject["top1_agreement"] = top1 }
        if let cosine = output.cosineSimilarity { outputObject["cosine_similarity"] = cosine }
        if let accuracy = output.accuracy {
            outputObject["accuracy"] = accuracy.quantized
            outputObject["fp32_accuracy"] = accuracy.reference
        }
        let object: [String: Any] = [
            "output": outputObject,
            "export_notes": exportNotes,
            "deployment_notes": deploymentNotes,
            "techniques": techniqueNotes,
            "held_out": heldOut,
            "evaluation_note": heldOut ? "figures on the held-out --eval data"
                : "figures on the calibration data itself, not held out: pass --eval DATA for held-out figures",
            "calibration_notes": calibrationNotes,
            "quantizers": entries.map { e -> [String: Any] in
                [
                    "name": e.site.value, "role": e.site.role.rawValue, "format": e.parameters.format.name,
                    "granularity": "\(e.parameters.granularity)", "consumers": e.site.consumers,
                    "sqnr_db": finite(e.sqnr), "clipped_fraction": e.clippedFraction,
                ]
            },
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
