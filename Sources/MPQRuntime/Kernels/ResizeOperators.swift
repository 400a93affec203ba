import Foundation
import MPQGraph

/// Operators of this family, by op type.
let resizeOperators: [String: OperatorFactory] = [
    "Resize": { node, opset in try ResizeOperator(node: node, opset: opset) },
]

/// Resize (opset 11+): nearest (any element type) and N-D linear (float32)
/// interpolation from `scales` or `sizes`, with ONNX Runtime's coordinate
/// arithmetic in float32. The roi input is ignored; cubic, tf_crop_and_resize,
/// antialias and aspect-ratio policies other than stretch are rejected.
final class ResizeOperator: Operator {
    private enum CoordinateMode: String {
        case halfPixel = "half_pixel"
        case halfPixelSymmetric = "half_pixel_symmetric"
        case pytorchHalfPixel = "pytorch_half_pixel"
        case tfHalfPixelForNearest = "tf_half_pixel_for_nn"
        case alignCorners = "align_corners"
        case asymmetric
    }

    private enum NearestMode: String {
        case roundPreferFloor = "round_prefer_floor"
        case roundPreferCeil = "round_prefer_ceil"
        case floor, ceil
    }

    /// One output position of a linear pass: two source indices and their weights.
    private struct Tap {
        var first: Int
        var second: Int
        var firstWeight: Float
        var secondWeight: Float
    }

    private let node: Node
    private let isLinear: Bool
    private let coordinates: CoordinateMode
    private let rounding: NearestMode
    private let axes: [Int]?

    init(node: Node, opset: Int) throws {
        self.node = node
        guard opset >= 11 else { throw unsupported(node, "Resize before opset 11 is not supported") }
        let mode = try node.string("mode", default: "nearest")
        guard mode == "nearest" || mode == "linear" else { throw unsupported(node, "mode '\(mode)' is not supported") }
        isLinear = mode == "linear"
        let transform = try node.string("coordinate_transformation_mode", default: "half_pixel")
        guard let coordinates = CoordinateMode(rawValue: transform),
              coordinates != .halfPixelSymmetric || opset >= 19 else {
            throw unsupported(node, "coordinate_transformation_mode '\(transform)' is not supported")
        }
        self.coordinates = coordinates
        let nearest = try node.string("nearest_mode", default: "round_prefer_floor")
        guard let rounding = NearestMode(rawValue: nearest) else {
            throw unsupported(node, "nearest_mode '\(nearest)' is not supported")
        }
        self.rounding = rounding
        if opset >= 18 {
            guard try node.int("antialias", default: 0) == 0 else { throw unsupported(node, "antialias is not supported") }
            let policy = try node.string("keep_aspect_ratio_policy", default: "stretch")
            guard policy == "stretch" else {
                throw unsupported(node, "keep_aspect_ratio_policy '\(policy)' is not supported")
            }
            axes = try node.ints("axes")
        } else {
            axes = nil
        }
    }

