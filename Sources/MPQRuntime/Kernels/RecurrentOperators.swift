import CDNNL
import Foundation
import MPQGraph

/// Operators of this family, by op type.
let recurrentOperators: [String: OperatorFactory] = [
    "LSTM": { node, opset in try RecurrentOperator(node: node, opset: opset, cell: .lstm) },
    "GRU": { node, opset in try RecurrentOperator(node: node, opset: opset, cell: .gru) },
]

/// The recurrent cells mpq runs, with their ONNX weight layouts.
enum RecurrentCell: Sendable {
    case lstm, gru

    var name: String { self == .lstm ? "LSTM" : "GRU" }
    /// Gate blocks stacked in W, R and each half of B: LSTM i, o, f, c; GRU z, r, h.
    var gates: Int { self == .lstm ? 4 : 3 }
    /// Activation functions per direction: LSTM f, g, h; GRU f, g.
    var activationCount: Int { self == .lstm ? 3 : 2 }
    var defaultActivations: [String] { self == .lstm ? ["Sigmoid", "Tanh", "Tanh"] : ["Sigmoid", "Tanh"] }
    /// Outputs the op declares: Y, Y_h and (LSTM) Y_c.
    var outputCount: Int { self == .lstm ? 3 : 2 }
}

/// One of the activation functions ONNX allows in LSTM / GRU, with its alpha and beta.
struct RecurrentActivation: Sendable {
    enum Kind: Sendable { case relu, tanh, sigmoid, affine, leakyRelu, thresholdedRelu, scaledTanh, hardSigmoid, elu, softsign, softplus }

    let kind: Kind
    let alpha: Float
    let beta: Float

    /// ONNX name, whether alpha / beta are read, and their defaults. The
    /// defaults are ONNX Runtime's (which models are checked against): its
    /// ThresholdedRelu, Affine and ScaledTanh take 0 where the attribute lists run out.
    static let table: [(name: String, kind: Kind, alpha: Float?, beta: Float?)] = [
        ("Relu", .relu, nil, nil), ("Tanh", .tanh, nil, nil), ("Sigmoid", .sigmoid, nil, nil),
        ("Affine", .affine, 0, 0), ("LeakyRelu", .leakyRelu, 0.01, nil), ("ThresholdedRelu", .thresholdedRelu, 0, nil),
        ("ScaledTanh", .scaledTanh, 0, 0), ("HardSigmoid", .hardSigmoid, 0.2, 0.5), ("Elu", .elu, 1, nil),
        ("Softsign", .softsign, nil, nil), ("Softplus", .softplus, nil, nil),
    ]

    @inline(__always)
    func callAsFunction(_ x: Float) -> Float {
        switch kind {
        case .relu: return max(0, x)
        case .tanh: return Foundation.tanh(x)
        case .sigmoid: return 1 / (1 + exp(-x))
        case .affine: return alpha * x + beta
        case .leakyRelu: return x >= 0 ? x : alpha * x
        case .thresholdedRelu: return x > alpha ? x : 0
        case .scaledTanh: return alpha * Foundation.tanh(beta * x)
        case .hardSigmoid: return min(1, max(0, alpha * x + beta))
        case .elu: return x >= 0 ? x : alpha * (exp(x) - 1)
        case .softsign: return x / (1 + abs(x))
        case .softplus: return x > 20 ? x : log1p(exp(x))
        }
    }

    /// df/dx at input `x` whose value is `y` = f(x).
    @inline(__always)
    func derivative(_ x: Float, _ y: Float) -> Float {
        switch kind {
        case .relu: return x > 0 ? 1 : 0
        case .tanh: return 1 - y * y
        case .sigmoid: return y * (1 - y)
        case .affine: return alpha
        case .leakyRelu: return x >= 0 ? 1 : alpha
        case .thresholdedRelu: return x > alpha ? 1 : 0
        case .scaledTanh:
            let t = Foundation.tanh(beta * x)
            return alpha * beta * (1 - t * t)
        case .hardSigmoid:
            let v = alpha * x + beta
            return v > 0 && v < 1 ? alpha : 0
        case .elu: return x >= 0 ? 1 : alpha * exp(x)
        case .softsign: return 1 / ((1 + abs(x)) * (1 + abs(x)))
        case .softplus: return 1 / (1 + exp(-x))
        }
    }
}

