import Foundation
import ZIPFoundation

/// numpy's `.npz` format: a zip archive of `.npy` files, one per named array
/// (stored or deflated, as `numpy.savez` / `savez_compressed` write them).
public enum NPZ {
    /// Reads every array of a `.npz` file, by name (without the `.npy` suffix).
    public static func read(contentsOf path: String) throws -> [String: Tensor] {
        guard FileManager.default.fileExists(atPath: path) else { throw MPQError.fileNotFound(path) }
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw MPQError.invalidTensorFile("\(path): not a .npz (zip) archive")
        }
        var arrays: [String: Tensor] = [:]
        // A compressed entry may claim (or inflate to) far more than memory holds (a zip bomb), and
        // entries each under the limit may do so together: the declared sizes' sum is checked first.
        let limit = SizeLimits.maximumTensorBytes
        let declaredTotal = archive.reduce(UInt64(0)) { total, entry in
            guard entry.type == .file else { return total }
            let (sum, overflow) = total.addingReportingOverflow(entry.uncompressedSize)
            return overflow ? .max : sum
        }
        guard declaredTotal <= UInt64(limit) else {
            throw MPQError.limitExceeded("\(path): its arrays declare \(declaredTotal) bytes together, more than this machine's memory (\(SizeLimits.describe(bytes: limit)))")
        }
        for entry in archive where entry.type == .file {
            let name = entry.path.hasSuffix(".npy") ? String(entry.path.dropLast(4)) : entry.path
            guard arrays[name] == nil else {
                throw MPQError.invalidTensorFile("\(path): array '\(name)' is stored twice")
            }
            let declared = Int(entry.uncompressedSize)
            var bytes = Data()
            // Reserve no more than the entry's stored bytes can plausibly hold (deflate peaks near
            // 1032:1), so a small file declaring huge entries does not claim memory up front.
            bytes.reserveCapacity(min(declared, 1 << 26, Int(min(entry.compressedSize, 1 << 20)) * 1032))
            do {
                _ = try archive.extract(entry) { chunk in
                    guard bytes.count + chunk.count <= declared else {
                        throw MPQError.invalidTensorFile("\(path): entry '\(entry.path)' inflates past its declared size of \(declared) bytes")
                    }
                    bytes.append(chunk)
                }
            } catch let error as MPQError {
                throw error
            } catch {
                throw MPQError.invalidTensorFile("\(path): entry '\(entry.path)' is corrupt (\(error))")
            }
            arrays[name] = try NPY.decode(bytes, source: "\(path)[\(name)]")
        }
        return arrays
    }

    /// Writes named arrays to a `.npz` file (stored, like `numpy.savez`), atomically.
    public static func write(_ arrays: [String: Tensor], to path: String) throws {
        let archive: Archive
        do {
            archive = try Archive(accessMode: .create)
            for name in arrays.keys.sorted() {
                let bytes = try NPY.encode(arrays[name]!)
                try archive.addEntry(with: "\(name).npy", type: .file, uncompressedSize: Int64(bytes.count)) {
                    position, size in bytes.subdata(in: Int(position)..<(Int(position) + size))
                }
            }
        } catch let error as MPQError {
            throw error
        } catch {
            throw MPQError.io("cannot build \(path): \(error)")
        }
        guard let data = archive.data else { throw MPQError.io("cannot build \(path)") }
        try AtomicFile.write(data, to: path)
    }
}