    /// Output shape and per-axis scales, from `sizes` (input 3) or `scales` (input 2).
    private func plan(_ shape: [Int], arguments: [Tensor?]) throws -> (shape: [Int], scales: [Float]) {
        let axes = try normalizedAxes(self.axes ?? Array(0..<shape.count), rank: shape.count, node: node)
        var output = shape
        var scales = [Float](repeating: 1, count: shape.count)
        if let sizes = arguments.optional(3), sizes.count > 0 {
            let values = sizes.integers()
            guard values.count == axes.count, values.allSatisfy({ $0 >= 0 }) else {
                throw MPQError.invalidInput("Resize node '\(node.name)': sizes \(values) do not fit axes \(axes)")
            }
            for (axis, size) in zip(axes, values) {
                output[axis] = size
                scales[axis] = Float(size) / Float(shape[axis])
            }
        } else if let given = arguments.optional(2), given.count > 0 {
            let values = given.floats()
            guard values.count == axes.count, values.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw MPQError.invalidInput("Resize node '\(node.name)': scales \(values) do not fit axes \(axes)")
            }
            for (axis, scale) in zip(axes, values) {
                let size = scale * Float(shape[axis])
                guard size < Float(Int32.max) else {
                    throw MPQError.invalidInput("Resize node '\(node.name)': scale \(scale) is too large")
                }
                scales[axis] = scale
                output[axis] = Int(size)
            }
        } else {
            throw MPQError.invalidInput("Resize node '\(node.name)' needs scales or sizes")
        }
        for axis in 0..<shape.count where shape[axis] == 0 && output[axis] > 0 {
            throw MPQError.shapeMismatch("Resize node '\(node.name)': cannot resize an empty axis \(axis) of \(shape)")
        }
        return (output, scales)
    }

    func inferOutputs(_ inputs: [ValueSpec?]) throws -> [ValueSpec] {
        let data = try inputs.required(0, node)
        guard let shape = data.shape, let arguments = inputs.constantArguments(from: 2) else {
            return singleOutput(data.dtype, nil)
        }
        return singleOutput(data.dtype, try plan(shape, arguments: arguments).shape)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try inputs.required(0, node)
        let (shape, scales) = try plan(data.shape, arguments: inputs)
        guard isLinear else {
            let maps = (0..<data.rank).map { axis in
                nearestIndices(input: data.shape[axis], output: shape[axis], scale: scales[axis])
            }
            let result = context.allocate(data.dtype, shape)
            gatherAlongAxes(from: data, maps: maps, fill: nil, into: result, context: context)
            return [result]
        }
        guard data.dtype == .float32 else {
            throw MPQError.typeMismatch("Resize node '\(node.name)': linear mode needs float32, not \(data.dtype)")
        }
        // One separable pass per resized axis, innermost first.
        var current = data
        for axis in stride(from: data.rank - 1, through: 0, by: -1)
        where scales[axis] != 1 || shape[axis] != data.shape[axis] {
            var passShape = current.shape
            passShape[axis] = shape[axis]
            let next = context.allocate(.float32, passShape)
            interpolate(current, into: next, axis: axis,
                        taps: linearTaps(input: data.shape[axis], output: shape[axis], scale: scales[axis]),
                        context: context)
            current = next
        }
        return [current.storage === data.storage ? data.copy() : current]
    }

    /// The source coordinate of output index `x` along an axis.
    private func sourceCoordinate(_ x: Float, scale: Float, input: Float, output: Float) -> Float {
        if scale == 1 { return x }
        switch coordinates {
        case .halfPixel: return (x + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adjustment = output / (scale * input)
            let offset = input / 2 * (1 - adjustment)
            return offset + (x + 0.5) / scale - 0.5
        case .pytorchHalfPixel: return output > 1 ? (x + 0.5) / scale - 0.5 : 0
        case .tfHalfPixelForNearest: return (x + 0.5) / scale
        case .alignCorners: return output == 1 ? 0 : x * (input - 1) / (output - 1)
        case .asymmetric: return x / scale
        }
    }

    private func nearestIndices(input: Int, output: Int, scale: Float) -> [Int] {
        (0..<output).map { position in
            let x = sourceCoordinate(Float(position), scale: scale, input: Float(input), output: Float(output))
            guard !x.isNaN else { return 0 }
            let bounded = min(max(x, -1), Float(input))
            let rounded: Float
            switch rounding {
            case .roundPreferFloor:
                rounded = bounded == Float(Int(bounded)) + 0.5 ? bounded.rounded(.down) : bounded.rounded()
            case .roundPreferCeil: rounded = bounded.rounded()
            case .floor: rounded = bounded.rounded(.down)
            case .ceil: rounded = bounded.rounded(.up)
            }
            return min(max(Int(rounded), 0), input - 1)
        }
    }

    private func linearTaps(input: Int, output: Int, scale: Float) -> [Tap] {
        (0..<output).map { position in
            var x = sourceCoordinate(Float(position), scale: scale, input: Float(input), output: Float(output))
            x = x.isNaN ? 0 : max(0, min(x, Float(input - 1)))
            let first = min(Int(x), input - 1)
            let second = min(first + 1, input - 1)
            guard first != second else { return Tap(first: first, second: second, firstWeight: 0.5, secondWeight: 0.5) }
            return Tap(first: first, second: second, firstWeight: abs(x - Float(second)),
                       secondWeight: abs(x - Float(first)))
        }
    }

    /// Linear interpolation of `source` along `axis` into `result`.
    private func interpolate(_ source: Tensor, into result: Tensor, axis: Int, taps: [Tap], context: ExecutionContext) {
        let input = source.shape[axis]
        let output = taps.count
        let outer = source.shape[..<axis].reduce(1, *)
        let inner = source.shape[(axis + 1)...].reduce(1, *)
        let src = source.pointer(as: Float.self)
        let dst = result.pointer(as: Float.self)
        guard result.count > 0 else { return }
        taps.withUnsafeBufferPointer { taps in
            if inner == 1 {
                context.parallelFor(outer, minimumChunk: minimumChunk(bytesPerItem: output * 4)) { range in
                    for o in range {
                        let row = src + o * input
                        let out = dst + o * output
                        for (i, tap) in taps.enumerated() {
                            out[i] = row[tap.first] * tap.firstWeight + row[tap.second] * tap.secondWeight
                        }
                    }
                }
                return
            }
            context.parallelFor(outer * output, minimumChunk: minimumChunk(bytesPerItem: inner * 4)) { range in
                for item in range {
                    let tap = taps[item % output]
                    let base = src + (item / output) * input * inner
                    let a = base + tap.first * inner
                    let b = base + tap.second * inner
                    let out = dst + item * inner
                    for i in 0..<inner { out[i] = a[i] * tap.firstWeight + b[i] * tap.secondWeight }
                }
            }
        }
    }
}