/// The attributes of an LSTM or GRU node, validated (ONNX opsets 7-22).
struct RecurrentAttributes: Sendable {
    enum Direction: String, Sendable { case forward, reverse, bidirectional }

    let cell: RecurrentCell
    let direction: Direction
    /// The `hidden_size` attribute (nil: taken from R's last dim).
    let hiddenSize: Int?
    /// Per direction: f, g (and h for LSTM).
    let activations: [[RecurrentActivation]]
    /// Bound applied to every gate input (after bias, before the activation).
    let clip: Float?
    /// LSTM `input_forget`: the forget gate is 1 - the input gate.
    let inputForget: Bool
    /// GRU `linear_before_reset`: the reset gate scales h R_h + Rb_h instead of h.
    let linearBeforeReset: Bool
    /// `layout` 1 (opset 14): X, Y and the states are batch-major.
    let batchFirst: Bool

    var directions: Int { direction == .bidirectional ? 2 : 1 }

    init(node: Node, opset: Int, cell: RecurrentCell) throws {
        self.cell = cell
        guard opset >= 7 else {
            throw unsupported(node, "\(cell.name) before opset 7 (with output_sequence) is not supported")
        }
        let name = try node.string("direction", default: "forward")
        guard let direction = Direction(rawValue: name) else {
            throw unsupported(node, "direction '\(name)' is not one of forward, reverse, bidirectional")
        }
        self.direction = direction
        if let hidden = try node.int("hidden_size") {
            guard hidden >= 1 && hidden <= Int(Int32.max) else {
                throw unsupported(node, "hidden_size \(hidden) is out of range (1...\(Int32.max))")
            }
            hiddenSize = hidden
        } else {
            hiddenSize = nil
        }
        let count = direction == .bidirectional ? 2 : 1
        let names: [String]
        switch node.attributes["activations"] {
        case nil: names = Array([[String]](repeating: cell.defaultActivations, count: count).joined())
        case .strings(let list): names = list
        case .string(let single): names = [single]
        default: throw unsupported(node, "attribute 'activations' must be a list of strings")
        }
        guard names.count == cell.activationCount * count else {
            throw unsupported(node, "activations lists \(names.count) functions; a \(direction.rawValue) \(cell.name) takes \(cell.activationCount * count) (\(cell.activationCount) per direction)")
        }
        var alphas = try node.floats("activation_alpha") ?? [], betas = try node.floats("activation_beta") ?? []
        var parsed: [RecurrentActivation] = []
        for activation in names {
            guard let entry = RecurrentActivation.table.first(where: { $0.name.lowercased() == activation.lowercased() }) else {
                throw unsupported(node, "activation '\(activation)' is not one of \(RecurrentActivation.table.map(\.name).joined(separator: ", "))")
            }
            // Listed alphas and betas go, in order, to the functions that read them.
            var alpha: Float = 0, beta: Float = 0
            if let fallback = entry.alpha { alpha = alphas.isEmpty ? fallback : alphas.removeFirst() }
            if let fallback = entry.beta { beta = betas.isEmpty ? fallback : betas.removeFirst() }
            parsed.append(RecurrentActivation(kind: entry.kind, alpha: alpha, beta: beta))
        }
        activations = (0..<count).map { Array(parsed[($0 * cell.activationCount)..<(($0 + 1) * cell.activationCount)]) }
        if node.attributes["clip"] != nil {
            let bound = try node.float("clip", default: 0)
            guard bound > 0 else { throw unsupported(node, "clip \(bound) must be a positive number") }
            clip = bound.isFinite ? bound : nil
        } else {
            clip = nil
        }
        let forget = try node.int("input_forget", default: 0)
        let linear = try node.int("linear_before_reset", default: 0)
        let layout = try node.int("layout", default: 0)
        guard (0...1).contains(forget), (0...1).contains(linear), (0...1).contains(layout) else {
            throw unsupported(node, "input_forget, linear_before_reset and layout must be 0 or 1 (got \(forget), \(linear), \(layout))")
        }
        if cell == .gru && forget != 0 { throw unsupported(node, "GRU has no input_forget attribute") }
        if cell == .lstm && linear != 0 { throw unsupported(node, "LSTM has no linear_before_reset attribute") }
        inputForget = forget == 1
        linearBeforeReset = linear == 1
        batchFirst = layout == 1
        if node.outputs.count > cell.outputCount {
            throw unsupported(node, "\(cell.name) has \(cell.outputCount) outputs, the node declares \(node.outputs.count)")
        }
    }
}

