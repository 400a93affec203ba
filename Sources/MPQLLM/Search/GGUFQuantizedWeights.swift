import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Weights of a GGUF model converted to candidate types exactly as llama-quantize writes them
/// (MPQGGUF's bit-exact port of ggml's quantisers, fed the importance matrix where it has an
/// entry), and back to float32 for the graph.
public struct GGUFQuantizedWeights: @unchecked Sendable {
    /// The source GGUF whose tensors are converted.
    public let file: GGUFFile
    /// Importance matrix the quantisers weight their error with (llama-imatrix's statistics); nil: unweighted,
    /// as llama-quantize without --imatrix.
    public let imatrix: IMatrix?

    /// Conversions of the tensors of `file`, weighted by `imatrix` where it has an entry of the row length.
    public init(file: GGUFFile, imatrix: IMatrix?) {
        self.file = file
        self.imatrix = imatrix
    }

    /// The bytes of tensor `name` in `type` (the source bytes when `type` is the source's type).
    public func bytes(_ name: String, _ type: GGMLType) throws -> Data {
        guard let info = file.tensor(named: name) else { throw MPQError.invalidModel("GGUF lacks tensor '\(name)'") }
        if type == info.type { return file.tensorData(info) }
        let values = try file.floats(info)
        let importance = imatrix?.importance(for: name).flatMap { $0.count == info.rowLength ? $0 : nil }
        do {
            return Data(try GGMLQuants.quantize(type, values: values, rowLength: info.rowLength, importance: importance))
        } catch {
            throw MPQError.invalidInput("cannot convert \(name) to \(type.name): \(error)")
        }
    }

    /// dequant(quant(W)) of tensor `name` as a float32 tensor in GGUF layout [ne1, ne0].
    public func values(_ name: String, _ type: GGMLType) throws -> Tensor {
        guard let info = file.tensor(named: name) else { throw MPQError.invalidModel("GGUF lacks tensor '\(name)'") }
        let data = try bytes(name, type)
        let floats = try data.withUnsafeBytes { try GGMLQuants.dequantize(type, bytes: $0, count: info.elementCount) }
        return Tensor(shape: info.dimensions.reversed(), scalars: floats)
    }
}
