import Foundation
import MPQGGUF
import MPQGraph
import MPQQuantization
import MPQReports
import MPQRuntime
import MPQSearch

/// Hyper-parameters of a decoder-only transformer, read from GGUF metadata.
public struct DecoderConfiguration: Sendable, Equatable {
    /// Which dimensions of a head RoPE rotates together (llama.cpp's rope type, by architecture).
    public enum RopeLayout: String, Sendable {
        /// llama.cpp's LLAMA_ROPE_TYPE_NORM: rotated pairs are adjacent, (x0, x1), (x2, x3), ...
        /// (convert_hf_to_gguf permutes Q/K rows of llama models so that this equals HF's rotate_half).
        case adjacentPairs
        /// LLAMA_ROPE_TYPE_NEOX (qwen2, qwen3): pairs (x_i, x_{i + n/2}), HF's rotate_half on unpermuted rows.
        case halves
    }

    /// `general.architecture`: llama, qwen2 or qwen3.
    public var architecture: String
    /// Transformer blocks (`{arch}.block_count`).
    public var layers: Int
    /// Width of the residual stream (`{arch}.embedding_length`).
    public var hidden: Int
    /// Inner width of the SwiGLU feed-forward (`{arch}.feed_forward_length`).
    public var feedForward: Int
    /// Query heads (`{arch}.attention.head_count`).
    public var heads: Int
    /// Key/value heads (`{arch}.attention.head_count_kv`, default `heads`); fewer: grouped-query attention.
    public var kvHeads: Int
    /// Dimensions per head (`{arch}.attention.key_length`, default hidden / heads).
    public var headDim: Int
    /// Tokens in the vocabulary (ne1 of token_embd.weight).
    public var vocabulary: Int
    /// RoPE base theta (`{arch}.rope.freq_base`, default 10000): pair i turns by position x theta^(-2i / ropeDimensions).
    public var ropeBase: Double
    /// Leading dimensions of each head that RoPE rotates (the rest pass through).
    public var ropeDimensions: Int
    /// Adjacent pairs for llama, halves for qwen2 and qwen3.
    public var ropeLayout: RopeLayout
    /// Epsilon of every RMSNorm (`{arch}.attention.layer_norm_rms_epsilon`, default 1e-5).
    public var rmsEpsilon: Float
    /// Training context in tokens (`{arch}.context_length`, default 2048); caps the graph's default sequence length.
    public var contextLength: Int
    /// True when the output head reuses token_embd.weight (no output.weight tensor).
    public var tiedEmbeddings: Bool
    /// Qwen2: biases on the Q, K and V projections.
    public var qkvBias: Bool
    /// Qwen3: RMSNorm of each Q and K head before RoPE.
    public var qkNorm: Bool
    /// Whether llama.cpp adds a BOS token (tokenizer.ggml.add_bos_token; default true for llama's SPM vocabularies).
    public var addBOS: Bool
    /// `tokenizer.ggml.bos_token_id`; nil when the metadata has none.
    public var bosToken: Int?
}

/// Builds mpq graphs of GGUF decoder LMs (llama; qwen2 and qwen3 variants).
///
/// The graph maps `input_ids` [batch, seq] (int64) to `logits` [batch, seq, vocab] with every
/// position starting at 0. Design:
/// - Weights are float32 initializers named exactly like their GGUF tensors and kept in GGUF's
///   layout ([ne1 rows][ne0 columns], i.e. [out, in]); projections are `Gemm` with transB = 1
///   over the residual stream flattened to [batch * seq, hidden], so each quantizer site is one
///   GGUF tensor with its output channel on axis 0 and ggml's block axis (ne0) on axis 1.
///   A tied output head is a second `Gemm` reading token_embd.weight (one site, as in llama.cpp).
/// - RMSNorm is `SimplifiedLayerNormalization` (mpq's fused kernel and gradient).
/// - RoPE is four nodes per tensor: x * cos - Gather(x, pair swap) * sin', with sin' carrying the
///   signs, for llama.cpp's adjacent-pair ("normal") rope on the GGUF's permuted Q/K rows, or
///   for the NeoX halves layout. No rotation matrix (which the quantizer would take for a weight).
/// - Grouped-query attention without copying K/V: Q is [batch, kv, group, seq, d] and K/V are
///   [batch, kv, 1, seq, d], so MatMul broadcasts each KV head over its query group.
/// - The sequence length is taken from the input's shape (Shape/Slice over cos/sin/mask tables
///   of `maxSequenceLength` rows), which the runtime folds into constants per input shape.
public enum DecoderGraphBuilder {
    /// Name of the graph's input: token ids [batch, seq], int64.
    public static let inputName = "input_ids"
    /// Name of the graph's output: logits [batch, seq, vocab], float32, before softmax.
    public static let outputName = "logits"

