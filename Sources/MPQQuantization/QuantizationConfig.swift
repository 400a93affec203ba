import Foundation
import MPQGraph
import MPQRuntime

/// The formats a graph's quantizers use: a default for weights and one for
/// activations, per-value overrides (mixed precision is the general case),
/// weight granularity and the range estimators.
public struct QuantizationConfig: Sendable, Equatable {
    /// How many scales a weight gets: one per tensor, per output channel, or per group of `size`
    /// consecutive elements along the reduction axis.
    public enum WeightGranularity: Sendable, Equatable {
        case perTensor, perChannel
        case perGroup(size: Int)
    }

    /// Default format of weight quantizers.
    public var weights: QuantizationFormat
    /// Default format of activation quantizers.
    public var activations: QuantizationFormat
    /// Scale granularity of weights; default per channel.
    public var weightGranularity: WeightGranularity
    /// Range estimator for weights; default min-max.
    public var weightRange: RangeMethod
    /// Range estimator for activations; default MSE.
    public var activationRange: RangeMethod
    /// Format per value name, overriding the defaults.
    public var overrides: [String: QuantizationFormat]

    /// A configuration from its parts; defaults are per-channel min-max weights and MSE activation ranges.
    public init(weights: QuantizationFormat, activations: QuantizationFormat,
                weightGranularity: WeightGranularity = .perChannel, weightRange: RangeMethod = .minMax,
                activationRange: RangeMethod = .mse, overrides: [String: QuantizationFormat] = [:]) {
        self.weights = weights
        self.activations = activations
        self.weightGranularity = weightGranularity
        self.weightRange = weightRange
        self.activationRange = activationRange
        self.overrides = overrides
    }

    /// A uniform preset `wXaY` (e.g. w8a8, w4a8, w8a16, w16a16, w4a4): X-bit signed symmetric
    /// weights, Y-bit unsigned asymmetric activations (the AIMET / QNN convention).
    public init(preset: String) throws {
        let lower = preset.lowercased()
        guard lower.hasPrefix("w"), let a = lower.firstIndex(of: "a"),
              let w = Int(lower[lower.index(after: lower.startIndex)..<a]), let act = Int(lower[lower.index(after: a)...]),
              (2...16).contains(w), (2...16).contains(act) else {
            throw MPQError.invalidInput("unknown configuration '\(preset)': use wXaY with X, Y in 2...16 (e.g. w8a8, w4a8, w8a16) or a JSON file")
        }
        self.init(weights: .integer(bits: w, signed: true, symmetric: true),
                  activations: .integer(bits: act, signed: false, symmetric: false))
    }

    /// The format of a site (its override, else the default for its role).
    public func format(for site: QuantizerPlacement.Site) -> QuantizationFormat {
        overrides[site.value] ?? (site.role == .weight ? weights : activations)
    }

    /// Reads a config: a preset name, or a JSON file
    /// `{"weights": "int8", "activations": "uint8", "granularity": "per-channel" | "per-tensor" | "per-group:32",
    ///   "weight_range": "minmax", "activation_range": "mse", "tensors": {"VALUE": "int4", ...}}`.
    /// Unknown formats and tensor names not in `placement` are errors.
    /// Keys a config file may hold: the settings above, and what `mpq search` adds to
    /// its config.json for the reader (candidate per group, relative cost, cost kind).
    public static let knownKeys: Set<String> = [
        "weights", "activations", "granularity", "weight_range", "activation_range", "tensors",
        "groups", "relative_cost", "cost",
    ]

    /// Parses `specification`: a `wXaY` preset, or a path ending in `.json` in the format above.
    public static func load(_ specification: String, placement: QuantizerPlacement) throws -> QuantizationConfig {
        guard specification.hasSuffix(".json") else { return try QuantizationConfig(preset: specification) }
        guard FileManager.default.fileExists(atPath: specification) else { throw MPQError.fileNotFound(specification) }
        guard let data = FileManager.default.contents(atPath: specification),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw MPQError.invalidInput("\(specification) is not a JSON object")
        }
        let unknownKeys = object.keys.filter { !knownKeys.contains($0) }.sorted()
        guard unknownKeys.isEmpty else {
            throw MPQError.invalidInput("\(specification): unknown key\(unknownKeys.count == 1 ? "" : "s") \(unknownKeys.map { "'\($0)'" }.joined(separator: ", ")) (valid keys: \(knownKeys.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String) throws -> String? {
            guard let value = object[key] else { return nil }
            guard let text = value as? String else { throw MPQError.invalidInput("\(specification): '\(key)' must be a string") }
            return text
        }
        var config = QuantizationConfig(
            weights: try QuantizationFormat(parsing: try string("weights") ?? "int8"),
            activations: try QuantizationFormat(parsing: try string("activations") ?? "uint8"))
        if let granularity = try string("granularity") {
            config.weightGranularity = try WeightGranularity(parsing: granularity)
        }
        for (key, keyPath) in [("weight_range", \QuantizationConfig.weightRange), ("activation_range", \.activationRange)] {
            if let name = try string(key) {
                guard let method = RangeMethod(rawValue: name) else {
                    throw MPQError.invalidInput("\(specification): unknown \(key) '\(name)' (use \(RangeMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                config[keyPath: keyPath] = method
            }
        }
        if let tensors = object["tensors"] {
            guard let entries = tensors as? [String: String] else {
                throw MPQError.invalidInput("\(specification): 'tensors' must map value names to format names")
            }
            let known = Set(placement.sites.map(\.value))
            let unknown = entries.keys.filter { !known.contains($0) }.sorted()
            if !unknown.isEmpty {
                let valid = placement.sites.map(\.value)
                let listed = valid.prefix(8).joined(separator: ", ") + (valid.count > 8 ? ", ... (\(valid.count) in all; `mpq inspect --groups` lists them)" : "")
                throw MPQError.invalidInput("\(specification): tensor\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) \(unknown.count == 1 ? "has" : "have") no quantizer in this model (valid tensors: \(listed))")
            }
            for (name, format) in entries.sorted(by: { $0.key < $1.key }) {
                config.overrides[name] = try QuantizationFormat(parsing: format)
            }
        }
        return config
    }
}

extension QuantizationConfig.WeightGranularity {
    /// "per-tensor", "per-channel" or "per-group:G", as `init(parsing:)` reads it.
    public var name: String {
        switch self {
        case .perTensor: return "per-tensor"
        case .perChannel: return "per-channel"
        case .perGroup(let size): return "per-group:\(size)"
        }
    }

    /// "per-tensor", "per-channel" or "per-group:G".
    public init(parsing text: String) throws {
        switch text {
        case "per-tensor": self = .perTensor
        case "per-channel": self = .perChannel
        default:
            guard text.hasPrefix("per-group:"), let size = Int(text.dropFirst("per-group:".count)), size > 0 else {
                throw MPQError.invalidInput("unknown granularity '\(text)': use per-tensor, per-channel or per-group:G")
            }
            self = .perGroup(size: size)
        }
    }
}