/// The sizes of one LSTM / GRU problem, from its input shapes (checked against each other).
struct RecurrentShape {
    let sequenceLength: Int
    let batch: Int
    let inputSize: Int
    let hidden: Int
    let directions: Int
    /// gates x hidden: the rows of W and R per direction.
    let gateWidth: Int

    /// Input indices: X, W, R, B, sequence_lens, initial_h, initial_c, P.
    init(_ shapes: [[Int]?], attributes a: RecurrentAttributes, node: Node) throws {
        func fail(_ message: String) -> MPQError { .shapeMismatch("\(a.cell.name) node '\(node.name)': \(message)") }
        func shape(_ index: Int) -> [Int]? { index < shapes.count ? shapes[index] : nil }
        guard let x = shape(0), let w = shape(1), let r = shape(2) else {
            throw MPQError.invalidModel("\(a.cell.name) node '\(node.name)' needs inputs X, W and R")
        }
        guard x.count == 3 else { throw fail("X must have rank 3, got shape \(x)") }
        let d = a.directions, g = a.cell.gates
        (sequenceLength, batch) = a.batchFirst ? (x[1], x[0]) : (x[0], x[1])
        inputSize = x[2]
        directions = d
        guard r.count == 3, r[2] >= 1 else { throw fail("R must have shape [\(d), \(g) x hidden_size, hidden_size], got \(r)") }
        let hidden = a.hiddenSize ?? r[2]
        self.hidden = hidden
        guard let width = SizeLimits.multiply(g, hidden) else { throw fail("hidden_size \(hidden) is too large") }
        gateWidth = width
        let gates = a.cell == .lstm ? "4" : "3"
        guard r == [d, width, hidden] else {
            throw fail("R has shape \(r), expected [\(d), \(gates) x \(hidden), \(hidden)] = \([d, width, hidden]) for hidden_size \(hidden) and direction \(a.direction.rawValue)")
        }
        guard w == [d, width, inputSize] else {
            throw fail("W has shape \(w), expected [\(d), \(gates) x \(hidden), \(inputSize)] = \([d, width, inputSize]) (input size from X \(x))")
        }
        if let b = shape(3) {
            guard b == [d, 2 * width] else { throw fail("B has shape \(b), expected \([d, 2 * width]) (Wb and Rb)") }
        }
        if let lengths = shape(4) {
            guard lengths == [batch] else { throw fail("sequence_lens has shape \(lengths), expected [\(batch)] (the batch size)") }
        }
        let state = a.batchFirst ? [batch, d, hidden] : [d, batch, hidden]
        for (index, name) in [(5, "initial_h"), (6, "initial_c")] {
            if let s = shape(index) { guard s == state else { throw fail("\(name) has shape \(s), expected \(state)") } }
        }
        if a.cell == .gru, shape(6) != nil || shape(7) != nil {
            throw fail("GRU takes 6 inputs (no initial_c or P)")
        }
        if let p = shape(7) {
            guard p == [d, 3 * hidden] else { throw fail("P has shape \(p), expected \([d, 3 * hidden]) (peepholes i, o, f)") }
        }
        for (name, value) in [("Y", [sequenceLength, d, batch, hidden]), ("projected inputs", [sequenceLength, batch, d, width])] {
            try SizeLimits.checkedCount(value, dtype: .float32, what: "\(name) of \(a.cell.name) node '\(node.name)'")
        }
    }

