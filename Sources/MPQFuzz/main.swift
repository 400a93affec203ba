// libFuzzer harness for mpq's readers of untrusted files (see FuzzEntry and scripts/fuzz.sh).
//
// Built two ways:
// - `scripts/fuzz.sh` builds with `-sanitize=fuzzer,address -D MPQ_FUZZING`: main hands control
//   to libFuzzer (LLVMFuzzerRunDriver), which calls LLVMFuzzerTestOneInput. SwiftPM links
//   executables with `--defsym main=MPQFuzz_main`, which shadows libFuzzer's own main, so the
//   driver is started from here instead.
// - A plain `swift build` makes a replay driver: `mpq-fuzz FILE|DIR...` runs every file through
//   the same entry point (folder name or extension picks the target, else the first byte does) -
//   for reproducing a crash under the debugger or without sanitizers.
//
// The target is chosen by MPQ_FUZZ_TARGET (onnx, npy, npz, gguf) when set; otherwise the first
// input byte selects it (FuzzEntry.run(tagged:)).
import Foundation
import MPQ

let fuzzTarget: FuzzEntry.Target? = ProcessInfo.processInfo.environment["MPQ_FUZZ_TARGET"].flatMap {
    FuzzEntry.Target(name: $0)
}

/// libFuzzer's per-input entry point: runs `size` bytes at `data` through `FuzzEntry` (the
/// target from MPQ_FUZZ_TARGET, else the one the first byte selects); always returns 0.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Data(bytes: data, count: size)
    if let target = fuzzTarget {
        FuzzEntry.run(target, input)
    } else {
        FuzzEntry.run(tagged: input)
    }
    return 0
}

#if MPQ_FUZZING
@_extern(c, "LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzz($0, $1) })
#else
var files: [String] = []
for argument in CommandLine.arguments.dropFirst() {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
        FileHandle.standardError.write(Data("mpq-fuzz: no such file: \(argument)\n".utf8))
        exit(2)
    }
    if isDirectory.boolValue {
        let enumerator = FileManager.default.enumerator(atPath: argument)
        while let relative = enumerator?.nextObject() as? String {
            let path = (argument as NSString).appendingPathComponent(relative)
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files.append(path)
            }
        }
    } else {
        files.append(argument)
    }
}
if files.isEmpty {
    print("usage: mpq-fuzz FILE|DIR...  (replays inputs through the fuzz entry point; see scripts/fuzz.sh)")
    exit(2)
}
for path in files.sorted() {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let accepted: Bool
    if let target = fuzzTarget {
        accepted = FuzzEntry.run(target, data)
    } else if let target = FuzzEntry.target(forPath: path) {
        accepted = FuzzEntry.run(target, data)
    } else {
        accepted = FuzzEntry.run(tagged: data)
    }
    print("\(accepted ? "accepted" : "rejected") \(path)")
}
print("replayed \(files.count) input(s) without a crash")
#endif