    /// The hyper-parameters of `file` from its metadata (`general.architecture`, `{arch}.*`, tokenizer keys)
    /// and tensor shapes; throws `MPQError.invalidModel` for an architecture other than llama, qwen2 or
    /// qwen3, or a missing required key or token_embd.weight.
    public static func configuration(of file: GGUFFile) throws -> DecoderConfiguration {
        let meta = file.metadata
        guard let arch = meta[GGUFKey.architecture]?.stringValue else {
            throw MPQError.invalidModel("GGUF has no general.architecture")
        }
        guard ["llama", "qwen2", "qwen3"].contains(arch) else {
            throw MPQError.invalidModel("GGUF architecture '\(arch)' is not supported (llama, qwen2, qwen3)")
        }
        func int(_ key: String) throws -> Int {
            guard let value = meta["\(arch).\(key)"]?.intValue else {
                throw MPQError.invalidModel("GGUF metadata lacks \(arch).\(key)")
            }
            return value
        }
        func optionalInt(_ key: String) -> Int? { meta["\(arch).\(key)"]?.intValue }
        let hidden = try int("embedding_length"), heads = try int("attention.head_count")
        let headDim = optionalInt("attention.key_length") ?? hidden / heads
        guard let embedding = file.tensor(named: "token_embd.weight"), embedding.dimensions.count == 2 else {
            throw MPQError.invalidModel("GGUF lacks a 2-D token_embd.weight")
        }
        let vocabulary = embedding.dimensions[1]
        let hasOutput = file.tensor(named: "output.weight") != nil
        let epsilon = meta["\(arch).attention.layer_norm_rms_epsilon"]?.doubleValue ?? 1e-5
        let addBOSDefault = meta["tokenizer.ggml.model"]?.stringValue == "llama"
        return DecoderConfiguration(
            architecture: arch, layers: try int("block_count"), hidden: hidden,
            feedForward: try int("feed_forward_length"), heads: heads,
            kvHeads: optionalInt("attention.head_count_kv") ?? heads, headDim: headDim,
            vocabulary: vocabulary, ropeBase: meta["\(arch).rope.freq_base"]?.doubleValue ?? 10_000,
            ropeDimensions: optionalInt("rope.dimension_count") ?? headDim,
            ropeLayout: arch == "llama" ? .adjacentPairs : .halves, rmsEpsilon: Float(epsilon),
            contextLength: optionalInt("context_length") ?? 2048, tiedEmbeddings: !hasOutput,
            qkvBias: file.tensor(named: "blk.0.attn_q.bias") != nil,
            qkNorm: file.tensor(named: "blk.0.attn_q_norm.weight") != nil,
            addBOS: meta["tokenizer.ggml.add_bos_token"].map { $0 == .bool(true) } ?? addBOSDefault,
            bosToken: meta["tokenizer.ggml.bos_token_id"]?.intValue)
    }

    /// The decoder graph of `file`, weights dequantized to float32.
    ///
    /// - Parameter file: the GGUF decoder (llama, qwen2 or qwen3).
    /// - Parameter maxSequenceLength: rows of the RoPE and mask tables (the longest input the graph
    ///   takes); default min(context length, 2048).
    /// - Parameter simulatingLlamaCpp: round activations as llama.cpp's CPU backend does before its
    ///   matrix products (`LlamaCppActivationRounding`), to predict llama-perplexity's figures;
    ///   false (the default) evaluates in exact float32.
    public static func graph(from file: GGUFFile, maxSequenceLength: Int? = nil,
                             simulatingLlamaCpp: Bool = false) throws -> Graph {
        let config = try configuration(of: file)
        var builder = Builder(config: config, file: file,
                              maxLength: maxSequenceLength ?? min(config.contextLength, 2048),
                              simulatesLlamaCpp: simulatingLlamaCpp)
        return try builder.build()
    }

