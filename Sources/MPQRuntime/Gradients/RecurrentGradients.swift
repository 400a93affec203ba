import MPQGraph

/// Vector-Jacobian products of LSTM and GRU, by backpropagation through time.
///
/// The rule re-runs the forward pass keeping every step's gates and states
/// (`RecurrentTrace`), then walks each direction's steps backwards carrying
/// dh (and LSTM dc): per step the gate-input gradients come from the saved
/// activations, and dh_{t-1} from one oneDNN product with R. The weight
/// gradients and dX are then whole-sequence products: dX = dA W,
/// dW = dA^T X, dR = dA_rec^T h_{t-1}, dB = sums of dA. Clipped gate inputs
/// pass no gradient; sequence_lens is not differentiable.
let recurrentGradients: [String: VectorJacobianProduct] = [
    "LSTM": recurrentGradient(.lstm),
    "GRU": recurrentGradient(.gru),
]

private func recurrentGradient(_ cell: RecurrentCell) -> VectorJacobianProduct {
    VectorJacobianProduct(
        differentiableInputs: { node in [0, 1, 2, 3, 5, 6, 7].filter { $0 < node.inputs.count && !node.inputs[$0].isEmpty } },
        saved: .allInputs
    ) { arguments in
        let node = arguments.node
        let attributes = try RecurrentAttributes(node: node, opset: arguments.opset, cell: cell)
        let inputs: [Tensor?] = try node.inputs.indices.map { node.inputs[$0].isEmpty ? nil : try arguments.input($0) }
        let computation = try RecurrentComputation(inputs, attributes: attributes, node: node, context: arguments.context)
        let kernels: MatMulKernelSource = { key, make in try arguments.kernels.kernel(key, make: make) }
        let forward = try computation.forward(trace: true, kernels: kernels)
        func layout0(_ index: Int, _ order: [Int]) -> Tensor? {
            guard index < arguments.outputGradients.count, let gradient = arguments.outputGradients[index] else { return nil }
            return attributes.batchFirst ? permuted(gradient, order, context: arguments.context) : gradient
        }
        let backward = try RecurrentBackward(computation, forward: forward,
                                             dy: layout0(0, [1, 2, 0, 3]), dFinalHidden: layout0(1, [1, 0, 2]),
                                             dFinalCell: cell == .lstm ? layout0(2, [1, 0, 2]) : nil, kernels: kernels)
        return try backward.inputGradients(wanted: node.inputs.indices.map(arguments.wants), kernels: arguments.kernels)
    }
}

/// The backward walk of one LSTM / GRU evaluation.
private struct RecurrentBackward {
    let computation: RecurrentComputation
    let forward: RecurrentResult
    /// Gradients of the gate inputs that X W^T feeds, in time order, [T, N, D, gates x H].
    let projected: Tensor
    /// Per direction, gradients of the gate terms R multiplies, in processing order, [T, N, gates x H]
    /// (GRU without linear_before_reset: its h block multiplies r * h_{t-1}).
    let recurrent: [Tensor]
    /// dL/d initial_h and initial_c, [D, N, H].
    let initialHidden: Tensor, initialCell: Tensor
    /// [D, 3 x H] (LSTM peepholes i, o, f).
    let peepholes: Tensor

