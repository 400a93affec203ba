import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

private func int64s(_ values: [Int], shape: [Int]? = nil) -> Tensor {
    Tensor(shape: shape ?? [values.count], scalars: values.map { Int64($0) })
}

private func int32s(_ values: [Int], shape: [Int]? = nil) -> Tensor {
    Tensor(shape: shape ?? [values.count], scalars: values.map { Int32($0) })
}

private func sequence(_ shape: [Int]) -> Tensor {
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, scalars: (0..<count).map { Int64($0) })
}

/// Checks that shape inference agrees with what `run` produces: the same
/// dtypes, and the same shapes whenever inference gives one (which it must
/// when every argument input is a constant).
func expectInferenceMatchesRun(_ cases: [OperatorCase], sourceLocation: SourceLocation = #_sourceLocation) throws {
    let context = ExecutionContext(threads: 2)
    for c in cases {
        let node = Node(name: c.name, opType: c.opType, inputs: c.inputs.indices.map { c.inputs[$0] == nil ? "" : "in\($0)" },
                        outputs: (0..<c.outputCount).map { "out\($0)" }, attributes: c.attributes)
        let op = try OperatorRegistry.makeOperator(for: node, opset: c.opset)
        let specs: [ValueSpec?] = c.inputs.enumerated().map { index, tensor in
            tensor.map { c.constantInputs.contains(index) ? ValueSpec($0) : ValueSpec(dtype: $0.dtype, shape: $0.shape) }
        }
        let inferred = try op.inferOutputs(specs)
        let outputs = try op.run(c.inputs, context: context)
        let dataInputs: Set<Int> = ["Range", "ConstantOfShape"].contains(c.opType) ? [] : [0]
        let argumentsKnown = c.inputs.indices.allSatisfy {
            c.inputs[$0] == nil || c.constantInputs.contains($0) || dataInputs.contains($0)
        }
        for (spec, output) in zip(inferred, outputs) {
            #expect(spec.dtype == output.dtype, "\(c.name): inferred \(spec.dtype), ran \(output.dtype)",
                    sourceLocation: sourceLocation)
            if let shape = spec.shape {
                #expect(shape == output.shape, "\(c.name): inferred \(shape), ran \(output.shape)",
                        sourceLocation: sourceLocation)
            } else {
                #expect(!argumentsKnown, "\(c.name): no shape inferred", sourceLocation: sourceLocation)
            }
        }
    }
}

