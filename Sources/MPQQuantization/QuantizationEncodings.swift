import Foundation
import MPQGraph
import MPQRuntime

/// Quantizer encodings as JSON, in the layout of AIMET's encodings files
/// (`activation_encodings` / `param_encodings`, one entry per channel or
/// group, `offset` = -zero point) so tools that read AIMET encodings read these.
public enum QuantizationEncodings {
    /// The encodings of every quantizer of `model`: bitwidth, format, min/max and (for integers)
    /// scale, offset = −zero point and symmetry, per channel or group, plus the granularity of weights.
    public static func json(_ model: QuantizedModel) throws -> Data {
        var activations: [String: Any] = [:], parameters: [String: Any] = [:], granularities: [String: Any] = [:]
        for site in model.placement.sites {
            guard let p = model.parameters[site.value] else { continue }
            let entries = (0..<p.scales.count).map { i -> [String: Any] in
                var entry: [String: Any] = [
                    "bitwidth": p.format.bitWidth,
                    "dtype": p.format.isInteger ? "int" : "float",
                    "format": p.format.name,
                    "min": Double(p.minimums[i]), "max": Double(p.maximums[i]),
                ]
                if p.format.isInteger {
                    entry["scale"] = Double(p.scales[i])
                    entry["offset"] = -p.zeroPoints[i]
                    entry["is_symmetric"] = p.format.isSymmetric ? "True" : "False"
                }
                return entry
            }
            var granularity: [String: Any] = ["type": "per_tensor"]
            switch p.granularity {
            case .perTensor: break
            case .perChannel(let axis): granularity = ["type": "per_channel", "axis": axis]
            case .perGroup(let axis, let size): granularity = ["type": "per_block", "axis": axis, "block_size": size]
            }
            if site.role == .weight {
                parameters[site.value] = entries
                granularities[site.value] = granularity
            } else {
                activations[site.value] = entries
            }
        }
        let object: [String: Any] = [
            "version": "0.6.1",
            "activation_encodings": activations,
            "param_encodings": parameters,
            "param_granularity": granularities,
            "quantizer_args": [
                "activation_range": model.config.activationRange.rawValue,
                "weight_range": model.config.weightRange.rawValue,
                "default_weights": model.config.weights.name,
                "default_activations": model.config.activations.name,
            ],
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