    init(_ computation: RecurrentComputation, forward: RecurrentResult, dy: Tensor?, dFinalHidden: Tensor?,
         dFinalCell: Tensor?, kernels: MatMulKernelSource) throws {
        self.computation = computation
        self.forward = forward
        let shape = computation.shape, attributes = computation.attributes
        let (t, n, d, h, width) = (shape.sequenceLength, shape.batch, shape.directions, shape.hidden, shape.gateWidth)
        let projected = Tensor(zeros: .float32, shape: [t, n, d, width])
        let initialHidden = Tensor(zeros: .float32, shape: [d, n, h])
        let initialCell = Tensor(zeros: .float32, shape: [d, n, h])
        let peepholes = Tensor(zeros: .float32, shape: [d, 3 * h])
        var recurrent: [Tensor] = []
        let lstm = attributes.cell == .lstm, splitReset = !lstm && !attributes.linearBeforeReset
        let clip = attributes.clip ?? .infinity
        let lengths = computation.lengths, maxLength = lengths.max() ?? 0
        let dxp = projected.pointer(as: Float.self)
        let dyp = dy?.pointer(as: Float.self)
        try withSmallProductThreads(stepWork: n * width * h) {
            for direction in 0..<d {
                let trace = forward.traces[direction]
                let activations = attributes.activations[direction]
                let (f, g) = (activations[0], activations[1])
                let hActivation = lstm ? activations[2] : activations[1]
                let weights = computation.block(computation.r, direction: direction, rows: 0..<width)
                let resetWeights = splitReset ? computation.block(computation.r, direction: direction, rows: (2 * h)..<(3 * h)) : nil
                // The rows of R dh_{t-1} gathers through: all, or z and r when GRU's h block multiplies r * h.
                let recurrentRows = splitReset ? 2 * h : width
                let record = Tensor(zeros: .float32, shape: [t, n, width])
                let dh = Tensor(zeros: .float32, shape: [n, h]), dc = Tensor(zeros: .float32, shape: [n, h])
                let step = Tensor(zeros: .float32, shape: [n, width])
                // GRU: da_h per row (the h block of X W^T's gradient; R_h's under split reset).
                let candidate = Tensor(zeros: .float32, shape: [n, h]), resetProduct = Tensor(uninitialized: .float32, shape: [n, h])
                let previous = Tensor(uninitialized: .float32, shape: [n, h])
                let dhp = dh.pointer(as: Float.self), dcp = dc.pointer(as: Float.self), sp = step.pointer(as: Float.self)
                let cand = candidate.pointer(as: Float.self), rpp = resetProduct.pointer(as: Float.self)
                let pre = trace.preactivations.pointer(as: Float.self), post = trace.gates.pointer(as: Float.self)
                let hPrev = trace.previousHidden.pointer(as: Float.self)
                let cPrev = trace.previousCell?.pointer(as: Float.self), cNext = trace.cell?.pointer(as: Float.self)
                let lin = trace.linear?.pointer(as: Float.self)
                let peep = computation.peepholes.map { $0.pointer(as: Float.self) + direction * 3 * h }
                let dPeep = peepholes.pointer(as: Float.self) + direction * 3 * h
                @inline(__always) func mask(_ a: Float) -> Float { abs(a) < clip ? 1 : 0 }
                // The final states' gradients enter at each row's last step.
                for b in 0..<n where lengths[b] > 0 {
                    if let dFinalHidden { (dhp + b * h).update(from: dFinalHidden.pointer(as: Float.self) + (direction * n + b) * h, count: h) }
                    if let dFinalCell { (dcp + b * h).update(from: dFinalCell.pointer(as: Float.self) + (direction * n + b) * h, count: h) }
                }
                for s in (0..<maxLength).reversed() {
                    let active = (0..<n).filter { s < lengths[$0] }
                    step.withUnsafeMutableBufferPointer(as: Float.self) { $0.initialize(repeating: 0) }
                    for b in active {
                        let time = computation.time(step: s, row: b, direction: direction)
                        if let dyp {
                            let source = dyp + ((time * d + direction) * n + b) * h
                            for j in 0..<h { dhp[b * h + j] += source[j] }
                        }
                        let at = (s * n + b) * width, a = pre + at, v = post + at, ds = sp + b * width
                        let dhb = dhp + b * h
                        if lstm {
                            let cp = cPrev! + (s * n + b) * h, cn = cNext! + (s * n + b) * h, dcb = dcp + b * h
                            for j in 0..<h {
                                let (i, o, fv, gv) = (v[j], v[h + j], v[2 * h + j], v[3 * h + j])
                                let (ai, ao, af, ac) = (a[j], a[h + j], a[2 * h + j], a[3 * h + j])
                                let c = cn[j], hc = hActivation(c)
                                var dcj = dcb[j] + dhb[j] * o * hActivation.derivative(c, hc)
                                let dao = dhb[j] * hc * f.derivative(ao, o) * mask(ao)
                                if let peep {
                                    dcj += dao * peep[h + j]
                                    dPeep[h + j] += dao * c
                                }
                                var di = dcj * gv
                                let dfv = dcj * cp[j]
                                var dcPrevious = dcj * fv
                                var daf: Float = 0
                                if attributes.inputForget {
                                    di -= dfv
                                } else {
                                    daf = dfv * f.derivative(af, fv) * mask(af)
                                    if let peep {
                                        dcPrevious += daf * peep[2 * h + j]
                                        dPeep[2 * h + j] += daf * cp[j]
                                    }
                                }
                                let dai = di * f.derivative(ai, i) * mask(ai)
                                if let peep {
                                    dcPrevious += dai * peep[j]
                                    dPeep[j] += dai * cp[j]
                                }
                                let dac = dcj * i * g.derivative(ac, gv) * mask(ac)
                                (ds[j], ds[h + j], ds[2 * h + j], ds[3 * h + j]) = (dai, dao, daf, dac)
                                dcb[j] = dcPrevious
                                dhb[j] = 0
                            }
                        } else {
                            let hp = hPrev + (s * n + b) * h
                            for j in 0..<h {
                                let (z, rv, candidateValue) = (v[j], v[h + j], v[2 * h + j])
                                let dH = dhb[j]
                                let dah = dH * (1 - z) * g.derivative(a[2 * h + j], candidateValue) * mask(a[2 * h + j])
                                ds[j] = dH * (hp[j] - candidateValue) * f.derivative(a[j], z) * mask(a[j])
                                cand[b * h + j] = dah
                                if splitReset {
                                    ds[2 * h + j] = dah
                                } else {
                                    let linear = lin! + (s * n + b) * h
                                    ds[2 * h + j] = dah * rv
                                    ds[h + j] = dah * linear[j] * f.derivative(a[h + j], rv) * mask(a[h + j])
                                }
                                dhb[j] = dH * z
                            }
                        }
                    }
                    if let resetWeights {
                        // GRU h block: a_h = x W_h + (r * h_{t-1}) R_h^T, so d(r * h_{t-1}) = da_h R_h.
                        try product(candidate, ([n, h], [h, 1]), resetWeights, ([h, h], [h, 1]), into: resetProduct, kernels: kernels)
                        for b in active {
                            let at = (s * n + b) * width, a = pre + at, v = post + at, ds = sp + b * width
                            let hp = hPrev + (s * n + b) * h
                            for j in 0..<h {
                                let drh = rpp[b * h + j], rv = v[h + j]
                                ds[h + j] = drh * hp[j] * f.derivative(a[h + j], rv) * mask(a[h + j])
                                dhp[b * h + j] += drh * rv
                            }
                        }
                    }
                    // dh_{t-1} += (gate-input gradients) R.
                    try product(step, ([n, recurrentRows], [width, 1]), weights, ([recurrentRows, h], [h, 1]), into: previous, kernels: kernels)
                    let pp = previous.pointer(as: Float.self)
                    for b in active {
                        let time = computation.time(step: s, row: b, direction: direction)
                        for j in 0..<h { dhp[b * h + j] += pp[b * h + j] }
                        (record.pointer(as: Float.self) + (s * n + b) * width).update(from: sp + b * width, count: width)
                        // X W^T enters every gate input directly (GRU's h block too).
                        let target = dxp + ((time * n + b) * d + direction) * width
                        let ds = sp + b * width
                        if lstm {
                            target.update(from: ds, count: width)
                        } else {
                            target.update(from: ds, count: 2 * h)
                            (target + 2 * h).update(from: cand + b * h, count: h)
                        }
                    }
                }
                recurrent.append(record)
                let ih = initialHidden.pointer(as: Float.self) + direction * n * h
                let ic = initialCell.pointer(as: Float.self) + direction * n * h
                for b in 0..<n where lengths[b] > 0 {
                    (ih + b * h).update(from: dhp + b * h, count: h)
                    if lstm { (ic + b * h).update(from: dcp + b * h, count: h) }
                }
            }
        }
        (self.projected, self.initialHidden, self.initialCell, self.peepholes) = (projected, initialHidden, initialCell, peepholes)
        self.recurrent = recurrent
    }

