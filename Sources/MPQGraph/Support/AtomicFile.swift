import Foundation

/// Writes files so that a reader never sees a half-written one: the bytes go
/// to a temporary file in the same folder, which is then renamed over the target.
public enum AtomicFile {
    /// Writes `data` to `path` atomically (temporary file in the same folder, then rename);
    /// throws `MPQError.io` when the folder does not exist or the write fails.
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw MPQError.io("folder \(directory.path) does not exist")
        }
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try data.write(to: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw MPQError.io("cannot write \(path): \(error.localizedDescription)")
        }
        // rename(2) replaces the target atomically.
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw MPQError.io("cannot write \(path): \(reason)")
        }
    }
}
