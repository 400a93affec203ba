import Foundation
import MPQGraph
import MPQQuantization
import MPQRuntime
import MPQSearch

/// The files a workflow produces, kept in memory until the run has succeeded, then written
/// all at once: into a new folder beside the output folder, which is renamed into place and
/// replaces the previous folder wholly. A failed run leaves the previous folder as it was
/// and no new files.
public struct OutputFiles: Sendable {
    /// File names (no folders) and contents, in the order they were added.
    public private(set) var entries: [(name: String, data: Data)] = []

    /// No files yet.
    public init() {}

    /// File names in the order they were added.
    public var names: [String] { entries.map(\.name) }

    /// Contents of the file `name`, or nil when none was added.
    public subscript(name: String) -> Data? { entries.last { $0.name == name }?.data }

    /// Adds a file, replacing one of the same name (which moves to the end).
    public mutating func add(_ name: String, _ data: Data) {
        entries.removeAll { $0.name == name }
        entries.append((name, data))
    }

    /// Replaces the folder at `path` with exactly these files (all or nothing).
    public func write(to path: String) throws {
        try OutputFolder.replace(path, with: entries)
    }
}

/// All-or-nothing output folders.
public enum OutputFolder {
    /// Checks, before any work, that `path` can become the output folder: not a file, and its nearest
    /// existing ancestor a folder files can be created in. Nothing is created.
    public static func check(_ path: String, option: String = "--out") throws {
        guard !path.isEmpty else { throw MPQError.invalidInput("\(option) is empty: give a folder") }
        let last = (path as NSString).lastPathComponent
        guard ![".", "..", "/"].contains(last) else {
            throw MPQError.invalidInput("\(option) \(path): the folder is replaced wholly by the results; give a folder of its own (e.g. \(option) out)")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw MPQError.invalidInput("\(option) \(path) is a file, expected a folder")
        }
        var ancestor = parent(of: path)
        while !FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
            let next = (ancestor as NSString).deletingLastPathComponent
            if next == ancestor || next.isEmpty { return }
            ancestor = next
        }
        guard isDirectory.boolValue else { throw MPQError.invalidInput("\(option) \(path): cannot create it, \(ancestor) is a file, not a folder") }
        guard canCreateFiles(in: ancestor) else {
            throw MPQError.invalidInput("\(option) \(path): cannot create it, \(ancestor) is not writable")
        }
    }

    /// True when a file can be created in `folder` (a probe file is created and removed: access(2)
    /// says yes to root even on read-only file systems).
    public static func canCreateFiles(in folder: String) -> Bool {
        guard FileManager.default.isWritableFile(atPath: folder) else { return false }
        let probe = (folder as NSString).appendingPathComponent(".mpq-write-probe-\(getpid())-\(UUID().uuidString)")
        let descriptor = open(probe, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard descriptor >= 0 else { return false }
        close(descriptor)
        unlink(probe)
        return true
    }

    /// Writes `files` into a new folder beside `path` and renames it to `path`, replacing a previous
    /// folder there wholly. On failure the previous folder stays and nothing new is left behind
    /// (missing parent folders created for it are removed again).
    public static func replace(_ path: String, with files: [(name: String, data: Data)]) throws {
        let manager = FileManager.default
        let parentPath = parent(of: path)
        var created: [String] = []
        var missing = parentPath
        while !manager.fileExists(atPath: missing) {
            created.append(missing)
            let next = (missing as NSString).deletingLastPathComponent
            if next == missing || next.isEmpty { break }
            missing = next
        }
        let name = (path as NSString).lastPathComponent
        let tag = "\(getpid())-\(UUID().uuidString.prefix(8))"
        let staging = (parentPath as NSString).appendingPathComponent(".\(name).mpq-new-\(tag)")
        let previous = (parentPath as NSString).appendingPathComponent(".\(name).mpq-old-\(tag)")
        func cleanUp() {
            try? manager.removeItem(atPath: staging)
            for folder in created { rmdir(folder) }
        }
        do {
            try manager.createDirectory(atPath: staging, withIntermediateDirectories: true)
            for (file, data) in files {
                do {
                    try data.write(to: URL(fileURLWithPath: (staging as NSString).appendingPathComponent(file)))
                } catch {
                    throw MPQError.io("cannot write \(file) for \(path): \(reason(error))")
                }
            }
            var isDirectory: ObjCBool = false
            let exists = manager.fileExists(atPath: path, isDirectory: &isDirectory)
            if exists {
                guard isDirectory.boolValue else { throw MPQError.io("\(path) is a file, expected a folder") }
                guard rename(path, previous) == 0 else { throw MPQError.io("cannot replace \(path): \(String(cString: strerror(errno)))") }
            }
            guard rename(staging, path) == 0 else {
                let message = String(cString: strerror(errno))
                if exists { rename(previous, path) }
                throw MPQError.io("cannot create \(path): \(message)")
            }
            if exists { try? manager.removeItem(atPath: previous) }
        } catch let error as MPQError {
            cleanUp()
            throw error
        } catch {
            cleanUp()
            throw MPQError.io("cannot create the folder \(path): \(reason(error))")
        }
    }

    static func parent(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "." : parent
    }

    private static func reason(_ error: Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return error.localizedDescription
    }
}
