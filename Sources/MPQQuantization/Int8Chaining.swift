import Foundation
import MPQGraph
import MPQRuntime

/// Plan-time rewrite (part of `OperatorFusion`, so only for plans without
/// value hooks) that keeps activations in uint8 between int8 layers of a
/// lowered graph (`Int8Lowering`), instead of float32 that every reader
/// quantizes again:
///
/// - an int8 Conv / MatMul / Gemm whose readers all take uint8 codes of one
///   quantization (int8 layers with that input quantizer, `FakeQuantize`
///   nodes with those parameters, integer Adds) requantizes its output inside
///   the oneDNN primitive (output scales, post-ops, then `1 / s_y` and `+ z_y`
///   before the saturating conversion to u8) and hands the codes over in its
///   own layout (channels-last for convolutions): no float round trip, no
///   reorder. A Relu / ReLU6 already fused into it is dropped when the
///   quantizer's range makes it a no-op.
/// - a `FakeQuantize` of such a value is the identity on its codes: removed,
///   its readers read the codes.
/// - an Add of two such values (the residual Adds of MobileNet-style
///   networks, whose inputs and output are quantized) runs on the codes as
///   `Int8AddKernel`, emitting codes when its readers take them, float32
///   otherwise.
///
/// Every code is the simulation's up to one step where the float value lies
/// within rounding of a tie (the kernels multiply by `1 / s_y` where the
/// simulation divides). Disabled with the environment variable
/// `MPQ_INT8_CHAINING=0` (to time the difference).
enum Int8Chaining {
    typealias Entry = (node: Node, op: Operator)

    static var isEnabled: Bool { ProcessInfo.processInfo.environment["MPQ_INT8_CHAINING"] != "0" }

    static func chain(_ entries: [Entry], outputs: Set<String>, specs: [String: ValueSpec]) throws -> [Entry] {
        guard isEnabled, entries.contains(where: { $0.op is QuantizedLinearOperator }) else { return entries }
        var producer: [String: Int] = [:]
        var readers: [String: [(index: Int, slot: Int)]] = [:]
        for (index, entry) in entries.enumerated() {
            for name in entry.node.outputs where !name.isEmpty { producer[name] = index }
            for (slot, name) in entry.node.inputs.enumerated() where !name.isEmpty {
                readers[name, default: []].append((index, slot))
            }
        }
        /// The uint8 per-tensor quantization a FakeQuantize node applies.
        func fakeQuantizer(_ entry: Entry) -> UInt8Quantization? {
            guard let op = entry.op as? FakeQuantizeOperator, entry.node.inputs.count == 1 else { return nil }
            let p = op.parameters
            guard case .integer(8, false, _, false) = p.format, p.granularity == .perTensor,
                  p.scales.count == 1, p.zeroPoints.count == 1 else { return nil }
            return try? UInt8Quantization(scale: p.scales[0], zeroPoint: p.zeroPoints[0])
        }
        func linear(_ entry: Entry) -> QuantizedLinearOperator? {
            guard let op = entry.op as? QuantizedLinearOperator, !op.postOps.contains(.sum) else { return nil }
            return op
        }
        /// A two-operand Add of computed values of one known shape.
        func isAdd(_ entry: Entry) -> Bool {
            let node = entry.node
            guard node.domain.isEmpty, node.opType == "Add", node.inputs.count == 2, node.outputs.count == 1,
                  let a = specs[node.inputs[0]], let b = specs[node.inputs[1]], a.constant == nil, b.constant == nil,
                  let shape = a.shape, shape == b.shape else { return false }
            return true
        }

        // Candidates and the quantization of their codes.
        var quantization: [String: UInt8Quantization] = [:]
        for entry in entries {
            guard entry.node.outputs.count == 1, let value = entry.node.outputs.first, !value.isEmpty,
                  !outputs.contains(value), specs[value]?.dtype == .float32 else { continue }
            if let q = fakeQuantizer(entry) {
                quantization[value] = q
                continue
            }
            guard linear(entry) != nil || isAdd(entry) else { continue }
            // The quantization its readers agree on.
            var agreed: UInt8Quantization?
            var conflict = false
            for reader in readers[value] ?? [] {
                let readerEntry = entries[reader.index]
                var wanted: UInt8Quantization?
                if let op = readerEntry.op as? QuantizedLinearOperator, reader.slot == 0 { wanted = op.input }
                if let q = fakeQuantizer(readerEntry) { wanted = q }
                guard let wanted else { continue }
                if agreed == nil { agreed = wanted } else if agreed != wanted { conflict = true }
            }
            if !conflict, let agreed { quantization[value] = agreed }
        }

        // Drop candidates with a reader that needs float32, until none is left.
        var codes = Set(quantization.keys)
        func addRunsOnCodes(_ index: Int) -> Bool {
            isAdd(entries[index]) && entries[index].node.inputs.allSatisfy { codes.contains($0) }
        }
        var changed = true
        while changed {
            changed = false
            for value in codes {
                let index = producer[value]!, entry = entries[index], q = quantization[value]!
                var valid: Bool
                if fakeQuantizer(entry) != nil {
                    valid = codes.contains(entry.node.inputs[0]) && quantization[entry.node.inputs[0]] == q
                } else if isAdd(entry) {
                    valid = addRunsOnCodes(index)
                } else {
                    valid = true
                }
                if valid {
                    for reader in readers[value] ?? [] {
                        let readerEntry = entries[reader.index]
                        if let op = readerEntry.op as? QuantizedLinearOperator, reader.slot == 0, op.input == q { continue }
                        if fakeQuantizer(readerEntry) == q, codes.contains(readerEntry.node.outputs[0]) { continue }
                        if addRunsOnCodes(reader.index) { continue }
                        valid = false
                        break
                    }
                }
                if !valid {
                    codes.remove(value)
                    changed = true
                }
            }
        }
        guard !codes.isEmpty else { return entries }

        var renamed: [String: String] = [:]
        var result: [Entry] = []
        for (index, entry) in entries.enumerated() {
            var node = entry.node
            node.inputs = node.inputs.map { renamed[$0] ?? $0 }
            let value = node.outputs.first ?? ""
            if fakeQuantizer(entry) != nil, codes.contains(value) {
                renamed[value] = node.inputs[0]
                continue
            }
            if let op = linear(entry), codes.contains(value) {
                let chained = try QuantizedLinearOperator(node: node)
                chained.postOps = op.postOps
                chained.outputQuantization = quantization[value]
                result.append((node, chained))
            } else if addRunsOnCodes(index) {
                node.domain = QuantizationOperators.domain
                node.opType = "QuantizedAdd"
                result.append((node, QuantizedAddOperator(node: node, first: quantization[entry.node.inputs[0]]!,
                                                          second: quantization[entry.node.inputs[1]]!,
                                                          output: codes.contains(value) ? quantization[value] : nil)))
            } else {
                result.append((node, entry.op))
            }
        }
        return result
    }
}
