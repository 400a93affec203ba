import CDNNL
import Foundation
import MPQGraph

/// Thin Swift layer over oneDNN's C API: engine and stream, memory
/// descriptors, and primitives that keep one memory object per argument so
/// a run only swaps data pointers.
enum DNNL {
    static let argSource: Int32 = 1
    /// A binary primitive's second source (its first is `argSource`).
    static let argSource1: Int32 = 2
    static let argDestination: Int32 = 17
    static let argWeights: Int32 = 33
    static let argBias: Int32 = 41
    static let argScale: Int32 = 51
    static let argShift: Int32 = 52
    static let argMean: Int32 = 49
    static let argVariance: Int32 = 50
    static let argDifferenceSource: Int32 = 129
    static let argDifferenceDestination: Int32 = 145
    static let argDifferenceWeights: Int32 = 161

    nonisolated(unsafe) static let engine: dnnl_engine_t = {
        var engine: dnnl_engine_t?
        guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine else {
            fatalError("mpq: oneDNN has no CPU engine")
        }
        return engine
    }()

    nonisolated(unsafe) static let stream: dnnl_stream_t = {
        var stream: dnnl_stream_t?
        guard dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let stream else {
            fatalError("mpq: cannot create a oneDNN stream")
        }
        return stream
    }()

    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) throws {
        guard status == dnnl_success else {
            throw MPQError.kernelFailure("oneDNN \(what()) failed with status \(status.rawValue)")
        }
    }

    /// Plain row-major tag for a rank.
    static func plainTag(rank: Int) -> dnnl_format_tag_t {
        [dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd, dnnl_abcde, dnnl_abcdef][min(rank, 6)]
    }
}

/// A oneDNN memory descriptor (shape, type, layout).
struct MemoryDescriptor {
    var raw = dnnl_memory_desc_t()

    /// `dims` with a format tag (`dnnl_format_tag_any` lets the primitive choose).
    init(_ dims: [Int], _ type: dnnl_data_type_t = dnnl_f32, tag: dnnl_format_tag_t) throws {
        let d = dims.map(Int64.init)
        try DNNL.check(dnnl_memory_desc_init_by_tag(&raw, Int32(d.count), d, type, tag), "memory descriptor \(dims)")
    }

    /// Plain row-major `dims`.
    init(plain dims: [Int], _ type: dnnl_data_type_t = dnnl_f32) throws {
        try self.init(dims.isEmpty ? [1] : dims, type, tag: DNNL.plainTag(rank: max(dims.count, 1)))
    }

    /// `dims` with explicit element strides.
    init(_ dims: [Int], _ type: dnnl_data_type_t = dnnl_f32, strides: [Int]) throws {
        let d = dims.map(Int64.init), s = strides.map(Int64.init)
        try DNNL.check(dnnl_memory_desc_init_by_strides(&raw, Int32(d.count), d, type, s), "memory descriptor \(dims)")
    }

    init(raw: dnnl_memory_desc_t) { self.raw = raw }

    var byteCount: Int {
        var copy = raw
        return dnnl_memory_desc_get_size(&copy)
    }

    /// The same dims and layout with elements of another type.
    func with(dataType type: dnnl_data_type_t) -> MemoryDescriptor {
        var copy = raw
        copy.data_type = type
        return MemoryDescriptor(raw: copy)
    }

    func equals(_ other: MemoryDescriptor) -> Bool {
        var a = raw, b = other.raw
        return dnnl_memory_desc_equal(&a, &b) != 0
    }
}

/// A created primitive with one reusable memory object per execution argument.
final class Primitive {
    let descriptor: dnnl_primitive_desc_t
    private let primitive: dnnl_primitive_t
    private var memories: [Int32: dnnl_memory_t] = [:]