    /// Y, Y_h and Y_c shapes in the node's layout.
    func outputShapes(batchFirst: Bool) -> [[Int]] {
        let y = batchFirst ? [batch, sequenceLength, directions, hidden] : [sequenceLength, directions, batch, hidden]
        let state = batchFirst ? [batch, directions, hidden] : [directions, batch, hidden]
        return [y, state, state]
    }
}

/// ONNX LSTM and GRU (opsets 7-22): all directions, sequence_lens, initial
/// states, peepholes, clip, input_forget, linear_before_reset, every ONNX
/// activation, and layout 1.
///
/// Computed as ONNX Runtime does: X W^T + biases for all steps in one oneDNN
/// matrix product, then per step h R^T and the gate arithmetic. With
/// sequence_lens, row b runs its first L_b steps (reverse: from step L_b - 1
/// down to 0); Y is zero past L_b, and Y_h / Y_c hold the last state (zero
/// when L_b is 0).
final class RecurrentOperator: Operator {
    let node: Node
    let attributes: RecurrentAttributes
    private var kernels: [String: MatMulKernel] = [:]

    init(node: Node, opset: Int, cell: RecurrentCell) throws {
        self.node = node
        attributes = try RecurrentAttributes(node: node, opset: opset, cell: cell)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        try checkTypes(inputs.map { $0?.dtype })
        let count = max(node.outputs.count, 1)
        guard inputs.prefix(3).allSatisfy({ $0 == nil || $0!.shape != nil }) else {
            return Array(repeating: ValueSpec(dtype: .float32, shape: nil), count: count)
        }
        let shape = try RecurrentShape(inputs.map { $0?.shape }, attributes: attributes, node: node)
        if inputs.count > 4, let lengths = inputs[4]?.constant {
            _ = try RecurrentComputation.sequenceLengths(lengths, shape: shape, node: node)
        }
        return shape.outputShapes(batchFirst: attributes.batchFirst).prefix(count).map { ValueSpec(dtype: .float32, shape: $0) }
    }

    private func checkTypes(_ types: [DataType?]) throws {
        for (index, type) in types.enumerated() {
            guard let type else { continue }
            let valid = index == 4 ? type == .int32 || type == .int64 : type == .float32
            guard valid else {
                let names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
                let name = index < names.count ? names[index] : "input \(index)"
                throw MPQError.typeMismatch("\(attributes.cell.name) node '\(node.name)': \(name) is \(type), expected \(index == 4 ? "int32" : "float32")")
            }
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        try checkTypes(inputs.map { $0?.dtype })
        let computation = try RecurrentComputation(inputs, attributes: attributes, node: node, context: context)
        let result = try computation.forward(trace: false) { key, make in
            if let cached = kernels[key] { return cached }
            let made = try make()
            kernels[key] = made
            return made
        }
        return Array(result.outputs(batchFirst: attributes.batchFirst, context: context).prefix(max(node.outputs.count, 1)))
    }
}

/// Supplies prepared matrix-product kernels by problem key (the operator's or the backward pass's cache).
typealias MatMulKernelSource = (_ key: String, _ make: () throws -> MatMulKernel) throws -> MatMulKernel

/// Runs `body`, a loop of per-step products of `stepWork` multiply-adds each,
/// with oneDNN on one thread when those are small (under 2^22): OpenMP's team
/// hand-off then costs more than the product, and far more when the cores are
/// busy (an LSTM of hidden size 256 and batch 8 ran 30x slower on two
/// contended threads than on one). Kernels made inside keep that thread count.
func withSmallProductThreads<R>(stepWork: Int, _ body: () throws -> R) rethrows -> R {
    guard stepWork < 1 << 22 else { return try body() }
    let saved = omp_get_max_threads()
    omp_set_num_threads(1)
    defer { omp_set_num_threads(saved) }
    return try body()
}

/// y[rows, M] = a[rows, K] b^T (+ bias[M]) for row-major b [M, K], on oneDNN;
/// `purpose` keeps kernels made under different thread counts apart.
func multiplyTransposed(_ a: Tensor, _ b: Tensor, bias: Tensor? = nil, into y: Tensor, purpose: String,
                        kernels: MatMulKernelSource) throws {
    let rows = a.shape[0], k = a.shape[1], m = b.shape[0]
    guard rows > 0, m > 0 else { return }
    guard k > 0 else {
        let target = y.pointer(as: Float.self)
        let values = bias?.pointer(as: Float.self)
        for i in 0..<(rows * m) { target[i] = values?[i % m] ?? 0 }
        return
    }
    let kernel = try kernels("rnn \(purpose) \(rows) \(k) \(m) \(bias != nil)") {
        try MatMulKernel(source: ([rows, k], [k, 1]), weights: ([k, m], [1, k]), destination: [rows, m],
                         bias: bias.map { _ in [1, m] }, constantWeights: false)
    }
    try kernel.execute(source: a, weights: b, bias: bias, destination: y)
}

/// Per-step values of one direction that the backward pass reads, in
/// processing order: row b's step s sits at [s, b] (time s, or L_b - 1 - s
/// in reverse). Entries past a row's length are zero.
struct RecurrentTrace {
    /// Gate inputs after bias and clip, [T, N, gates x H].
    let preactivations: Tensor
    /// Gate values (LSTM f holds 1 - i under input_forget), [T, N, gates x H].
    let gates: Tensor
    /// Hidden state before each step, [T, N, H].
    let previousHidden: Tensor
    /// LSTM: cell state before and after each step, [T, N, H].
    let previousCell: Tensor?
    let cell: Tensor?
    /// GRU with linear_before_reset: h R_h^T + Rb_h per step, [T, N, H].
    let linear: Tensor?
}

/// Outputs of a forward pass in layout 0, with traces when asked for.
struct RecurrentResult {
    /// [T, D, N, H], [D, N, H], [D, N, H] (LSTM; zeros for GRU).
    let y: Tensor, finalHidden: Tensor, finalCell: Tensor
    let traces: [RecurrentTrace]