    /// A weight as float32 in GGUF's row-major layout ([ne_{n-1}] ... [ne0]).
    public static func weight(_ file: GGUFFile, _ name: String) throws -> Tensor {
        guard let info = file.tensor(named: name) else { throw MPQError.invalidModel("GGUF lacks tensor '\(name)'") }
        return Tensor(shape: info.dimensions.reversed(), scalars: try file.floats(info))
    }

    private struct Builder {
        let config: DecoderConfiguration
        let file: GGUFFile
        let maxLength: Int
        /// Insert llama.cpp's activation rounding before its matrix products.
        let simulatesLlamaCpp: Bool
        var nodes: [Node] = []
        var initializers: [String: Tensor] = [:]

        init(config: DecoderConfiguration, file: GGUFFile, maxLength: Int, simulatesLlamaCpp: Bool) {
            self.config = config
            self.file = file
            self.maxLength = maxLength
            self.simulatesLlamaCpp = simulatesLlamaCpp
        }

        /// `x` as llama.cpp's CPU backend hands it to a product in `block` (f16 when 0); `x` itself
        /// when not simulating or when the product runs in float32 (`block` nil).
        mutating func llamaCppRounded(_ x: String, block: Int?) -> String {
            guard simulatesLlamaCpp, let block else { return x }
            nodes.append(LlamaCppActivationRounding.node(x, output: x + ".llamacpp_rounded", block: block))
            return x + ".llamacpp_rounded"
        }

        @discardableResult
        mutating func node(_ op: String, _ inputs: [String], _ output: String,
                           _ attributes: [String: Attribute] = [:]) -> String {
            nodes.append(Node(name: output, opType: op, inputs: inputs, outputs: [output], attributes: attributes))
            return output
        }

        mutating func constant(_ name: String, _ tensor: Tensor) -> String {
            initializers[name] = tensor
            return name
        }

        mutating func ints(_ name: String, _ values: [Int]) -> String {
            constant(name, Tensor(shape: [values.count], scalars: values.map { Int64($0) }))
        }

        mutating func weight(_ name: String) throws -> String {
            if initializers[name] == nil { initializers[name] = try DecoderGraphBuilder.weight(file, name) }
            return name
        }

        mutating func rmsNorm(_ x: String, _ weightName: String, _ output: String) throws -> String {
            node("SimplifiedLayerNormalization", [x, try weight(weightName)], output,
                 ["axis": .int(-1), "epsilon": .float(config.rmsEpsilon)])
        }

        /// x [tokens, in] times the GGUF weight [out, in] transposed (+ optional bias [out]).
        mutating func linear(_ x: String, _ weightName: String, bias: String? = nil, _ output: String) throws -> String {
            let block = file.tensor(named: weightName).flatMap { LlamaCppActivationRounding.block(forWeightType: $0.type) }
            var inputs = [llamaCppRounded(x, block: block), try weight(weightName)]
            if let bias { inputs.append(try weight(bias)) }
            return node("Gemm", inputs, output, ["transB": .int(1)])
        }

        /// RoPE on x [batch, seq, heads, d] with cos / signed-sin tables sliced to [seq, 1, d].
        mutating func rope(_ x: String, _ prefix: String) -> String {
            let swapped = node("Gather", [x, "rope.swap"], prefix + ".rope_swapped", ["axis": .int(3)])
            let a = node("Mul", [x, "rope.cos.seq"], prefix + ".rope_cos")
            let b = node("Mul", [swapped, "rope.sin.seq"], prefix + ".rope_sin")
            return node("Sub", [a, b], prefix + ".rope")
        }

