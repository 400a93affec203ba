import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct ElementwiseOperatorTests {
    /// Values where the functions have edges: signed zeros, infinities, NaN, saturation.
    static let edges = Tensor(shape: [14], scalars: [
        0, -0.0, .infinity, -.infinity, .nan, 1e-30, -1e-30, 0.5, -0.92, 3.9, -10, 20, -90, 100,
    ] as [Float])

    @Test func unaryMatchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 21)
        var cases: [OperatorCase] = []
        let x = Tensor.random([2, 3, 4], in: -4...4, using: &rng)
        let positive = Tensor.random([3, 5], in: 0.01...9, using: &rng)
        for op in ["Neg", "Abs", "Exp", "Relu", "Sigmoid", "Tanh", "Erf", "HardSwish", "Reciprocal", "Identity"] {
            cases.append(OperatorCase(name: "\(op) float", opType: op, inputs: [x], opset: 14))
        }
        for op in ["Sqrt", "Log"] {
            cases.append(OperatorCase(name: "\(op) positive", opType: op, inputs: [positive]))
        }
        for op in ["Neg", "Abs", "Relu", "Sigmoid", "Tanh", "Erf", "HardSwish", "Sqrt", "Log", "Exp", "Reciprocal"] {
            cases.append(OperatorCase(name: "\(op) edges", opType: op, inputs: [Self.edges], opset: 14))
        }
        let wide = Tensor.random([2, 40_000], in: -6...6, using: &rng)
        for op in ["Erf", "Tanh", "Sigmoid"] {
            cases.append(OperatorCase(name: "\(op) wide parallel", opType: op, inputs: [wide], tolerance: 1e-6))
        }
        cases.append(OperatorCase(name: "LeakyRelu default", opType: "LeakyRelu", inputs: [x]))
        cases.append(OperatorCase(name: "LeakyRelu alpha", opType: "LeakyRelu", attributes: ["alpha": .float(0.3)],
                                  inputs: [x], opset: 11))
        cases.append(OperatorCase(name: "HardSigmoid default", opType: "HardSigmoid", inputs: [x]))
        cases.append(OperatorCase(name: "HardSigmoid alpha beta", opType: "HardSigmoid",
                                  attributes: ["alpha": .float(0.4), "beta": .float(0.3)], inputs: [Self.edges]))
        for approximate in ["none", "tanh"] {
            cases.append(OperatorCase(name: "Gelu \(approximate)", opType: "Gelu",
                                      attributes: ["approximate": .string(approximate)], inputs: [wide], opset: 20))
            cases.append(OperatorCase(name: "Gelu \(approximate) edges", opType: "Gelu",
                                      attributes: ["approximate": .string(approximate)], inputs: [Self.edges], opset: 20))
        }
        cases.append(OperatorCase(name: "Gelu default", opType: "Gelu", inputs: [x], opset: 20))

        let longs = Tensor(shape: [2, 3], scalars: [-5, 0, 7, .min, .max, -1] as [Int64])
        let ints = Tensor(shape: [4], scalars: [-5, 0, 7, .min] as [Int32])
        for op in ["Neg", "Abs", "Relu", "Identity"] {
            // ONNX Runtime has no int64 Relu (mpq has).
            if op != "Relu" { cases.append(OperatorCase(name: "\(op) int64", opType: op, inputs: [longs], opset: 14)) }
            cases.append(OperatorCase(name: "\(op) int32", opType: op, inputs: [ints], opset: 14))
        }
        cases.append(OperatorCase(name: "Neg float16", opType: "Neg", inputs: [x.converted(to: .float16)]))
        cases.append(OperatorCase(name: "Sigmoid float64", opType: "Sigmoid", inputs: [x.converted(to: .float64)]))

        let flags = Tensor(shape: [2, 2], scalars: [true, false, false, true])
        cases.append(OperatorCase(name: "Not", opType: "Not", inputs: [flags]))
        cases.append(OperatorCase(name: "IsNaN", opType: "IsNaN", inputs: [Self.edges], opset: 20))
        cases.append(OperatorCase(name: "Identity bool opset 21", opType: "Identity", inputs: [flags], opset: 21))

        // Clip: attributes before opset 11, optional inputs after; absent bounds are the finite extremes.
        cases.append(OperatorCase(name: "Clip opset 10 attributes", opType: "Clip",
                                  attributes: ["min": .float(-1), "max": .float(0.5)], inputs: [x], opset: 10))
        cases.append(OperatorCase(name: "Clip opset 10 max only", opType: "Clip",
                                  attributes: ["max": .float(0.5)], inputs: [Self.edges], opset: 10))
        cases.append(OperatorCase(name: "Clip opset 11 min only", opType: "Clip",
                                  inputs: [Self.edges, Tensor(scalar: Float(-1))], constantInputs: [1], opset: 11))
        cases.append(OperatorCase(name: "Clip opset 13 max only", opType: "Clip",
                                  inputs: [x, nil, Tensor(scalar: Float(1.5))], constantInputs: [2], opset: 13))
        cases.append(OperatorCase(name: "Clip no bounds", opType: "Clip", inputs: [Self.edges], opset: 13))
        cases.append(OperatorCase(name: "Clip runtime bounds", opType: "Clip",
                                  inputs: [x, Tensor(scalar: Float(-0.5)), Tensor(scalar: Float(2))]))
        cases.append(OperatorCase(name: "Clip min above max", opType: "Clip",
                                  inputs: [x, Tensor(scalar: Float(1)), Tensor(scalar: Float(-1))], opset: 21))
        cases.append(OperatorCase(name: "Clip int64", opType: "Clip",
                                  inputs: [longs, Tensor(scalar: Int64(-3)), Tensor(scalar: Int64(5))],
                                  constantInputs: [1, 2], opset: 12))
        cases.append(OperatorCase(name: "Clip int32 min only", opType: "Clip",
                                  inputs: [ints, Tensor(scalar: Int32(-3))], constantInputs: [1], opset: 13))

        // Dropout at inference: ratio attribute (opset 11), ratio and training_mode inputs (opset 12+).
        cases.append(OperatorCase(name: "Dropout opset 11 with mask", opType: "Dropout",
                                  attributes: ["ratio": .float(0.3)], inputs: [x], outputCount: 2, opset: 11))
        cases.append(OperatorCase(name: "Dropout opset 13 ratio input", opType: "Dropout",
                                  inputs: [x, Tensor(scalar: Float(0.2))], constantInputs: [1], opset: 13))
        cases.append(OperatorCase(name: "Dropout training_mode false", opType: "Dropout",
                                  inputs: [x, Tensor(scalar: Float(0.2)), Tensor(scalar: false)],
                                  constantInputs: [1, 2], outputCount: 2, opset: 21))

        // Cast and CastLike.
        let mixed = Tensor(shape: [2, 4], scalars: [-2.7, -0.5, 0, 0.4, 1.5, 2.5, 300.9, -1e3] as [Float])
        for (target, name) in [(DataType.int64, "int64"), (.int32, "int32"), (.bool, "bool"), (.float16, "float16"),
                               (.float64, "float64"), (.uint8, "uint8"), (.int8, "int8"), (.float32, "float32")] {
            cases.append(OperatorCase(name: "Cast float to \(name)", opType: "Cast",
                                      attributes: ["to": .int(target.rawValue)], inputs: [mixed], opset: 13))
        }
        cases.append(OperatorCase(name: "Cast int64 to float", opType: "Cast",
                                  attributes: ["to": .int(DataType.float32.rawValue)], inputs: [longs], opset: 11))
        cases.append(OperatorCase(name: "Cast bool to float", opType: "Cast",
                                  attributes: ["to": .int(DataType.float32.rawValue)], inputs: [flags]))
        cases.append(OperatorCase(name: "Cast int32 to int64 opset 21", opType: "Cast",
                                  attributes: ["to": .int(DataType.int64.rawValue), "saturate": .int(1)],
                                  inputs: [ints], opset: 21))
        cases.append(OperatorCase(name: "CastLike int64", opType: "CastLike",
                                  inputs: [mixed, Tensor(shape: [1], scalars: [Int64(0)])], constantInputs: [1], opset: 15))
        try expectMatchesOnnxRuntime(cases)
    }

    @Test func binaryMatchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 22)
        var cases: [OperatorCase] = []
        func random(_ shape: [Int], in range: ClosedRange<Float> = -2...2) -> Tensor {
            .random(shape, in: range, using: &rng)
        }
        func integers<T: TensorElement & FixedWidthInteger>(_ shape: [Int], _: T.Type, in range: ClosedRange<T>) -> Tensor {
            Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in T.random(in: range, using: &rng) })
        }
        let layouts: [(String, [Int], [Int])] = [
            ("same shape", [2, 3, 4], [2, 3, 4]),
            ("scalar right", [3, 5], []),
            ("scalar left", [], [3, 5]),
            ("row vector", [2, 3, 8], [8]),
            ("column", [4, 1], [1, 5]),
            ("channel", [2, 3, 4, 5], [3, 1, 1]),
            ("general", [2, 1, 4, 1], [3, 1, 5]),
            ("attention mask", [2, 3, 4, 4], [2, 1, 1, 4]),
            ("leading ones", [1, 1, 6], [6]),
            ("empty", [0, 3], [3]),
        ]
        for op in ["Add", "Sub", "Mul", "Div"] {
            for (name, a, b) in layouts {
                cases.append(OperatorCase(name: "\(op) \(name)", opType: op, inputs: [random(a), random(b)], opset: 14))
            }
        }
        // Parallel runs that start and end mid-row.
        cases.append(OperatorCase(name: "Add wide row vector", opType: "Add",
                                  inputs: [random([300, 250]), random([250])], constantInputs: [1]))
        cases.append(OperatorCase(name: "Mul wide channel", opType: "Mul",
                                  inputs: [random([3, 7, 4000]), random([7, 1])], constantInputs: [1]))
        cases.append(OperatorCase(name: "Div wide scalar", opType: "Div",
                                  inputs: [random([70_000]), Tensor(scalar: Float(1.4142135))], constantInputs: [1]))
        cases.append(OperatorCase(name: "Sub wide general", opType: "Sub",
                                  inputs: [random([40, 1, 50, 1]), random([1, 30, 1, 40])]))
        for (op, opset) in [("Add", 11), ("Sub", 13), ("Mul", 14), ("Div", 14)] {
            cases.append(OperatorCase(name: "\(op) int64", opType: op, inputs: [
                integers([3, 4], Int64.self, in: -100...100), integers([4], Int64.self, in: 1...9)], opset: opset))
            cases.append(OperatorCase(name: "\(op) int32", opType: op, inputs: [
                integers([2, 3], Int32.self, in: -100...100), integers([2, 1], Int32.self, in: -9...(-1))], opset: opset))
        }
        cases.append(OperatorCase(name: "Div int64 truncates", opType: "Div", inputs: [
            Tensor(shape: [4], scalars: [-7, 7, -8, 9] as [Int64]), Tensor(shape: [4], scalars: [2, -2, 3, 4] as [Int64])]))
        cases.append(OperatorCase(name: "Add int64 wraps", opType: "Add", inputs: [
            Tensor(shape: [2], scalars: [Int64.max, Int64.min]), Tensor(shape: [2], scalars: [1, -1] as [Int64])]))
        cases.append(OperatorCase(name: "Mul float16", opType: "Mul", inputs: [
            random([2, 3]).converted(to: .float16), random([3]).converted(to: .float16)]))
        cases.append(OperatorCase(name: "Add float64", opType: "Add", inputs: [
            random([2, 3]).converted(to: .float64), random([3]).converted(to: .float64)]))

        // Pow: float exponents (scalar 2 and 3 take the fast paths), integer exponents in double.
        let base = random([2, 3, 4], in: 0.1...3)
        cases.append(OperatorCase(name: "Pow float", opType: "Pow", inputs: [base, random([4])]))
        for e: Float in [2, 3, 0.5, -1.5] {
            cases.append(OperatorCase(name: "Pow scalar \(e)", opType: "Pow",
                                      inputs: [random([2, 5], in: -3...3), Tensor(scalar: e)], constantInputs: [1]))
        }
        cases.append(OperatorCase(name: "Pow exponent int64", opType: "Pow", inputs: [
            random([3, 4], in: -3...3), integers([4], Int64.self, in: -3...4)], opset: 15))
        cases.append(OperatorCase(name: "Pow exponent int32", opType: "Pow", inputs: [
            random([3, 4], in: -3...3), integers([3, 1], Int32.self, in: 0...5)], opset: 12))
        cases.append(OperatorCase(name: "Pow scalar base", opType: "Pow", inputs: [Tensor(scalar: Float(2)), random([5])]))
        cases.append(OperatorCase(name: "Pow int64 base", opType: "Pow", inputs: [
            integers([5], Int64.self, in: -4...4), Tensor(shape: [1], scalars: [Int64(3)])]))

        // Comparisons and logic.
        let coarse = Tensor(shape: [2, 3], scalars: [1, 2, 3, 2, .nan, 0] as [Float])
        let row = Tensor(shape: [3], scalars: [2, 2, .nan] as [Float])
        for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"] {
            cases.append(OperatorCase(name: "\(op) float", opType: op, inputs: [coarse, row], opset: 16))
            cases.append(OperatorCase(name: "\(op) int64", opType: op, inputs: [
                integers([3, 4], Int64.self, in: -2...2), integers([4], Int64.self, in: -2...2)], opset: 16))
            cases.append(OperatorCase(name: "\(op) int32 scalar", opType: op, inputs: [
                integers([6], Int32.self, in: -2...2), Tensor(scalar: Int32(0))], constantInputs: [1], opset: 12))
        }
        let p = Tensor(shape: [2, 2], scalars: [true, false, true, false])
        let q = Tensor(shape: [2, 1], scalars: [true, false])
        cases.append(OperatorCase(name: "Equal bool", opType: "Equal", inputs: [p, q], opset: 11))
        for op in ["And", "Or", "Xor"] {
            cases.append(OperatorCase(name: op, opType: op, inputs: [p, q]))
        }

        // PRelu: the slope broadcasts to X.
        cases.append(OperatorCase(name: "PRelu channel slope", opType: "PRelu",
                                  inputs: [random([2, 3, 4, 4]), random([3, 1, 1], in: 0...0.5)], constantInputs: [1]))
        cases.append(OperatorCase(name: "PRelu scalar slope", opType: "PRelu",
                                  inputs: [random([5, 6]), Tensor(shape: [1], scalars: [Float(0.25)])], opset: 16))

        // Where: three-way broadcast, any type.
        let condition = Tensor(shape: [2, 1, 4], scalars: (0..<8).map { $0 % 3 == 0 })
        cases.append(OperatorCase(name: "Where float", opType: "Where",
                                  inputs: [condition, random([3, 1]), random([2, 3, 4])]))
        cases.append(OperatorCase(name: "Where same shape", opType: "Where", inputs: [
            Tensor(shape: [5], scalars: [true, false, true, true, false]), random([5]), random([5])]))
        cases.append(OperatorCase(name: "Where int64 scalar", opType: "Where", inputs: [
            condition, integers([4], Int64.self, in: -9...9), Tensor(scalar: Int64(-1))], opset: 16))
        cases.append(OperatorCase(name: "Where uint8", opType: "Where", inputs: [
            condition, integers([3, 1], UInt8.self, in: 0...255), Tensor(scalar: UInt8(7))]))
        cases.append(OperatorCase(name: "Where float16", opType: "Where", inputs: [
            condition, random([4]).converted(to: .float16), random([3, 1]).converted(to: .float16)]))
        cases.append(OperatorCase(name: "Where causal mask", opType: "Where", inputs: [
            Tensor(shape: [1, 1, 64, 64], scalars: (0..<4096).map { $0 % 64 <= $0 / 64 }),
            random([2, 8, 64, 64]), Tensor(scalar: -Float.greatestFiniteMagnitude)], constantInputs: [0, 2]))

        // Variadic Min, Max, Sum.
        let nans = Tensor(shape: [4], scalars: [1, .nan, 3, -1] as [Float])
        let others = Tensor(shape: [4], scalars: [.nan, 2, 1, .nan] as [Float])
        for op in ["Min", "Max", "Sum"] {
            cases.append(OperatorCase(name: "\(op) one input", opType: op, inputs: [random([2, 3])]))
            cases.append(OperatorCase(name: "\(op) two broadcast", opType: op, inputs: [random([2, 3]), random([3])]))
            cases.append(OperatorCase(name: "\(op) three growing", opType: op,
                                      inputs: [random([3]), random([2, 1]), random([4, 1, 1])], opset: 12))
            cases.append(OperatorCase(name: "\(op) three same", opType: op,
                                      inputs: [random([2, 3]), random([1, 3]), random([2, 3])], opset: 13))
            if op != "Sum" {
                cases.append(OperatorCase(name: "\(op) int64", opType: op, inputs: [
                    integers([3, 2], Int64.self, in: -9...9), integers([2], Int64.self, in: -9...9)], opset: 13))
            }
            cases.append(OperatorCase(name: "\(op) NaN", opType: op, inputs: [nans, others]))
        }
        cases.append(OperatorCase(name: "Max int32", opType: "Max", inputs: [
            integers([3, 2], Int32.self, in: -9...9), integers([2], Int32.self, in: -9...9)], opset: 13))
        try expectMatchesOnnxRuntime(cases)
    }

    /// The vectorizable approximations against libm in double precision (the
    /// tanh and sigmoid bounds are those of the rational forms ONNX Runtime uses).
    @Test func approximationsAreAccurate() {
        var worst = (exp: 0.0, erf: 0.0, tanh: 0.0, sigmoid: 0.0)
        for i in 0...400_000 {
            let x = Float(i - 200_000) / 2_000
            let v = Double(x)
            if abs(x) < 88 {
                worst.exp = max(worst.exp, abs(Double(polynomialExp(x)) - Foundation.exp(v)) / Foundation.exp(v))
            }
            worst.erf = max(worst.erf, abs(Double(polynomialErf(x)) - Foundation.erf(v)))
            worst.tanh = max(worst.tanh, abs(Double(rationalTanh(x)) - Foundation.tanh(v)))
            worst.sigmoid = max(worst.sigmoid, abs(Double(rationalSigmoid(x)) - 1 / (1 + Foundation.exp(-v))))
        }
        #expect(worst.exp < 2.5e-7)
        #expect(worst.erf < 1.2e-7)
        #expect(worst.tanh < 4e-7)
        #expect(worst.sigmoid < 2e-7)
        #expect(polynomialExp(-200) == 0 && polynomialExp(100) == .infinity && polynomialExp(.nan).isNaN)
        #expect(polynomialErf(-.infinity) == -1 && polynomialErf(-0.0).sign == .minus && polynomialErf(.nan).isNaN)
    }

    @Test func rejectsUnsupportedVariants() throws {
        func node(_ opType: String, _ attributes: [String: Attribute] = [:], inputs: [String] = ["x"]) -> Node {
            Node(name: "n", opType: opType, inputs: inputs, outputs: ["y"], attributes: attributes)
        }
        // Pads as large as the kernel leave windows with nothing to pool (ONNX Runtime rejects them too).
        let pool = try OperatorRegistry.makeOperator(
            for: node("MaxPool", ["kernel_shape": .ints([2, 2]), "pads": .ints([2, 0, 0, 0])]), opset: 13)
        #expect(throws: MPQError.self) { try pool.inferOutputs([ValueSpec(dtype: .float32, shape: [1, 1, 4, 4])]) }
        #expect(throws: MPQError.self) {
            try OperatorRegistry.makeOperator(for: node("Gelu", ["approximate": .string("erf")]), opset: 20)
        }
        #expect(throws: MPQError.self) {
            try OperatorRegistry.makeOperator(for: node("Cast", ["to": .int(17)]), opset: 19)
        }
        #expect(throws: MPQError.self) { try OperatorRegistry.makeOperator(for: node("Cast"), opset: 13) }

        let context = ExecutionContext(threads: 1)
        let divide = try OperatorRegistry.makeOperator(for: node("Div", inputs: ["a", "b"]), opset: 14)
        #expect(throws: MPQError.self) {
            try divide.run([Tensor(shape: [2], scalars: [4, 5] as [Int64]), Tensor(shape: [2], scalars: [1, 0] as [Int64])],
                           context: context)
        }
        #expect(throws: MPQError.self) {
            try divide.inferOutputs([ValueSpec(dtype: .float32, shape: [2]), ValueSpec(dtype: .int64, shape: [2])])
        }
        let dropout = try OperatorRegistry.makeOperator(for: node("Dropout", inputs: ["x", "r", "t"]), opset: 13)
        #expect(throws: MPQError.self) {
            try dropout.run([Tensor(shape: [1], scalars: [Float(1)]), nil, Tensor(scalar: true)], context: context)
        }
        let prelu = try OperatorRegistry.makeOperator(for: node("PRelu", inputs: ["x", "s"]), opset: 16)
        #expect(throws: MPQError.self) {
            try prelu.inferOutputs([ValueSpec(dtype: .float32, shape: [3]), ValueSpec(dtype: .float32, shape: [2, 3])])
        }
        let sqrt = try OperatorRegistry.makeOperator(for: node("Sqrt"), opset: 13)
        #expect(throws: MPQError.self) { try sqrt.inferOutputs([ValueSpec(dtype: .int64, shape: [3])]) }
    }

    @Test func infersShapesAndTypes() throws {
        func infer(_ opType: String, _ specs: [ValueSpec?], opset: Int = 17) throws -> [ValueSpec] {
            let node = Node(name: "n", opType: opType, inputs: specs.indices.map { "in\($0)" }, outputs: ["y", "mask"])
            return try OperatorRegistry.makeOperator(for: node, opset: opset).inferOutputs(specs)
        }
        let add = try infer("Add", [ValueSpec(dtype: .int64, shape: [2, 1, 3]), ValueSpec(dtype: .int64, shape: [4, 1])])
        #expect(add[0].dtype == .int64 && add[0].shape == [2, 4, 3])
        let unknown = try infer("Mul", [ValueSpec(dtype: .float32, shape: nil), ValueSpec(dtype: .float32, shape: [3])])
        #expect(unknown[0].shape == nil)
        let less = try infer("Less", [ValueSpec(dtype: .float32, shape: [3]), ValueSpec(dtype: .float32, shape: [])])
        #expect(less[0].dtype == .bool && less[0].shape == [3])
        let chosen = try infer("Where", [ValueSpec(dtype: .bool, shape: [1, 3]), ValueSpec(dtype: .int32, shape: [2, 1]),
                                         ValueSpec(dtype: .int32, shape: [])])
        #expect(chosen[0].dtype == .int32 && chosen[0].shape == [2, 3])
        let dropout = try infer("Dropout", [ValueSpec(dtype: .float32, shape: [5])], opset: 13)
        #expect(dropout.count == 2 && dropout[1].dtype == .bool && dropout[1].shape == [5])
        let sum = try infer("Sum", [ValueSpec(dtype: .float32, shape: [3]), ValueSpec(dtype: .float32, shape: [2, 1]),
                                    ValueSpec(dtype: .float32, shape: [4, 1, 1])])
        #expect(sum[0].shape == [4, 2, 3])
        let nan = try infer("IsNaN", [ValueSpec(dtype: .float16, shape: [7])])
        #expect(nan[0].dtype == .bool)
    }
}
