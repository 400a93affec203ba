// Throughput of MPQGGUF's ggml (de)quantisers and GGUF reading/writing; compiled together with
// Sources/MPQGGUF by bench/gguf_bench.sh (as main.swift of one module, so no import).
import Foundation

let arguments = CommandLine.arguments.dropFirst()
let model = arguments.first
let n = 4096, rows = 256
var state: UInt64 = 1
let x: [Float] = (0..<(n * rows)).map { _ in
    state = state &* 6364136223846793005 &+ 1442695040888963407
    return Float(Int32(truncatingIfNeeded: state >> 32)) * 0x1p-31
}
let w = (0..<n).map { Float($0 % 13) + 0.5 }
print("values: \(rows) rows × \(n); threads: \(ProcessInfo.processInfo.activeProcessorCount)")
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}
for type in GGMLType.allCases where type.canQuantize {
    var line = type.name.padding(toLength: 7, withPad: " ", startingAt: 0)
    for importance in [nil, w] as [[Float]?] {
        var q: [UInt8] = []
        let t1 = try seconds { q = try GGMLQuants.quantize(type, values: x, rowLength: n, importance: importance, parallel: false) }
        let tp = try seconds { _ = try GGMLQuants.quantize(type, values: x, rowLength: n, importance: importance, parallel: true) }
        line += String(format: " quantize%@ %7.1f M/s (1 thread) %7.1f M/s (all)", importance == nil ? "" : "+imatrix", Double(x.count) / t1 / 1e6, Double(x.count) / tp / 1e6)
        if importance == nil {
            _ = try GGMLQuants.dequantize(type, data: q, count: x.count)
            let td = try seconds { _ = try GGMLQuants.dequantize(type, data: q, count: x.count) }
            line += String(format: " dequantize %7.0f M/s", Double(x.count) / td / 1e6)
        }
    }
    print(line)
}
if let model {
    let url = URL(fileURLWithPath: model)
    var file: GGUFFile!
    let tr = try seconds { file = try GGUFFile(contentsOf: url) }
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-bench-\(UUID().uuidString).gguf")
    defer { try? FileManager.default.removeItem(at: out) }
    let tw = try seconds { try file.write(to: out) }
    let same = try Data(contentsOf: out) == Data(contentsOf: url)
    print(String(format: "%@: open+validate %.3f s (%d tensors, %d keys), rewrite %.3f s, byte-identical: %@",
                 url.lastPathComponent, tr, file.tensors.count, file.metadata.count, tw, same ? "yes" : "NO"))
}
