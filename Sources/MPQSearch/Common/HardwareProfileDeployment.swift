import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime

extension HardwareProfile {
    /// The profile as `target` will run it: candidates with 8-bit signed weights take the bits the
    /// target's int8 kernels multiply exactly (7 on x86 without VNNI), keeping their names so configs and
    /// reports still say which candidate was chosen; one note per change.
    public func deployed(on target: DeploymentTarget, features: CPUFeatures = .current)
        -> (profile: HardwareProfile, notes: [String]) {
        guard let bits = target.integerKernelWeightBits(features: features) else { return (self, []) }
        var profile = self
        var changed: [String] = []
        profile.candidates = candidates.map { candidate in
            guard case .integer(let width, true, let symmetric, let narrow) = candidate.weights, width == 8, bits < 8 else {
                return candidate
            }
            changed.append(candidate.name)
            return Candidate(name: candidate.name,
                             weights: .integer(bits: bits, signed: true, symmetric: symmetric, narrowRange: narrow),
                             activations: candidate.activations)
        }
        guard !changed.isEmpty else { return (self, []) }
        return (profile, [
            "deployment target \(target.rawValue): this CPU has no VNNI, so ONNX Runtime's int8 kernels saturate with full-range int8 weights; candidate(s) \(changed.joined(separator: ", ")) use \(bits)-bit weight codes (reduced range; --deploy generic keeps int8)",
        ])
    }
}