    /// Creates the primitive from an initialised operation descriptor
    /// (backward primitives name the forward one they invert as `hint`).
    init<Operation>(_ operation: inout Operation, attributes: PrimitiveAttributes? = nil, hint: Primitive? = nil,
                    name: String) throws {
        let attributes = try attributes ?? PrimitiveAttributes()
        var pd: dnnl_primitive_desc_t?
        let status = withUnsafePointer(to: &operation) {
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer($0), attributes.raw, DNNL.engine, hint?.descriptor)
        }
        try DNNL.check(status, "\(name) primitive descriptor")
        descriptor = pd!
        var p: dnnl_primitive_t?
        try DNNL.check(dnnl_primitive_create(&p, descriptor), "\(name) primitive")
        primitive = p!
        scratchpadBytes = MemoryDescriptor(raw: dnnl_primitive_desc_query_md(pd!, dnnl_query_exec_arg_md, Self.argScratchpad).pointee).byteCount
    }

    /// A reorder from one layout to another.
    init(reorderFrom source: MemoryDescriptor, to destination: MemoryDescriptor) throws {
        let attributes = try PrimitiveAttributes()
        var pd: dnnl_primitive_desc_t?
        var s = source.raw, d = destination.raw
        try DNNL.check(dnnl_reorder_primitive_desc_create(&pd, &s, DNNL.engine, &d, DNNL.engine, attributes.raw), "reorder")
        descriptor = pd!
        var p: dnnl_primitive_t?
        try DNNL.check(dnnl_primitive_create(&p, descriptor), "reorder primitive")
        primitive = p!
        scratchpadBytes = MemoryDescriptor(raw: dnnl_primitive_desc_query_md(pd!, dnnl_query_exec_arg_md, Self.argScratchpad).pointee).byteCount
    }

    deinit {
        for memory in memories.values { dnnl_memory_destroy(memory) }
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(descriptor)
    }

    /// oneDNN's name for the implementation it chose (e.g. "jit_uni_int8:avx2", or "ref_int8:any" for the slow reference).
    var implementation: String {
        var info: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &info) == dnnl_success, let info else { return "unknown" }
        return String(cString: info)
    }

    /// The layout the primitive chose for an argument (DNNL.argSource, ...).
    func memoryDescriptor(for argument: Int32) -> MemoryDescriptor {
        MemoryDescriptor(raw: dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, argument).pointee)
    }

    /// Runs with the given data pointers (in the layouts the primitive chose).
    func execute(_ arguments: [(Int32, UnsafeMutableRawPointer)]) throws {
        var args: [dnnl_exec_arg_t] = []
        args.reserveCapacity(arguments.count + 1)
        for (argument, pointer) in arguments {
            let memory = try self.memory(for: argument)
            try DNNL.check(dnnl_memory_set_data_handle(memory, pointer), "set data handle")
            args.append(dnnl_exec_arg_t(arg: argument, memory: memory))
        }
        try Scratchpad.shared.withBuffer(byteCount: scratchpadBytes) { buffer in
            if let buffer {
                let memory = try self.memory(for: Self.argScratchpad)
                try DNNL.check(dnnl_memory_set_data_handle(memory, buffer), "set scratchpad handle")
                args.append(dnnl_exec_arg_t(arg: Self.argScratchpad, memory: memory))
            }
            try DNNL.check(dnnl_primitive_execute(primitive, DNNL.stream, Int32(args.count), args), "execute")
        }
    }

    private static let argScratchpad: Int32 = 80
    private let scratchpadBytes: Int

    private func memory(for argument: Int32) throws -> dnnl_memory_t {
        if let memory = memories[argument] { return memory }
        var md = memoryDescriptor(for: argument).raw
        var memory: dnnl_memory_t?
        try DNNL.check(dnnl_memory_create(&memory, &md, DNNL.engine, nil), "memory")
        memories[argument] = memory!
        return memory!
    }
}

/// One scratchpad shared by all primitives (they run one at a time), instead
/// of a private buffer per primitive: oneDNN's per-primitive scratchpads of
/// a batch-16 MobileNet alone would hold hundreds of MiB.
final class Scratchpad: @unchecked Sendable {
    static let shared = Scratchpad()
    private let lock = NSLock()
    private var buffer: UnsafeMutableRawPointer?
    private var capacity = 0

    /// Runs `body` holding a buffer of at least `byteCount` bytes (nil for 0),
    /// serialised with every other primitive execution.
    func withBuffer(byteCount: Int, _ body: (UnsafeMutableRawPointer?) throws -> Void) rethrows {
        lock.lock(); defer { lock.unlock() }
        guard byteCount > 0 else { return try body(nil) }
        if byteCount > capacity {
            free(buffer)
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, byteCount) == 0 else { fatalError("mpq: out of memory for a \(byteCount)-byte scratchpad") }
            buffer = raw
            capacity = byteCount
        }
        try body(buffer)
    }
}

/// Primitive attributes: a user-managed scratchpad and post-ops fused into the output.
final class PrimitiveAttributes {
    let raw: dnnl_primitive_attr_t

    init() throws {
        var attr: dnnl_primitive_attr_t?
        try DNNL.check(dnnl_primitive_attr_create(&attr), "primitive attributes")
        raw = attr!
        try DNNL.check(dnnl_primitive_attr_set_scratchpad_mode(raw, dnnl_scratchpad_mode_user), "scratchpad mode")
    }