    /// Y, Y_h, Y_c in the node's layout.
    func outputs(batchFirst: Bool, context: ExecutionContext) -> [Tensor] {
        guard batchFirst else { return [y, finalHidden, finalCell] }
        return [permuted(y, [2, 0, 1, 3], context: context), permuted(finalHidden, [1, 0, 2], context: context),
                permuted(finalCell, [1, 0, 2], context: context)]
    }
}

/// `x` with its axes reordered: result axis i is x's axis `order[i]`.
func permuted(_ x: Tensor, _ order: [Int], context: ExecutionContext) -> Tensor {
    let strides = contiguousStrides(x.shape)
    return x.gathered(shape: order.map { x.shape[$0] }, strides: order.map { strides[$0] }, context: context)
}

/// One LSTM / GRU evaluation: validated inputs in layout 0 and the forward pass.
struct RecurrentComputation {
    let attributes: RecurrentAttributes
    let shape: RecurrentShape
    /// [T, N, I].
    let x: Tensor
    /// [D, gates x H, I] and [D, gates x H, H].
    let w: Tensor, r: Tensor
    let bias: Tensor?
    /// Steps each batch row runs.
    let lengths: [Int]
    /// [D, N, H] (nil: zeros).
    let initialHidden: Tensor?, initialCell: Tensor?
    let peepholes: Tensor?
    let context: ExecutionContext

    init(_ inputs: [Tensor?], attributes: RecurrentAttributes, node: Node, context: ExecutionContext) throws {
        self.attributes = attributes
        self.context = context
        let shape = try RecurrentShape(inputs.map { $0?.shape }, attributes: attributes, node: node)
        self.shape = shape
        let x = try inputs.required(0, node)
        self.x = attributes.batchFirst ? permuted(x, [1, 0, 2], context: context) : x
        w = try inputs.required(1, node)
        r = try inputs.required(2, node)
        bias = inputs.optional(3)
        lengths = try inputs.optional(4).map { try Self.sequenceLengths($0, shape: shape, node: node) }
            ?? Array(repeating: shape.sequenceLength, count: shape.batch)
        func state(_ index: Int) -> Tensor? {
            inputs.optional(index).map { attributes.batchFirst ? permuted($0, [1, 0, 2], context: context) : $0 }
        }
        initialHidden = state(5)
        initialCell = attributes.cell == .lstm ? state(6) : nil
        peepholes = attributes.cell == .lstm ? inputs.optional(7) : nil
    }

