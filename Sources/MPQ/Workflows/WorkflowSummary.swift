import Foundation
import MPQGGUF
import MPQGraph
import MPQLLM
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

extension QuantizationReport {
    /// The output metrics, one per line, as `mpq quantize` prints them.
    public var summary: String {
        var lines = [String(format: "output SQNR %.2f dB", output.sqnr)
            + (heldOut ? " (held-out --eval data)" : " (on the calibration data, not held out)")]
        if let top1 = output.top1Agreement { lines.append(String(format: "top-1 agreement with FP32 %.2f%%", top1 * 100)) }
        if let cosine = output.cosineSimilarity { lines.append(String(format: "cosine similarity %.5f", cosine)) }
        if let accuracy = output.accuracy {
            lines.append(String(format: "accuracy %.2f%% (FP32 %.2f%%)", accuracy.quantized * 100, accuracy.reference * 100))
        }
        if !calibrationNotes.isEmpty {
            lines.append("\(calibrationNotes.count) weights quantized per channel: their reduction dim is not a multiple of the group size (report.json)")
        }
        lines.append("\(entries.count) quantizers; lowest SQNR: " + entries.sorted { $0.sqnr < $1.sqnr }.prefix(3)
            .map { String(format: "%@ %.1f dB", $0.site.value, $0.sqnr) }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// report.json with a "search" object added (the target and whether it held on held-out data).
    func json(search: [String: Any]?) throws -> Data {
        let plain = try json()
        guard let search, var object = try JSONSerialization.jsonObject(with: plain) as? [String: Any] else { return plain }
        object["search"] = search
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}

/// The files of a quantized model: model.qdq.onnx, encodings.json, report.json.
enum QuantizedModelFiles {
    static func add(_ model: QuantizedModel, report: inout QuantizationReport, search: [String: Any]? = nil,
                    to files: inout OutputFiles) throws {
        let export = try QDQExport(model)
        report.exportNotes = export.notes
        let bytes: Data
        do { bytes = try export.proto.serializedBytes() } catch { throw MPQError.io("cannot encode the QDQ model: \(error)") }
        files.add("model.qdq.onnx", bytes)
        files.add("encodings.json", try QuantizationEncodings.json(model))
        files.add("report.json", try report.json(search: search))
    }
}