@Suite struct ShapeOperatorTests {
    @Test func viewsAndDataMovementMatchOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 21)
        var cases: [OperatorCase] = []
        func add(_ name: String, _ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:],
                 constant: Set<Int> = [], outputs: Int = 1, opset: Int = 17) {
            cases.append(OperatorCase(name: name, opType: op, attributes: attributes, inputs: inputs,
                                      constantInputs: constant, outputCount: outputs, opset: opset))
        }
        let x = Tensor.random([2, 3, 4], using: &rng)

        add("reshape 0 and -1", "Reshape", [x, int64s([0, -1])], constant: [1], opset: 13)
        add("reshape runtime shape", "Reshape", [x, int64s([4, -1, 2])])
        add("reshape allowzero", "Reshape", [x, int64s([3, 8])], ["allowzero": .int(1)], constant: [1], opset: 14)
        add("reshape to scalar-like", "Reshape", [Tensor.random([1, 1], using: &rng), int64s([1])], constant: [1], opset: 11)
        add("reshape int64", "Reshape", [sequence([6, 4]), int64s([2, 0, -1])], constant: [1], opset: 21)

        add("flatten default", "Flatten", [x], opset: 11)
        add("flatten axis 0", "Flatten", [x], ["axis": .int(0)])
        add("flatten axis -1", "Flatten", [x], ["axis": .int(-1)], opset: 13)
        add("flatten axis rank", "Flatten", [x], ["axis": .int(3)], opset: 21)

        let ones = Tensor.random([1, 3, 1, 4, 1], using: &rng)
        add("squeeze attr opset 11", "Squeeze", [ones], ["axes": .ints([0, -1])], opset: 11)
        add("squeeze input opset 13", "Squeeze", [ones, int64s([2])], constant: [1], opset: 13)
        add("squeeze all", "Squeeze", [ones], opset: 21)
        add("unsqueeze attr opset 11", "Unsqueeze", [x], ["axes": .ints([0, -1])], opset: 11)
        add("unsqueeze input opset 13", "Unsqueeze", [x, int64s([1, 3])], constant: [1], opset: 13)
        add("unsqueeze negative opset 21", "Unsqueeze", [sequence([3]), int64s([-1, 0])], constant: [1], opset: 21)

        add("shape", "Shape", [x], opset: 13)
        add("shape start opset 15", "Shape", [x], ["start": .int(1)], opset: 15)
        add("shape start end negative", "Shape", [x], ["start": .int(-2), "end": .int(-1)], opset: 19)
        add("shape end past rank", "Shape", [x], ["start": .int(-10), "end": .int(10)], opset: 21)

        add("transpose default", "Transpose", [x])
        add("transpose 0213", "Transpose", [Tensor.random([2, 5, 3, 4], using: &rng)], ["perm": .ints([0, 2, 1, 3])])
        add("transpose 0231", "Transpose", [Tensor.random([2, 37, 3, 20], using: &rng)], ["perm": .ints([0, 2, 3, 1])])
        add("transpose 2d tiles", "Transpose", [Tensor.random([70, 53], using: &rng)], ["perm": .ints([1, 0])], opset: 11)
        add("transpose int64", "Transpose", [sequence([3, 4, 5])], ["perm": .ints([2, 0, 1])])
        add("transpose bool", "Transpose", [Tensor(shape: [2, 3], scalars: [true, false, false, true, true, false])])
        add("transpose size-1 view", "Transpose", [Tensor.random([4, 1, 6], using: &rng)], ["perm": .ints([1, 0, 2])])
        add("transpose bert heads", "Transpose", [Tensor.random([8, 128, 12, 32], using: &rng)],
            ["perm": .ints([0, 2, 1, 3])])
        add("transpose bert keys", "Transpose", [Tensor.random([8, 128, 12, 32], using: &rng)],
            ["perm": .ints([0, 2, 3, 1])])

        add("expand column", "Expand", [Tensor.random([3, 1], using: &rng), int64s([2, 3, 4])], constant: [1])
        add("expand smaller shape", "Expand", [Tensor.random([4], using: &rng), int64s([2, 1, 1])], constant: [1], opset: 11)
        add("expand keeps larger dims", "Expand", [sequence([3, 1]), int64s([1])])
        add("expand middle", "Expand", [sequence([2, 1, 3]), int64s([2, 5, 3])], constant: [1], opset: 13)

        add("tile 2d", "Tile", [x, int64s([2, 1, 3])], constant: [1])
        add("tile int32", "Tile", [int32s([1, 2, 3, 4, 5, 6], shape: [2, 1, 3]), int64s([1, 3, 2])], opset: 13)

        add("range float", "Range", [Tensor(scalar: Float(0.5)), Tensor(scalar: Float(5)), Tensor(scalar: Float(0.7))], opset: 11)
        add("range float negative", "Range", [Tensor(scalar: Float(3)), Tensor(scalar: Float(-4.1)), Tensor(scalar: Float(-0.3))])
        add("range float accumulates", "Range", [Tensor(scalar: Float(0.1)), Tensor(scalar: Float(1000)),
                                                 Tensor(scalar: Float(0.1))])
        add("range float count in float64", "Range", [Tensor(scalar: Float(-3.950794)), Tensor(scalar: Float(72.459206)),
                                                     Tensor(scalar: Float(0.01))])
        add("range int64", "Range", [Tensor(scalar: Int64(10)), Tensor(scalar: Int64(4)), Tensor(scalar: Int64(-2))])
        add("range int32", "Range", [Tensor(scalar: Int32(0)), Tensor(scalar: Int32(7)), Tensor(scalar: Int32(3))], opset: 21)
        add("range empty", "Range", [Tensor(scalar: Int64(5)), Tensor(scalar: Int64(1)), Tensor(scalar: Int64(1))])

        add("constant of shape default", "ConstantOfShape", [int64s([2, 3])], constant: [0], opset: 11)
        add("constant of shape int64", "ConstantOfShape", [int64s([4])], ["value": .tensor(int64s([7], shape: [1]))])
        add("constant of shape float runtime", "ConstantOfShape", [int64s([3, 2])],
            ["value": .tensor(Tensor(shape: [1], scalars: [Float(2.5)]))], opset: 21)
        try expectInferenceMatchesRun(cases)
        try expectMatchesOnnxRuntime(cases)
    }

    @Test func indexingMatchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 22)
        var cases: [OperatorCase] = []
        func add(_ name: String, _ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:],
                 constant: Set<Int> = [], outputs: Int = 1, opset: Int = 17) {
            cases.append(OperatorCase(name: name, opType: op, attributes: attributes, inputs: inputs,
                                      constantInputs: constant, outputCount: outputs, opset: opset))
        }
        let x = Tensor.random([3, 4, 5], using: &rng)

        add("concat axis 1", "Concat", [x, Tensor.random([3, 2, 5], using: &rng), Tensor.random([3, 1, 5], using: &rng)],
            ["axis": .int(1)], opset: 11)
        add("concat axis -1", "Concat", [x, Tensor.random([3, 4, 2], using: &rng)], ["axis": .int(-1)])
        add("concat shapes int64", "Concat", [int64s([2, 3]), int64s([-1]), int64s([])], ["axis": .int(0)],
            constant: [1, 2], opset: 13)
        add("concat single", "Concat", [x], ["axis": .int(0)])

        add("split attr opset 11", "Split", [x], ["axis": .int(1), "split": .ints([1, 3])], outputs: 2, opset: 11)
        add("split input opset 13", "Split", [x, int64s([2, 0, 3])], ["axis": .int(-1)], constant: [1],
            outputs: 3, opset: 13)
        add("split equal", "Split", [Tensor.random([6, 2], using: &rng)], outputs: 3, opset: 13)
        add("split num_outputs uneven", "Split", [Tensor.random([2, 7], using: &rng)],
            ["axis": .int(1), "num_outputs": .int(3)], outputs: 3, opset: 18)
        add("split num_outputs even int64", "Split", [sequence([4, 3])], ["num_outputs": .int(2)], outputs: 2, opset: 21)

        let big = Int(Int64.max), small = Int(Int64.min)
        add("slice basic", "Slice", [x, int64s([1, 0]), int64s([3, 4]), int64s([0, 2])], constant: [1, 2, 3])
        add("slice negative and clamped", "Slice", [x, int64s([-3, -100]), int64s([big, -1])], constant: [1, 2], opset: 11)
        add("slice steps", "Slice", [x, int64s([0, 4]), int64s([5, 0]), int64s([-1, 1]), int64s([2, -2])],
            constant: [1, 2, 3, 4], opset: 13)
        add("slice reverse", "Slice", [sequence([2, 6]), int64s([-1]), int64s([small]), int64s([1]), int64s([-1])],
            constant: [1, 2, 3, 4])
        add("slice empty", "Slice", [x, int64s([3]), int64s([1]), int64s([1])], constant: [1, 2, 3])
        add("slice int32 runtime", "Slice", [x, int32s([1]), int32s([100]), int32s([-3]), int32s([3])], opset: 21)
        add("slice omitted axes steps", "Slice", [x, int64s([1, 1, 1]), int64s([2, 3, 4]), nil, int64s([1, 1, 2])],
            constant: [1, 2, 4])

        let table = Tensor.random([100, 16], using: &rng)
        add("gather embedding", "Gather", [table, int64s([3, 99, -1, 0, 50, 7], shape: [2, 3])], constant: [0], opset: 11)
        add("gather axis 1", "Gather", [x, int64s([3, 0, -4])], ["axis": .int(1)])
        add("gather last axis int32", "Gather", [x, int32s([4, 1, 1, 2], shape: [2, 2])], ["axis": .int(-1)], opset: 13)
        add("gather scalar index", "Gather", [x, Tensor(scalar: Int64(-1))], ["axis": .int(0)])
        add("gather shape element", "Gather", [int64s([2, 128, 384]), int64s([1])], constant: [0, 1])
        add("gather empty indices", "Gather", [x, int64s([])], ["axis": .int(1)], opset: 21)

        let image = Tensor.random([2, 3, 4, 5], using: &rng)
        add("pad constant opset 10", "Pad", [image], ["pads": .ints([0, 0, 1, 2, 0, 1, 2, 0]), "value": .float(1.5)],
            opset: 10)
        add("pad constant value", "Pad", [image, int64s([0, 1, 1, 2, 0, 0, 2, 1]), Tensor(scalar: Float(-3))],
            constant: [1, 2], opset: 11)
        add("pad default zero", "Pad", [image, int64s([1, 0, 0, 0, 0, 0, 0, 1])], constant: [1], opset: 13)
        add("pad negative crops", "Pad", [image, int64s([0, -1, 2, -1, 0, 0, -2, 3])], constant: [1])
        add("pad reflect", "Pad", [image, int64s([0, 0, 3, 2, 0, 0, 1, 4])], ["mode": .string("reflect")], constant: [1])
        add("pad reflect with crop", "Pad", [image, int64s([0, 0, -1, 2, 0, 0, 2, -1])], ["mode": .string("reflect")],
            constant: [1])
        add("pad edge", "Pad", [image, int64s([0, 1, 2, 3, 0, 2, 1, 0])], ["mode": .string("edge")], constant: [1], opset: 11)
        add("pad axes opset 18", "Pad", [image, int64s([1, 2, 3, 0]), Tensor(scalar: Float(4)), int64s([-1, 2])],
            constant: [1, 2, 3], opset: 18)
        add("pad wrap opset 19", "Pad", [image, int64s([0, 0, 2, 3, 0, 0, 1, 7])], ["mode": .string("wrap")],
            constant: [1], opset: 19)
        add("pad edge with crop", "Pad", [image, int64s([0, 0, -2, 2, 0, 0, 1, -3])], ["mode": .string("edge")],
            constant: [1])
        add("pad wrap with crop", "Pad", [image, int64s([0, -1, 3, -2, 0, 1, -1, 9])], ["mode": .string("wrap")],
            constant: [1], opset: 21)
        add("pad int64 runtime pads", "Pad", [sequence([3, 4]), int64s([1, -1, 0, 2]), Tensor(scalar: Int64(9))], opset: 21)
        try expectInferenceMatchesRun(cases)
        try expectMatchesOnnxRuntime(cases)
    }

    @Test func resizeMatchesOnnxRuntime() throws {
        var rng = SeededGenerator(seed: 23)
        var cases: [OperatorCase] = []
        let image = Tensor.random([2, 3, 5, 7], using: &rng)
        let emptyScales = Tensor(shape: [0], scalars: [Float]())
        let roi = Tensor(shape: [0], scalars: [Float]())
        func resize(_ name: String, _ input: Tensor = image, scales: [Float]? = nil, sizes: [Int]? = nil,
                    _ attributes: [String: Attribute], opset: Int = 13) {
            var inputs: [Tensor?] = [input, opset < 13 ? roi : nil, nil, nil]
            if let values = scales { inputs[2] = Tensor(shape: [values.count], scalars: values) }
            if let sizes {
                inputs[3] = int64s(sizes)
                if opset < 13 { inputs[2] = emptyScales }
            }
            while inputs.last.map({ $0 == nil }) == true { inputs.removeLast() }
            cases.append(OperatorCase(name: name, opType: "Resize", attributes: attributes, inputs: inputs,
                                      constantInputs: Set(1..<inputs.count), opset: opset))
        }
        let nearest: Attribute = .string("nearest"), linear: Attribute = .string("linear")
        resize("nearest default x2", scales: [1, 1, 2, 2], ["mode": nearest])
        resize("nearest asymmetric floor opset 11", scales: [1, 1, 1.7, 0.6],
               ["mode": nearest, "coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")],
               opset: 11)
        resize("nearest ceil sizes", sizes: [2, 3, 3, 11], ["mode": nearest, "nearest_mode": .string("ceil")])
        resize("nearest prefer ceil", scales: [1, 1, 2.5, 1.5], ["mode": nearest, "nearest_mode": .string("round_prefer_ceil")])
        resize("nearest tf half pixel", scales: [1, 1, 0.5, 2.2],
               ["mode": nearest, "coordinate_transformation_mode": .string("tf_half_pixel_for_nn")])
        resize("nearest align corners", sizes: [2, 3, 9, 4],
               ["mode": nearest, "coordinate_transformation_mode": .string("align_corners")], opset: 11)
        resize("nearest pytorch half pixel", sizes: [2, 3, 1, 10],
               ["mode": nearest, "coordinate_transformation_mode": .string("pytorch_half_pixel")], opset: 19)
        resize("nearest same size scale", scales: [1, 1, 1.2, 1.1],
               ["mode": nearest, "coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("ceil")])
        resize("nearest int32", int32s(Array(0..<24), shape: [1, 2, 3, 4]), scales: [1, 1, 2, 1.5], ["mode": nearest])
        resize("nearest 3d", Tensor.random([2, 4, 6], using: &rng), scales: [1, 2, 0.5], ["mode": nearest], opset: 18)
        resize("nearest size in float32", Tensor.random([1, 298], using: &rng), scales: [1, 3.4899328], ["mode": nearest])
        resize("nearest axes opset 18", scales: [2, 3], ["mode": nearest, "axes": .ints([2, -1])], opset: 18)

        resize("linear half pixel x2", scales: [1, 1, 2, 2], ["mode": linear])
        resize("linear half pixel down", scales: [1, 1, 0.6, 0.45], ["mode": linear], opset: 11)
        resize("linear align corners sizes", sizes: [2, 3, 8, 3],
               ["mode": linear, "coordinate_transformation_mode": .string("align_corners")], opset: 11)
        resize("linear asymmetric", scales: [1, 1, 1.5, 2.5], ["mode": linear, "coordinate_transformation_mode": .string("asymmetric")])
        resize("linear pytorch half pixel", sizes: [2, 3, 1, 12],
               ["mode": linear, "coordinate_transformation_mode": .string("pytorch_half_pixel")])
        resize("linear half pixel symmetric", scales: [1, 1, 1.7, 0.8],
               ["mode": linear, "coordinate_transformation_mode": .string("half_pixel_symmetric")], opset: 19)
        resize("linear 2d", Tensor.random([6, 5], using: &rng), scales: [1.5, 2], ["mode": linear], opset: 18)
        resize("linear nhwc", Tensor.random([1, 4, 5, 3], using: &rng), scales: [1, 2, 1.5, 1], ["mode": linear])
        resize("linear 5d", Tensor.random([1, 2, 3, 4, 5], using: &rng), scales: [1, 1, 2, 1.5, 0.5], ["mode": linear],
               opset: 21)
        resize("linear axes", sizes: [10, 3], ["mode": linear, "axes": .ints([2, 3])], opset: 18)
        try expectInferenceMatchesRun(cases)
        try expectMatchesOnnxRuntime(cases)
    }

    @Test func shapeArithmeticFoldsToConstants() throws {
        // Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as transformer exports write it.
        let nodes = [
            Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
            Node(name: "gather", opType: "Gather", inputs: ["s", "zero"], outputs: ["batch"]),
            Node(name: "unsqueeze", opType: "Unsqueeze", inputs: ["batch", "axes"], outputs: ["batch1"]),
            Node(name: "concat", opType: "Concat", inputs: ["batch1", "rest"], outputs: ["target"],
                 attributes: ["axis": .int(0)]),
            Node(name: "reshape", opType: "Reshape", inputs: ["x", "target"], outputs: ["y"]),
        ]
        let graph = Graph(name: "fold", nodes: nodes,
                          inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbolic("n"), .fixed(3), .fixed(4)])],
                          outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
                          initializers: ["zero": Tensor(scalar: Int64(0)), "axes": int64s([0]), "rest": int64s([-1])],
                          opset: 17)
        let session = try InferenceSession(graph: graph, options: SessionOptions(threads: 1))
        let specialized = try session.specialize(inputShapes: ["x": [5, 3, 4]])
        #expect(specialized.nodes.map(\.node.opType) == ["Reshape"])
        #expect(specialized.specs["target"]?.constant?.integers() == [5, -1])
        #expect(specialized.specs["y"]?.shape == [5, 12])

        let size = try OperatorRegistry.makeOperator(for: Node(name: "size", opType: "Size", inputs: ["x"], outputs: ["n"]),
                                                     opset: 17)
        let folded = try size.inferOutputs([ValueSpec(dtype: .float32, shape: [2, 3])])
        #expect(folded.first?.constant?.integers() == [6])
    }

    /// Scalar outputs are checked here: the ONNX Runtime harness saves rank-0
    /// results with shape [1] (np.ascontiguousarray promotes them).
    @Test func scalarOutputs() throws {
        let context = ExecutionContext(threads: 1)
        func output(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:]) throws -> Tensor {
            let node = Node(name: op, opType: op, inputs: inputs.indices.map { "in\($0)" }, outputs: ["out"],
                            attributes: attributes)
            return try OperatorRegistry.makeOperator(for: node, opset: 17).run(inputs, context: context)[0]
        }
        let size = try output("Size", [sequence([3, 4])])
        #expect(size.shape == [] && size.dtype == .int64 && size.integers() == [12])
        #expect(try output("Size", [sequence([3, 0])]).integers() == [0])
        let element = try output("Gather", [int64s([2, 128, 384]), Tensor(scalar: Int64(-2))])
        #expect(element.shape == [] && element.integers() == [128])
        let filled = try output("ConstantOfShape", [int64s([])], ["value": .tensor(int32s([-3]))])
        #expect(filled.shape == [] && filled.dtype == .int32 && filled.integers() == [-3])
        let total = try output("ReduceSum", [sequence([2, 3]), int64s([])], ["keepdims": .int(0)])
        #expect(total.shape == [] && total.integers() == [15])
        let squeezed = try output("Squeeze", [sequence([1, 1])])
        #expect(squeezed.shape == [] && squeezed.integers() == [0])
    }

    @Test func viewOperatorsShareStorage() throws {
        var rng = SeededGenerator(seed: 24)
        let x = Tensor.random([2, 1, 6], using: &rng)
        let context = ExecutionContext(threads: 1)
        func output(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:]) throws -> Tensor {
            let node = Node(name: op, opType: op, inputs: inputs.indices.map { "in\($0)" }, outputs: ["out"],
                            attributes: attributes)
            return try OperatorRegistry.makeOperator(for: node, opset: 17).run(inputs, context: context)[0]
        }
        let reshaped = try output("Reshape", [x, int64s([3, 4])])
        let flattened = try output("Flatten", [x])
        let squeezed = try output("Squeeze", [x, int64s([1])])
        let unsqueezed = try output("Unsqueeze", [x, int64s([0])])
        for view in [reshaped, flattened, squeezed, unsqueezed] { #expect(view.storage === x.storage) }
        #expect(reshaped.shape == [3, 4] && flattened.shape == [2, 6] && squeezed.shape == [2, 6])
        #expect(unsqueezed.shape == [1, 2, 1, 6])
        let transposed = try output("Transpose", [x], ["perm": .ints([1, 0, 2])])
        #expect(transposed.shape == [1, 2, 6] && transposed.floats() == x.floats())
    }

    @Test func unsupportedAttributesAreReportedUpFront() {
        func rejects(_ op: String, _ attributes: [String: Attribute], opset: Int = 17) -> Bool {
            let node = Node(name: op, opType: op, inputs: ["x"], outputs: ["y"], attributes: attributes)
            do {
                _ = try OperatorRegistry.makeOperator(for: node, opset: opset)
                return false
            } catch MPQError.unsupportedNodes(let nodes) {
                return nodes.first?.opType == op && nodes.first?.reason != nil
            } catch {
                return false
            }
        }
        #expect(rejects("Resize", ["mode": .string("cubic")]))
        #expect(rejects("Resize", ["coordinate_transformation_mode": .string("tf_crop_and_resize")]))
        #expect(rejects("Resize", ["antialias": .int(1)], opset: 18))
        #expect(rejects("Resize", ["keep_aspect_ratio_policy": .string("not_larger")], opset: 18))
        #expect(rejects("Resize", ["coordinate_transformation_mode": .string("half_pixel_symmetric")], opset: 18))
        #expect(rejects("Pad", ["mode": .string("wrap")], opset: 18))
        #expect(rejects("Pad", ["mode": .string("mirror")]))
        #expect(rejects("Transpose", ["perm": .ints([0, 0, 1])]))
        #expect(rejects("Split", ["num_outputs": .int(3)], opset: 18))
        #expect(!rejects("Pad", ["mode": .string("wrap")], opset: 19))
    }
}
