import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

@Suite struct ReductionOperatorTests {
    @Test func matchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 31)
        var cases: [OperatorCase] = []
        func axes(_ values: [Int]) -> Tensor { Tensor(shape: [values.count], scalars: values.map { Int64($0) }) }
        func add(_ name: String, _ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:],
                 opset: Int = 18, constant: Bool = true) {
            cases.append(OperatorCase(name: name, opType: op, attributes: attributes, inputs: inputs,
                                      constantInputs: constant && inputs.count > 1 ? [1] : [], opset: opset))
        }
        let x = Tensor.random([3, 4, 5, 6], using: &rng)
        let ints = Tensor(shape: [3, 4, 5], scalars: (0..<60).map { Int64(($0 * 37) % 23) - 11 })
        let ints32 = Tensor(shape: [4, 6], scalars: (0..<24).map { Int32(($0 * 13) % 17) - 5 })

        add("mean last axis attr opset 13", "ReduceMean", [x], ["axes": .ints([-1])], opset: 13)
        add("mean last axis input opset 18", "ReduceMean", [x, axes([-1])])
        add("mean keepdims 0 opset 11", "ReduceMean", [x], ["axes": .ints([1, 2]), "keepdims": .int(0)], opset: 11)
        add("mean all default opset 13", "ReduceMean", [x], opset: 13)
        add("mean split axes", "ReduceMean", [x, axes([0, 2])], ["keepdims": .int(0)], opset: 21)
        add("mean int32", "ReduceMean", [ints32, axes([1])])
        add("mean int64 runtime axes", "ReduceMean", [ints, axes([0, -1])], constant: false)

        add("sum attr opset 11", "ReduceSum", [x], ["axes": .ints([0, 2])], opset: 11)
        add("sum input opset 13", "ReduceSum", [x, axes([1])], opset: 13)
        add("sum all by empty axes", "ReduceSum", [x, axes([])], opset: 13)
        add("sum no axes input", "ReduceSum", [x], opset: 13)
        add("sum noop empty axes", "ReduceSum", [x, axes([])], ["noop_with_empty_axes": .int(1)], opset: 13)
        add("sum noop no axes", "ReduceSum", [x], ["noop_with_empty_axes": .int(1)], opset: 18)
        add("sum int64", "ReduceSum", [ints, axes([1])], ["keepdims": .int(0)], opset: 13)
        add("sum int32 all", "ReduceSum", [ints32], opset: 13)
        add("sum size-1 axis", "ReduceSum", [Tensor.random([4, 1, 3], using: &rng), axes([1])], opset: 13)
        add("sum wide inner", "ReduceSum", [Tensor.random([2, 5, 1100], using: &rng), axes([1])], opset: 13)
        add("sum long row", "ReduceSum", [Tensor.random([300_000], in: 0...1, using: &rng)], opset: 13)
        add("sum columns", "ReduceSum", [Tensor.random([300, 40], using: &rng), axes([0])], ["keepdims": .int(0)], opset: 21)

        add("max attr opset 13", "ReduceMax", [x], ["axes": .ints([1, 3])], opset: 13)
        add("max input keepdims 0", "ReduceMax", [x, axes([-2])], ["keepdims": .int(0)])
        add("max all opset 11", "ReduceMax", [x], opset: 11)
        add("max int64", "ReduceMax", [ints, axes([0, 2])], opset: 20)
        add("max int32", "ReduceMax", [ints32], ["axes": .ints([0])], opset: 12)
        let withNaN = Tensor(shape: [3, 3], scalars: [Float.nan, 1, 2, 3, .nan, 4, 5, 6, .nan])
        add("max NaN first wins", "ReduceMax", [withNaN, axes([1])])
        add("max NaN columns", "ReduceMax", [withNaN, axes([0])], ["keepdims": .int(0)])
        let empty = Tensor(shape: [2, 0, 3], scalars: [Float]())
        add("max empty axis", "ReduceMax", [empty, axes([1])])
        add("sum empty axis", "ReduceSum", [empty, axes([1])], opset: 13)
        add("mean empty axis", "ReduceMean", [empty, axes([-2])], ["keepdims": .int(0)])
        try expectInferenceMatchesRun(cases)
        try expectMatchesOnnxRuntime(cases)
    }
}