    /// The values of sequence_lens, each in 0...T.
    static func sequenceLengths(_ tensor: Tensor, shape: RecurrentShape, node: Node) throws -> [Int] {
        let values = tensor.integers()
        guard values.count == shape.batch else {
            throw MPQError.shapeMismatch("\(node.opType) node '\(node.name)': sequence_lens has \(values.count) values for batch \(shape.batch)")
        }
        if let bad = values.firstIndex(where: { $0 < 0 || $0 > shape.sequenceLength }) {
            throw MPQError.invalidInput("\(node.opType) node '\(node.name)': sequence_lens[\(bad)] = \(values[bad]) is outside 0...\(shape.sequenceLength) (the sequence length of X)")
        }
        return values
    }

    /// Time index of row `b`'s step `s` in direction `d`.
    @inline(__always)
    func time(step s: Int, row b: Int, direction d: Int) -> Int {
        reverse(d) ? lengths[b] - 1 - s : s
    }

    func reverse(_ d: Int) -> Bool {
        attributes.direction == .reverse || (attributes.direction == .bidirectional && d == 1)
    }

    /// Rows `rows` of direction `d` of a [D, M, K] weight as a [count, K] tensor.
    func block(_ tensor: Tensor, direction d: Int, rows: Range<Int>) -> Tensor {
        let k = tensor.shape[2], m = tensor.shape[1]
        let result = Tensor(uninitialized: .float32, shape: [rows.count, k])
        let source = tensor.pointer(as: Float.self) + (d * m + rows.lowerBound) * k
        result.pointer(as: Float.self).update(from: source, count: rows.count * k)
        return result
    }

    /// X W^T plus the biases that enter every step unchanged, [T, N, D, gates x H]
    /// (all but GRU's Rb_h under linear_before_reset).
    func projection(kernels: MatMulKernelSource) throws -> Tensor {
        let (t, n, d, width, h) = (shape.sequenceLength, shape.batch, shape.directions, shape.gateWidth, shape.hidden)
        let result = Tensor(uninitialized: .float32, shape: [t, n, d, width])
        var combined: Tensor? = nil
        if let bias {
            let values = bias.pointer(as: Float.self)
            let sum = Tensor(uninitialized: .float32, shape: [d * width])
            let target = sum.pointer(as: Float.self)
            for direction in 0..<d {
                for j in 0..<width {
                    let recurrent = attributes.cell == .gru && attributes.linearBeforeReset && j >= 2 * h
                    target[direction * width + j] = values[direction * 2 * width + j]
                        + (recurrent ? 0 : values[direction * 2 * width + width + j])
                }
            }
            combined = sum
        }
        if t * n > 0 {
            try multiplyTransposed(x.reshaped([t * n, shape.inputSize]), w.reshaped([d * width, shape.inputSize]),
                                   bias: combined, into: result.reshaped([t * n, d * width]), purpose: "projection",
                                   kernels: kernels)
        }
        return result
    }

    func forward(trace: Bool, kernels: MatMulKernelSource) throws -> RecurrentResult {
        let (n, d, h) = (shape.batch, shape.directions, shape.hidden)
        let y = Tensor(zeros: .float32, shape: [shape.sequenceLength, d, n, h])
        let finalHidden = Tensor(zeros: .float32, shape: [d, n, h])
        let finalCell = Tensor(zeros: .float32, shape: [d, n, h])
        let projected = try projection(kernels: kernels)
        var traces: [RecurrentTrace] = []
        try withSmallProductThreads(stepWork: n * shape.gateWidth * h) {
            for direction in 0..<d {
                let record = try runDirection(direction, projected: projected, y: y, finalHidden: finalHidden,
                                              finalCell: finalCell, trace: trace, kernels: kernels)
                if let record { traces.append(record) }
            }
        }
        return RecurrentResult(y: y, finalHidden: finalHidden, finalCell: finalCell, traces: traces)
    }

