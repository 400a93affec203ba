import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

/// One candidate per quantizer group (indices into each group's allowed
/// candidates): the per-site formats it means and the config file that
/// reproduces it with `mpq quantize --config`. Both search methods produce these.
public struct CandidateAssignment: Sendable {
    /// The quantizer groups the choice is over.
    public var groups: QuantizerGroups
    /// Allowed candidates per group.
    public var candidates: [[Candidate]]
    /// Candidate index per group.
    public var choice: [Int]

    /// An assignment picking `candidates[g][choice[g]]` for each group g.
    public init(groups: QuantizerGroups, candidates: [[Candidate]], choice: [Int]) {
        self.groups = groups
        self.candidates = candidates
        self.choice = choice
    }

    /// The format of every site: its group's candidate's weight or activation format.
    public var formats: [String: QuantizationFormat] {
        var formats: [String: QuantizationFormat] = [:]
        for (g, group) in groups.groups.enumerated() {
            let candidate = candidates[g][choice[g]]
            for site in group.sites { formats[site.value] = site.role == .weight ? candidate.weights : candidate.activations }
        }
        return formats
    }

    /// The config in `QuantizationConfig.load`'s layout: every site's format under "tensors",
    /// the candidate per group under "groups", plus `extra` entries (e.g. the cost).
    public func configJSON(granularity: QuantizationConfig.WeightGranularity, weightRange: RangeMethod,
                           activationRange: RangeMethod, extra: [String: Any] = [:]) throws -> Data {
        var object: [String: Any] = [
            "weights": "fp32",
            "activations": "fp32",
            "granularity": granularity.name,
            "weight_range": weightRange.rawValue,
            "activation_range": activationRange.rawValue,
            "tensors": formats.mapValues(\.name),
            "groups": Dictionary(uniqueKeysWithValues: zip(groups.groups, zip(candidates, choice))
                .map { ($0.name, $1.0[$1.1].name) }),
        ]
        object.merge(extra) { _, new in new }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
