import CDNNL
import Foundation
import MPQGraph

/// The instruction sets that decide whether oneDNN's int8 (u8 x s8) kernels
/// are exact and fast on this CPU, detected at run time.
///
/// Without VNNI, oneDNN multiplies u8 by s8 with `vpmaddubsw`, which adds two
/// neighbouring products in a saturating 16-bit lane: 2 x 255 x 127 = 64770
/// overflows 32767, so full-range int8 weights give wrong sums, while 7-bit
/// weights (2 x 255 x 64 = 32640) are exact. VNNI's `vpdpbusd` accumulates
/// in 32 bits and takes all 8 bits.
public struct CPUFeatures: Sendable, Equatable {
    /// AVX2 (Haswell and later): the baseline oneDNN's int8 kernels need.
    public var hasAVX2: Bool
    /// AVX-VNNI (VEX-encoded `vpdpbusd`, e.g. Alder Lake and later).
    public var hasAVXVNNI: Bool
    /// AVX512-VNNI (Cascade Lake, Ice Lake, Zen 4 and later).
    public var hasAVX512VNNI: Bool
    /// oneDNN dispatches VNNI code here: the CPU has it and `DNNL_MAX_CPU_ISA` does not forbid it.
    public var oneDNNUsesVNNI: Bool

    /// Bits a signed weight code may span for oneDNN's int8 sums to be exact:
    /// 8 ([-128, 127]) where oneDNN uses VNNI, else 7 ([-64, 63]).
    public var int8WeightBits: Int { oneDNNUsesVNNI ? 8 : 7 }

    /// Features stated directly (e.g. those of a deployment machine other than this one).
    public init(hasAVX2: Bool, hasAVXVNNI: Bool, hasAVX512VNNI: Bool, oneDNNUsesVNNI: Bool) {
        self.hasAVX2 = hasAVX2
        self.hasAVXVNNI = hasAVXVNNI
        self.hasAVX512VNNI = hasAVX512VNNI
        self.oneDNNUsesVNNI = oneDNNUsesVNNI
    }

    /// This machine, from the `flags` line of /proc/cpuinfo and oneDNN's effective ISA.
    public static let current = CPUFeatures(
        cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "",
        oneDNNISA: dnnl_get_effective_cpu_isa())

    /// Features from the text of /proc/cpuinfo and oneDNN's effective ISA
    /// (whose values are bit supersets: avx512_core_bf16 includes avx512_core_vnni).
    init(cpuinfo: String, oneDNNISA: dnnl_cpu_isa_t) {
        let flagsLine = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let flags = Set(flagsLine.split(separator: ":").dropFirst().first?.split(separator: " ").map(String.init) ?? [])
        hasAVX2 = flags.contains("avx2")
        hasAVXVNNI = flags.contains("avx_vnni")
        hasAVX512VNNI = flags.contains("avx512_vnni")
        oneDNNUsesVNNI = [dnnl_cpu_isa_avx512_core_vnni, dnnl_cpu_isa_avx2_vnni].contains { vnni in
            oneDNNISA.rawValue & vnni.rawValue == vnni.rawValue
        }
    }
}