    /// Appends post-ops (applied in order to the f32 result), then eltwise
    /// operations given as (algorithm, alpha, beta).
    func setPostOps(_ postOps: [PostOp], followedBy operations: [(dnnl_alg_kind_t, Float, Float)] = []) throws {
        guard !postOps.isEmpty || !operations.isEmpty else { return }
        try setPostOps { ops in
            for postOp in postOps {
                switch postOp {
                case .sum:
                    try DNNL.check(dnnl_post_ops_append_sum(ops, 1), "sum post-op")
                case .relu:
                    try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0), "relu post-op")
                case .clip(let low, let high):
                    try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_clip, low, high), "clip post-op")
                case .gelu:
                    try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_gelu_erf, 0, 0), "gelu post-op")
                }
            }
            for (algorithm, alpha, beta) in operations {
                try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, algorithm, alpha, beta), "eltwise post-op \(algorithm.rawValue)")
            }
        }
    }

    /// Appends eltwise post-ops given as (algorithm, alpha, beta), applied in order.
    func setEltwisePostOps(_ operations: [(dnnl_alg_kind_t, Float, Float)]) throws {
        try setPostOps { ops in
            for (algorithm, alpha, beta) in operations {
                try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, algorithm, alpha, beta), "eltwise post-op \(algorithm.rawValue)")
            }
        }
    }

    private func setPostOps(appending append: (dnnl_post_ops_t?) throws -> Void) throws {
        var ops: dnnl_post_ops_t?
        try DNNL.check(dnnl_post_ops_create(&ops), "post-ops")
        defer { dnnl_post_ops_destroy(ops) }
        try append(ops)
        try DNNL.check(dnnl_primitive_attr_set_post_ops(raw, ops), "set post-ops")
    }

    /// Multiplies the int32 accumulator (plus bias) by `scales` before post-ops:
    /// one scale for the whole output (mask 0) or one per index of the
    /// destination dims selected by `mask` (bit 1 = channels).
    func setOutputScales(_ scales: [Float], mask: Int32) throws {
        try DNNL.check(dnnl_primitive_attr_set_output_scales(raw, Int64(scales.count), mask, scales), "output scales")
    }

    /// One scale for the whole of input `argument` (a binary primitive's
    /// `DNNL.argSource` or `DNNL.argSource1`), applied to it before the operation.
    func setScale(_ scale: Float, argument: Int32) throws {
        try DNNL.check(dnnl_primitive_attr_set_scales(raw, argument, 1, 0, [scale]), "input scale")
    }

    /// A zero point subtracted from every source value (u8 codes) before the products.
    func setSourceZeroPoint(_ zeroPoint: Int32) throws {
        try DNNL.check(dnnl_primitive_attr_set_zero_points(raw, DNNL.argSource, 1, 0, [zeroPoint]), "source zero point")
    }

    deinit { dnnl_primitive_attr_destroy(raw) }
}

/// Work oneDNN folds into a primitive's output at no extra memory pass:
/// adding the tensor already in the destination (a residual Add), or an activation.
public enum PostOp: Equatable, Sendable {
    case sum
    case relu
    case clip(min: Float, max: Float)
    /// x * (1 + erf(x / sqrt 2)) / 2, the exact GELU of BERT-style models.
    case gelu
}

/// A oneDNN blocked layout carried by a tensor between convolutions.
final class DNNLLayout: OpaqueLayout {
    let descriptor: MemoryDescriptor
    private lazy var toRowMajor: Result<Primitive, Error> = Result {
        try Primitive(reorderFrom: descriptor, to: MemoryDescriptor(plain: rowMajorDims, descriptor.raw.data_type))
    }
    private let rowMajorDims: [Int]

    init(_ descriptor: MemoryDescriptor, dims: [Int]) {
        self.descriptor = descriptor
        rowMajorDims = dims
    }

    /// The tensor's elements in row-major order.
    func rowMajor(_ tensor: Tensor) throws -> Tensor {
        let result = Tensor(uninitialized: tensor.dtype, shape: tensor.shape)
        try toRowMajor.get().execute([(DNNL.argSource, tensor.rawPointer), (DNNL.argDestination, result.rawPointer)])
        return result
    }
}

extension Tensor {
    /// This tensor in row-major order (itself when it already is).
    package func rowMajor() throws -> Tensor {
        guard let layout = opaqueLayout as? DNNLLayout else { return self }
        return try layout.rowMajor(self)
    }
}

/// Maps a tensor type to oneDNN's.
func dnnlType(_ dtype: DataType) throws -> dnnl_data_type_t {
    switch dtype {
    case .float32: return dnnl_f32
    case .int8: return dnnl_s8
    case .uint8: return dnnl_u8
    case .int32: return dnnl_s32
    case .float16: return dnnl_f16
    case .bfloat16: return dnnl_bf16
    default: throw MPQError.typeMismatch("oneDNN kernels do not take \(dtype)")
    }
}
