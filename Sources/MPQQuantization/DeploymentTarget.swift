import Foundation
import MPQGraph
import MPQRuntime

/// The runtime an exported model will run on, and what that runtime does to a QDQ model.
///
/// A QDQ model states exact integer semantics, but runtimes fuse QuantizeLinear / DequantizeLinear
/// pairs into integer kernels that may not honour them. ONNX Runtime on x86 runs u8 x s8 products
/// with `vpmaddubsw`, which adds pairs of products into a saturating int16 unless the CPU has VNNI:
/// with full-range int8 weights (|w| up to 127) and uint8 activations the pair sum reaches
/// 2 x 255 x 127 = 64770 > 32767 and clips (measured on mobilenetv2 W8A8: 7.3 dB in ORT's default
/// session against 15.5 dB with its optimisations off). 7-bit weights ([-64, 63]) keep every pair
/// sum within int16, which is what ONNX Runtime's own `reduce_range` does. mpq therefore simulates
/// and exports 7-bit weights for that target, so the accuracy it reports is the deployed one.
public enum DeploymentTarget: String, CaseIterable, Sendable, Codable {
    /// ONNX Runtime's CPU provider on x86-64: weights of int8 kernels are 7-bit without VNNI.
    case ortX86 = "ort-x86"
    /// ONNX Runtime's CPU provider on ARM64 (sdot / i8mm kernels: full int8 is exact).
    case ortArm64 = "ort-arm64"
    /// Exact QDQ semantics, as ONNX Runtime runs with its graph optimisations off.
    case generic

    /// The target of the machine mpq runs on.
    public static var host: DeploymentTarget {
        #if arch(x86_64)
        return .ortX86
        #elseif arch(arm64)
        return .ortArm64
        #else
        return .generic
        #endif
    }

    /// Operators whose weights the target's fused integer kernels read.
    static let integerKernelOps: Set<String> = ["Conv", "ConvTranspose", "MatMul", "Gemm"]

    /// The widest signed weight code the target's int8 kernels multiply exactly (nil: no limit), for
    /// the CPU described by `features` (the deployment machine; the host by default).
    public func integerKernelWeightBits(features: CPUFeatures = .current) -> Int? {
        switch self {
        case .ortX86: features.hasAVXVNNI || features.hasAVX512VNNI ? 8 : 7
        case .ortArm64, .generic: nil
        }
    }

    /// What the target will do to `config`: 8-bit signed weights of integer-kernel operators narrowed
    /// to the bits the target multiplies exactly, and one line per change for the user and the report.
    public func adapted(_ config: QuantizationConfig, placement: QuantizerPlacement, graph: Graph,
                        features: CPUFeatures = .current) -> (config: QuantizationConfig, notes: [String]) {
        guard let bits = integerKernelWeightBits(features: features) else { return (config, []) }
        let kernelNodes = Set(graph.nodes.filter { Self.integerKernelOps.contains($0.opType) }.map(\.name))
        var adapted = config
        var narrowed: [String] = []
        for site in placement.sites where site.role == .weight && site.consumers.contains(where: kernelNodes.contains) {
            let format = config.format(for: site)
            guard case .integer(let width, true, let symmetric, let narrow) = format, width > bits, width == 8 else { continue }
            adapted.overrides[site.value] = .integer(bits: bits, signed: true, symmetric: symmetric, narrowRange: narrow)
            narrowed.append(site.value)
        }
        guard !narrowed.isEmpty else { return (adapted, []) }
        return (adapted, [
            "deployment target \(rawValue): this CPU has no VNNI, so ONNX Runtime's int8 kernels saturate with full-range int8 weights; \(narrowed.count) weight tensor(s) use \(bits)-bit codes instead (reduced range; --deploy generic keeps int8)",
        ])
    }
}