    /// Gradients of the inputs X, W, R, B, -, initial_h, initial_c, P where `wanted`.
    func inputGradients(wanted: [Bool], kernels: GradientKernels) throws -> [Tensor?] {
        let shape = computation.shape, attributes = computation.attributes, context = computation.context
        let (t, n, d, h, width, inputSize) = (shape.sequenceLength, shape.batch, shape.directions, shape.hidden,
                                              shape.gateWidth, shape.inputSize)
        func wants(_ index: Int) -> Bool { index < wanted.count && wanted[index] }
        var result = [Tensor?](repeating: nil, count: wanted.count)
        let rows = t * n
        let dA = projected.reshaped([rows, d * width])
        if wants(0) {
            let dx = rows == 0 || inputSize == 0 ? GradientMath.zeros([rows, inputSize])
                : try MatrixProduct.compute(dA, transposed: false, computation.w.reshaped([d * width, inputSize]), transposed: false, kernels: kernels)
            let timeMajor = dx.reshaped([t, n, inputSize])
            result[0] = attributes.batchFirst ? permuted(timeMajor, [1, 0, 2], context: context) : timeMajor
        }
        if wants(1) {
            result[1] = rows == 0 || inputSize == 0 ? GradientMath.zeros([d, width, inputSize])
                : try MatrixProduct.compute(dA, transposed: true, computation.x.reshaped([rows, inputSize]), transposed: false,
                                            kernels: kernels).reshaped([d, width, inputSize])
        }
        if wants(2) {
            let dr = Tensor(zeros: .float32, shape: [d, width, h])
            for direction in 0..<d where rows > 0 {
                let trace = forward.traces[direction]
                let gradient = recurrent[direction].reshaped([rows, width])
                let full = try MatrixProduct.compute(gradient, transposed: true, trace.previousHidden.reshaped([rows, h]),
                                                     transposed: false, kernels: kernels)
                let target = dr.pointer(as: Float.self) + direction * width * h
                target.update(from: full.pointer(as: Float.self), count: width * h)
                if attributes.cell == .gru && !attributes.linearBeforeReset {
                    // The h block multiplies r * h_{t-1}.
                    let blockGradient = Tensor(uninitialized: .float32, shape: [rows, h])
                    let source = Tensor(uninitialized: .float32, shape: [rows, h])
                    let g = gradient.pointer(as: Float.self), v = trace.gates.pointer(as: Float.self)
                    let hp = trace.previousHidden.pointer(as: Float.self)
                    let bg = blockGradient.pointer(as: Float.self), sp = source.pointer(as: Float.self)
                    for row in 0..<rows {
                        for j in 0..<h {
                            bg[row * h + j] = g[row * width + 2 * h + j]
                            sp[row * h + j] = v[row * width + h + j] * hp[row * h + j]
                        }
                    }
                    let block = try MatrixProduct.compute(blockGradient, transposed: true, source, transposed: false, kernels: kernels)
                    (target + 2 * h * h).update(from: block.pointer(as: Float.self), count: h * h)
                }
            }
            result[2] = dr
        }
        if wants(3) {
            // Wb gets the gate-input gradients of X W^T, Rb those of the recurrent terms.
            let db = Tensor(zeros: .float32, shape: [d, 2 * width])
            let target = db.pointer(as: Float.self), source = projected.pointer(as: Float.self)
            for row in 0..<rows {
                for direction in 0..<d {
                    let from = source + (row * d + direction) * width, to = target + direction * 2 * width
                    for j in 0..<width { to[j] += from[j] }
                }
            }
            for direction in 0..<d {
                let from = recurrent[direction].pointer(as: Float.self), to = target + direction * 2 * width + width
                for row in 0..<rows {
                    for j in 0..<width { to[j] += from[row * width + j] }
                }
            }
            result[3] = db
        }
        if wants(5) { result[5] = attributes.batchFirst ? permuted(initialHidden, [1, 0, 2], context: context) : initialHidden }
        if wants(6) { result[6] = attributes.batchFirst ? permuted(initialCell, [1, 0, 2], context: context) : initialCell }
        if wants(7) { result[7] = peepholes }
        return result
    }
}

/// y = a b for operands given as (dims, element strides) views, on oneDNN.
private func product(_ a: Tensor, _ aView: ([Int], [Int]), _ b: Tensor, _ bView: ([Int], [Int]), into y: Tensor,
                     kernels: MatMulKernelSource) throws {
    guard aView.0[0] > 0 else { return }
    let kernel = try kernels("rnn-bptt \(aView) \(bView)") {
        try MatMulKernel(source: aView, weights: bView, destination: [aView.0[0], bView.0[1]], bias: nil, constantWeights: false)
    }
    try kernel.execute(source: a, weights: b, bias: nil, destination: y)
}