    private func runDirection(_ direction: Int, projected: Tensor, y: Tensor, finalHidden: Tensor, finalCell: Tensor,
                              trace: Bool, kernels: MatMulKernelSource) throws -> RecurrentTrace? {
        let (t, n, d, h, width) = (shape.sequenceLength, shape.batch, shape.directions, shape.hidden, shape.gateWidth)
        let lstm = attributes.cell == .lstm
        let splitReset = !lstm && !attributes.linearBeforeReset
        let activations = attributes.activations[direction]
        let (f, g) = (activations[0], activations[1])
        let hActivation = lstm ? activations[2] : activations[1]
        let clip = attributes.clip ?? .infinity
        let inputForget = attributes.inputForget
        // State, copied from the initial values of this direction.
        let hidden = Tensor(zeros: .float32, shape: [n, h]), cell = Tensor(zeros: .float32, shape: [n, h])
        if let initialHidden { hidden.pointer(as: Float.self).update(from: initialHidden.pointer(as: Float.self) + direction * n * h, count: n * h) }
        if let initialCell { cell.pointer(as: Float.self).update(from: initialCell.pointer(as: Float.self) + direction * n * h, count: n * h) }
        // Recurrent weights: all gates at once, or GRU's z, r and h apart when r scales h before R_h.
        let recurrentWidth = splitReset ? 2 * h : width
        let recurrentWeights = block(r, direction: direction, rows: 0..<recurrentWidth)
        let resetWeights = splitReset ? block(r, direction: direction, rows: (2 * h)..<(3 * h)) : nil
        let recurrent = Tensor(uninitialized: .float32, shape: [n, recurrentWidth])
        let reset = Tensor(zeros: .float32, shape: [n, h]), resetProduct = Tensor(uninitialized: .float32, shape: [n, h])
        let stepPre = Tensor(zeros: .float32, shape: [n, width]), stepPost = Tensor(zeros: .float32, shape: [n, width])
        let stepLinear = Tensor(zeros: .float32, shape: [n, h])
        let recordPre = trace ? Tensor(zeros: .float32, shape: [t, n, width]) : nil
        let recordPost = trace ? Tensor(zeros: .float32, shape: [t, n, width]) : nil
        let recordHidden = trace ? Tensor(zeros: .float32, shape: [t, n, h]) : nil
        let recordPreviousCell = trace && lstm ? Tensor(zeros: .float32, shape: [t, n, h]) : nil
        let recordCell = trace && lstm ? Tensor(zeros: .float32, shape: [t, n, h]) : nil
        let recordLinear = trace && !lstm && attributes.linearBeforeReset ? Tensor(zeros: .float32, shape: [t, n, h]) : nil

        let hp = hidden.pointer(as: Float.self), cp = cell.pointer(as: Float.self)
        let rec = recurrent.pointer(as: Float.self), xp = projected.pointer(as: Float.self)
        let pre = stepPre.pointer(as: Float.self), post = stepPost.pointer(as: Float.self)
        let rp = reset.pointer(as: Float.self), rpp = resetProduct.pointer(as: Float.self)
        let lin = stepLinear.pointer(as: Float.self)
        let peep = peepholes.map { $0.pointer(as: Float.self) + direction * 3 * h }
        let recurrentBias = bias.map { $0.pointer(as: Float.self) + direction * 2 * width + width + 2 * h }
        let yp = y.pointer(as: Float.self)
        let maxLength = lengths.max() ?? 0
        @inline(__always) func clipped(_ v: Float) -> Float { min(clip, max(-clip, v)) }

        for s in 0..<maxLength {
            let active = (0..<n).filter { s < lengths[$0] }
            if let recordHidden {
                for b in active { (recordHidden.pointer(as: Float.self) + (s * n + b) * h).update(from: hp + b * h, count: h) }
            }
            if let recordPreviousCell {
                for b in active { (recordPreviousCell.pointer(as: Float.self) + (s * n + b) * h).update(from: cp + b * h, count: h) }
            }
            try multiplyTransposed(hidden, recurrentWeights, into: recurrent, purpose: "step", kernels: kernels)
            for b in active {
                let step = time(step: s, row: b, direction: direction)
                let x = xp + ((step * n + b) * d + direction) * width
                let rr = rec + b * recurrentWidth, hb = hp + b * h, cb = cp + b * h
                let a = pre + b * width, v = post + b * width
                if lstm {
                    for j in 0..<h {
                        let previous = cb[j]
                        let ai = clipped(x[j] + rr[j] + (peep.map { $0[j] * previous } ?? 0))
                        let i = f(ai)
                        let fv: Float, af: Float
                        if inputForget {
                            af = 0
                            fv = 1 - i
                        } else {
                            af = clipped(x[2 * h + j] + rr[2 * h + j] + (peep.map { $0[2 * h + j] * previous } ?? 0))
                            fv = f(af)
                        }
                        let ac = clipped(x[3 * h + j] + rr[3 * h + j])
                        let gv = g(ac)
                        let c = fv * previous + i * gv
                        let ao = clipped(x[h + j] + rr[h + j] + (peep.map { $0[h + j] * c } ?? 0))
                        let o = f(ao)
                        cb[j] = c
                        hb[j] = o * hActivation(c)
                        (a[j], a[h + j], a[2 * h + j], a[3 * h + j]) = (ai, ao, af, ac)
                        (v[j], v[h + j], v[2 * h + j], v[3 * h + j]) = (i, o, fv, gv)
                    }
                } else {
                    for j in 0..<h {
                        let az = clipped(x[j] + rr[j]), ar = clipped(x[h + j] + rr[h + j])
                        let z = f(az), rv = f(ar)
                        (a[j], a[h + j], v[j], v[h + j]) = (az, ar, z, rv)
                        if splitReset {
                            rp[b * h + j] = rv * hb[j]
                        } else {
                            let linear = rr[2 * h + j] + (recurrentBias?[j] ?? 0)
                            lin[b * h + j] = linear
                            a[2 * h + j] = x[2 * h + j] + rv * linear
                        }
                    }
                }
            }
            if !lstm {
                if let resetWeights { try multiplyTransposed(reset, resetWeights, into: resetProduct, purpose: "step", kernels: kernels) }
                for b in active {
                    let step = time(step: s, row: b, direction: direction)
                    let x = xp + ((step * n + b) * d + direction) * width
                    let a = pre + b * width, v = post + b * width, hb = hp + b * h
                    for j in 0..<h {
                        let ah = clipped(splitReset ? x[2 * h + j] + rpp[b * h + j] : a[2 * h + j])
                        let candidate = g(ah)
                        a[2 * h + j] = ah
                        v[2 * h + j] = candidate
                        let z = v[j]
                        hb[j] = (1 - z) * candidate + z * hb[j]
                    }
                }
            }
            for b in active {
                let step = time(step: s, row: b, direction: direction)
                (yp + ((step * d + direction) * n + b) * h).update(from: hp + b * h, count: h)
                if let recordPre, let recordPost {
                    (recordPre.pointer(as: Float.self) + (s * n + b) * width).update(from: pre + b * width, count: width)
                    (recordPost.pointer(as: Float.self) + (s * n + b) * width).update(from: post + b * width, count: width)
                }
                if let recordCell { (recordCell.pointer(as: Float.self) + (s * n + b) * h).update(from: cp + b * h, count: h) }
                if let recordLinear { (recordLinear.pointer(as: Float.self) + (s * n + b) * h).update(from: lin + b * h, count: h) }
            }
        }
        let fh = finalHidden.pointer(as: Float.self) + direction * n * h
        let fc = finalCell.pointer(as: Float.self) + direction * n * h
        for b in 0..<n where lengths[b] > 0 {
            (fh + b * h).update(from: hp + b * h, count: h)
            if lstm { (fc + b * h).update(from: cp + b * h, count: h) }
        }
        guard trace, let recordPre, let recordPost, let recordHidden else { return nil }
        return RecurrentTrace(preactivations: recordPre, gates: recordPost, previousHidden: recordHidden,
                              previousCell: recordPreviousCell, cell: recordCell, linear: recordLinear)
    }
}
