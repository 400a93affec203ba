import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

extension GGUFCalibration {
    /// Measured calibration KLD of a whole mix (`choice` indexes `space`'s candidates): every
    /// tensor whose type changes takes dequant(quant(W)) and the whole graph runs. Cached under
    /// its type list, so a resumed search reads it back.
    public func kld(of choice: [Int], in space: GGUFSearchSpace, weights: GGUFQuantizedWeights,
                    cache: SensitivityCache?) throws -> Double {
        let key = "mix|" + space.groups.enumerated().map { "\($0.offset)=\($0.element.candidates[choice[$0.offset]].type.name)" }
            .joined(separator: ",")
        if let cached = cache?.score(key) { return cached }
        var replacing: [String: Tensor] = [:]
        for (name, type) in space.types(choice).sorted(by: { $0.key < $1.key }) {
            guard let info = weights.file.tensor(named: name), info.type != type else { continue }
            replacing[name] = try weights.values(name, type)
        }
        let value = try kld(replacing: replacing, fromLayer: nil)
        try cache?.store(key, value)
        return value
    }
}