        mutating func tables() {
            let d = config.headDim, rotated = min(config.ropeDimensions, d), half = rotated / 2
            var swap = Array(0..<d)
            var cos = [Float](repeating: 1, count: maxLength * d), sin = [Float](repeating: 0, count: maxLength * d)
            // out = x cos - swap(x) sin', per rotated pair (a, b) with angle t:
            // out_a = x_a cos t - x_b sin t, out_b = x_b cos t + x_a sin t, so sin'_a = sin t, sin'_b = -sin t.
            for i in 0..<half {
                let (a, b) = config.ropeLayout == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + half)
                swap[a] = b
                swap[b] = a
                let frequency = pow(config.ropeBase, -2 * Double(i) / Double(rotated))
                for position in 0..<maxLength {
                    let angle = Double(position) * frequency
                    cos[position * d + a] = Float(Foundation.cos(angle))
                    cos[position * d + b] = Float(Foundation.cos(angle))
                    sin[position * d + a] = Float(Foundation.sin(angle))
                    sin[position * d + b] = -Float(Foundation.sin(angle))
                }
            }
            _ = ints("rope.swap", swap)
            _ = constant("rope.cos", Tensor(shape: [maxLength, 1, d], scalars: cos))
            _ = constant("rope.sin", Tensor(shape: [maxLength, 1, d], scalars: sin))
            var mask = [Float](repeating: 0, count: maxLength * maxLength)
            for row in 0..<maxLength { for column in (row + 1)..<max(row + 1, maxLength) { mask[row * maxLength + column] = -.infinity } }
            _ = constant("attention.causal_mask", Tensor(shape: [maxLength, maxLength], scalars: mask))
            _ = constant("attention.scale", Tensor(scalar: Float(1 / Double(d).squareRoot())))
            // Sequence length from the input's shape; the runtime folds these per input shape.
            node("Shape", [inputName], "input.shape")
            node("Slice", ["input.shape", ints("const.1", [1]), ints("const.2", [2])], "input.seq")
            let zero = ints("const.0", [0])
            node("Slice", ["rope.cos", zero, "input.seq", zero], "rope.cos.seq")
            node("Slice", ["rope.sin", zero, "input.seq", zero], "rope.sin.seq")
            node("Concat", ["input.seq", "input.seq"], "attention.mask_ends", ["axis": .int(0)])
            node("Slice", ["attention.causal_mask", ints("const.00", [0, 0]), "attention.mask_ends",
                           ints("const.01", [0, 1])], "attention.mask")
            let c = config
            let group = c.heads / c.kvHeads
            node("Concat", ["input.shape", ints("shape.q", [c.heads, d])], "shape.bshd", ["axis": .int(0)])
            node("Concat", ["input.shape", ints("shape.kv", [c.kvHeads, d])], "shape.bskd", ["axis": .int(0)])
            node("Concat", ["input.shape", ints("shape.qg", [c.kvHeads, group, d])], "shape.bskgd", ["axis": .int(0)])
            node("Concat", ["input.shape", ints("shape.k1", [c.kvHeads, 1, d])], "shape.bsk1d", ["axis": .int(0)])
            node("Concat", ["input.shape", ints("shape.vocab", [c.vocabulary])], "shape.logits", ["axis": .int(0)])
            _ = ints("shape.tokens_q", [-1, c.heads * d])
            _ = ints("shape.tokens_hidden", [-1, c.hidden])
        }

