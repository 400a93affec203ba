import Foundation
import MPQGGUF
import MPQGraph

/// Predicted milliseconds per token of a mix on this CPU, from a `GGMLTypeSpeedTable`: every matrix
/// weight of type t costs (ms per token of the all-t model) / (its matrix weights), and a mix costs
/// the sum over its matrices.
///
/// Why per weight: a decoder's time per token is T(mix) = T0 + sum_i w_i c(t_i) (matrix i with w_i
/// weights in type t_i at c(t) per weight, T0 the attention, norms and sampling). The table measures
/// T(all t) = T0 + W c(t); spreading it over the W matrix weights gives T(mix) = sum_i (w_i / W)
/// T(all t_i) = T0 + sum_i w_i c(t_i) exactly, whatever T0 is, on the model the table was measured
/// on; on another model the per-weight costs transfer with its T0 share (`notes` says so). The token
/// embedding is a row lookup, not a product, and costs nothing unless it doubles as the output head.
public struct GGUFSpeedModel: Sendable {
    /// Which llama.cpp phase a prediction is for.
    public enum Phase: String, Sendable, CaseIterable {
        /// Generating one token at a time (matrix-vector products).
        case decode
        /// Processing a batched prompt (matrix-matrix products), per prompt token.
        case prefill
    }

    /// The measured table.
    public let table: GGMLTypeSpeedTable
    /// The phase predicted.
    public let phase: Phase
    /// candidateMilliseconds[group][candidate]: the group's matrices' share of a token in that type.
    public let candidateMilliseconds: [[Double]]
    /// The share of the matrices no choice changes.
    public let fixedMilliseconds: Double
    /// Lines about the prediction (e.g. a table measured on another model).
    public let notes: [String]

    /// Whether tensor `name` of `file` is a matrix of a product (not the embedding lookup).
    public static func isMatrixProduct(_ info: GGUFTensorInfo, in file: GGUFFile) -> Bool {
        guard info.dimensions.count == 2 else { return false }
        return info.name != "token_embd.weight" || file.tensor(named: "output.weight") == nil
    }

    /// Costs of every candidate of `space`, searched in `file`, for `phase`; throws naming the types
    /// the table lacks.
    public init(table: GGMLTypeSpeedTable, space: GGUFSearchSpace, file: GGUFFile, phase: Phase) throws {
        var candidates: [[Double]] = []
        for group in space.groups {
            let infos = group.tensors.compactMap { file.tensor(named: $0) }.filter { Self.isMatrixProduct($0, in: file) }
            candidates.append(try group.candidates.map { candidate in
                try infos.reduce(0.0) { total, info in
                    let type = GGUFSearchSpace.fallback(candidate.requested, rowLength: info.rowLength)
                    return total + Double(info.elementCount) * (try Self.millisecondsPerWeight(table, phase, type, tensor: info.name))
                }
            })
        }
        let searched = Set(space.groups.flatMap(\.tensors))
        var fixed = 0.0, weights = 0
        for info in file.tensors where Self.isMatrixProduct(info, in: file) {
            weights += info.elementCount
            if !searched.contains(info.name) { fixed += Double(info.elementCount) * (try Self.millisecondsPerWeight(table, phase, info.type, tensor: info.name)) }
        }
        var notes: [String] = []
        if weights != table.matmulWeights {
            notes.append("speed table measured on \(table.model) (\(table.matmulWeights) matrix weights); this model has \(weights): "
                         + "per-weight costs transferred, so predicted times are approximate")
        }
        self.table = table
        self.phase = phase
        self.candidateMilliseconds = candidates
        self.fixedMilliseconds = fixed
        self.notes = notes
    }

    /// A type's milliseconds per token and matrix weight; throws naming the types the table has.
    static func millisecondsPerWeight(_ table: GGMLTypeSpeedTable, _ phase: Phase, _ type: GGMLType, tensor: String) throws -> Double {
        guard let entry = table.types[type] else {
            throw MPQError.invalidInput("the speed table has no figures for \(type.name) (tensor \(tensor)); it has "
                                        + table.types.keys.map(\.name).sorted().joined(separator: ", "))
        }
        return (phase == .decode ? entry.decodeMilliseconds : entry.prefillMilliseconds) / Double(table.matmulWeights)
    }

    /// Predicted milliseconds per token of a whole GGUF file as it is (each matrix at its stored type).
    public static func milliseconds(of file: GGUFFile, table: GGMLTypeSpeedTable, phase: Phase) throws -> Double {
        try file.tensors.filter { isMatrixProduct($0, in: file) }.reduce(0.0) { total, info in
            total + Double(info.elementCount) * (try millisecondsPerWeight(table, phase, info.type, tensor: info.name))
        }
    }

    /// Predicted milliseconds per token of `choice` (a candidate index per group).
    public func milliseconds(_ choice: [Int]) -> Double {
        zip(candidateMilliseconds, choice).reduce(fixedMilliseconds) { $0 + $1.0[$1.1] }
    }

    /// The fastest and slowest mix the candidates allow.
    public var reachable: ClosedRange<Double> {
        let low = candidateMilliseconds.reduce(fixedMilliseconds) { $0 + ($1.min() ?? 0) }
        let high = candidateMilliseconds.reduce(fixedMilliseconds) { $0 + ($1.max() ?? 0) }
        return low...high
    }

    /// A prediction as reports print it, e.g. "0.3216 ms/token (3109 tokens/s) decoding".
    public func describe(_ choice: [Int]) -> String {
        let ms = milliseconds(choice)
        return String(format: "%.4f ms/token (%.0f tokens/s) %@", ms, 1000 / ms, phase == .decode ? "decoding" : "prompt processing")
    }
}

/// A search's speed constraint: predicted milliseconds per token at most `maxMilliseconds`.
public struct GGUFSpeedLimit: Sendable {
    /// The prediction the limit applies to.
    public var model: GGUFSpeedModel
    /// Most milliseconds per token allowed.
    public var maxMilliseconds: Double

    /// A limit; throws naming the reachable range when no mix can meet it.
    public init(model: GGUFSpeedModel, maxMilliseconds: Double) throws {
        let range = model.reachable
        let reachable = String(format: "reachable with these candidates: %.4f to %.4f ms/token", range.lowerBound, range.upperBound)
        guard maxMilliseconds.isFinite, maxMilliseconds > 0 else {
            throw MPQError.invalidInput("--max-ms-per-token must be a positive number (\(reachable))")
        }
        guard maxMilliseconds >= range.lowerBound else {
            throw MPQError.invalidInput(String(format: "%.4f ms/token %@ is faster than the fastest mix (%@)", maxMilliseconds,
                                               model.phase.rawValue, reachable))
        }
        self.model = model
        self.maxMilliseconds = maxMilliseconds
    }

    /// Whether `choice` is predicted within the limit.
    public func fits(_ choice: [Int]) -> Bool { model.milliseconds(choice) <= maxMilliseconds * (1 + 1e-12) }

    /// The limit as reports print it.
    public var description: String {
        String(format: "predicted %@ <= %.4f ms/token (speed table: %@, %d thread(s))", model.phase.rawValue, maxMilliseconds,
               model.table.cpu, model.table.threads)
    }
}
