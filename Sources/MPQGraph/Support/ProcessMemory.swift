import Foundation

/// Memory figures of this process, from Linux `/proc/self/status`.
public enum ProcessMemory {
    /// Peak resident set size (VmHWM) in bytes; 0 where unavailable.
    public static var peakResidentBytes: Int { field("VmHWM:") }

    /// Current resident set size (VmRSS) in bytes; 0 where unavailable.
    public static var residentBytes: Int { field("VmRSS:") }

    private static func field(_ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kilobytes * 1024
    }
}