        mutating func build() throws -> Graph {
            let c = config
            guard c.heads % c.kvHeads == 0, c.ropeDimensions % 2 == 0 else {
                throw MPQError.invalidModel("\(c.heads) query heads do not group over \(c.kvHeads) KV heads")
            }
            tables()
            let embedded = node("Gather", [try weight("token_embd.weight"), inputName], "embedding", ["axis": .int(0)])
            var x = node("Reshape", [embedded, "shape.tokens_hidden"], "embedding.tokens")
            for layer in 0..<c.layers {
                let p = "blk.\(layer)"
                let h = try rmsNorm(x, "\(p).attn_norm.weight", "\(p).attn_norm")
                let q = try linear(h, "\(p).attn_q.weight", bias: c.qkvBias ? "\(p).attn_q.bias" : nil, "\(p).attn_q")
                let k = try linear(h, "\(p).attn_k.weight", bias: c.qkvBias ? "\(p).attn_k.bias" : nil, "\(p).attn_k")
                let v = try linear(h, "\(p).attn_v.weight", bias: c.qkvBias ? "\(p).attn_v.bias" : nil, "\(p).attn_v")
                var q4 = node("Reshape", [q, "shape.bshd"], "\(p).q_heads")
                var k4 = node("Reshape", [k, "shape.bskd"], "\(p).k_heads")
                if c.qkNorm {
                    q4 = try rmsNorm(q4, "\(p).attn_q_norm.weight", "\(p).attn_q_norm")
                    k4 = try rmsNorm(k4, "\(p).attn_k_norm.weight", "\(p).attn_k_norm")
                }
                // llama.cpp's default f16 KV cache: Q, K and V meet in f16 products.
                let qr = llamaCppRounded(rope(q4, "\(p).q"), block: 0), kr = llamaCppRounded(rope(k4, "\(p).k"), block: 0)
                let q5 = node("Reshape", [qr, "shape.bskgd"], "\(p).q_groups")
                let qt = node("Transpose", [q5], "\(p).q_t", ["perm": .ints([0, 2, 3, 1, 4])])      // [B, KV, G, S, D]
                let k5 = node("Reshape", [kr, "shape.bsk1d"], "\(p).k_groups")
                let kt = node("Transpose", [k5], "\(p).k_t", ["perm": .ints([0, 2, 3, 4, 1])])      // [B, KV, 1, D, S]
                let v5 = node("Reshape", [llamaCppRounded(v, block: 0), "shape.bsk1d"], "\(p).v_groups")
                let vt = node("Transpose", [v5], "\(p).v_t", ["perm": .ints([0, 2, 3, 1, 4])])      // [B, KV, 1, S, D]
                let scores = node("MatMul", [qt, kt], "\(p).attn_scores")
                let scaled = node("Mul", [scores, "attention.scale"], "\(p).attn_scaled")
                let masked = node("Add", [scaled, "attention.mask"], "\(p).attn_masked")
                let probabilities = node("Softmax", [masked], "\(p).attn_probs", ["axis": .int(-1)])
                let context = node("MatMul", [llamaCppRounded(probabilities, block: 0), vt], "\(p).attn_context")          // [B, KV, G, S, D]
                let ct = node("Transpose", [context], "\(p).attn_context_t", ["perm": .ints([0, 3, 1, 2, 4])])
                let merged = node("Reshape", [ct, "shape.tokens_q"], "\(p).attn_merged")
                let attention = try linear(merged, "\(p).attn_output.weight", "\(p).attn_output")
                x = node("Add", [x, attention], "\(p).attn_residual")
                let f = try rmsNorm(x, "\(p).ffn_norm.weight", "\(p).ffn_norm")
                let gate = try linear(f, "\(p).ffn_gate.weight", "\(p).ffn_gate")
                let up = try linear(f, "\(p).ffn_up.weight", "\(p).ffn_up")
                let sigmoid = node("Sigmoid", [gate], "\(p).ffn_gate_sigmoid")
                let silu = node("Mul", [gate, sigmoid], "\(p).ffn_silu")
                let product = node("Mul", [silu, up], "\(p).ffn_product")
                let down = try linear(product, "\(p).ffn_down.weight", "\(p).ffn_down")
                x = node("Add", [x, down], "\(p).ffn_residual")
            }
            let normalized = try rmsNorm(x, "output_norm.weight", "output_norm")
            let head = try linear(normalized, c.tiedEmbeddings ? "token_embd.weight" : "output.weight", "logits.tokens")
            node("Reshape", [head, "shape.logits"], outputName)
            return Graph(
                name: "\(c.architecture)-decoder", nodes: nodes,
                inputs: [ValueInfo(name: inputName, dtype: .int64, shape: [.symbolic("batch"), .symbolic("sequence")])],
                outputs: [ValueInfo(name: outputName, dtype: .float32,
                                    shape: [.symbolic("batch"), .symbolic("sequence"), .fixed(c.vocabulary)])],
                initializers: initializers, opset: 17)
        }
    }
}
