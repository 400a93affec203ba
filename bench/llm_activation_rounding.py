"""How much of llama.cpp's KL divergence comes from its CPU matmuls rounding activations.

  llm_activation_rounding.py MODEL.gguf BASE_F16.gguf TEXT_IDS.npy [CONTEXT] [CHUNKS]

llama.cpp's CPU backend converts the activation operand of every matmul to the weight type's
vec_dot_type before the dot products: f16 for F16 weights (and the f16 KV cache), q8_K blocks of 256
for K-quants, q8_0 / q8_1 blocks of 32 for the legacy types. mpq eval-lm (like the numpy reference
Tests/Scripts/llama_reference.py) computes in float32/float64 with exact weights. This script runs the
numpy reference twice: with float activations, and with llama.cpp's activation rounding simulated
(q8_K / q8_0 / q8_1 round-to-nearest blocks, f16 for F16 weights and for K, V and the attention
probabilities as in llama.cpp's f16 KV cache), and prints the mean KLD of MODEL against BASE both ways,
scored like llama-perplexity (second half of each chunk).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Scripts"))
import llama_reference as ref  # noqa: E402

K_TYPES = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"}
Q8_0_TYPES = {"Q4_0", "Q5_0", "Q8_0", "IQ4_NL"}
Q8_1_TYPES = {"Q4_1", "Q5_1"}


def round_blocks(x, block):
    """ggml's quantize_row_q8_K / q8_0 reference rounding (scale = max|x| / 127), dequantized."""
    shape = x.shape
    b = x.reshape(-1, block).astype(np.float32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    if block == 256:  # q8_K: iscale = -127 / max (the signed value of largest magnitude), d = 1 / iscale
        idx = np.abs(b).argmax(axis=1)
        mx = b[np.arange(len(b)), idx][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = np.where(amax > 0, np.float32(-127.0) / mx, 0).astype(np.float32)
        q = np.minimum(127, np.rint(iscale * b))
        d = np.where(amax > 0, np.float32(1.0) / iscale, 0).astype(np.float32)
    else:  # q8_0 / q8_1: d = amax / 127 stored as f16, q = round(x / d)
        d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.rint(np.where(d > 0, b / d, 0))
    return (q * d).astype(np.float64).reshape(shape)


def f16(x):
    return np.asarray(x, dtype=np.float16).astype(np.float64)


class Rounded(ref.Llama):
    """The reference forward pass with llama.cpp CPU's activation rounding."""

    def __init__(self, path, simulate):
        super().__init__(path)
        import gguf
        self.types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
        self.simulate = simulate

    def act(self, x, weight_name):
        if not self.simulate:
            return x
        t = self.types.get(weight_name, "F32")
        if t in K_TYPES:
            return round_blocks(x, 256)
        if t in Q8_0_TYPES or t in Q8_1_TYPES:
            return round_blocks(x, 32)
        if t == "F16":
            return f16(x)
        return x

    def logits(self, ids):
        ids = np.asarray(ids)[None]
        t, (B, S) = self.t, ids.shape
        H, KV, D = self.heads, self.kv_heads, self.head_dim
        x = t["token_embd.weight"][ids]
        pos = np.arange(S)
        mask = np.triu(np.full((S, S), -np.inf), 1)
        sim = self.simulate
        mm = lambda h, name: self.act(h, name) @ t[name].T
        for i in range(self.layers):
            p = f"blk.{i}."
            h = self.rms(x, t[p + "attn_norm.weight"])
            wq, wk = t[p + "attn_q.weight"], t[p + "attn_k.weight"]
            if self.permuted:
                wq, wk = ref.unpermute(wq, H), ref.unpermute(wk, KV)
            q = self.act(h, p + "attn_q.weight") @ wq.T
            k = self.act(h, p + "attn_k.weight") @ wk.T
            v = mm(h, p + "attn_v.weight")
            q = q.reshape(B, S, H, D).transpose(0, 2, 1, 3)
            k = k.reshape(B, S, KV, D).transpose(0, 2, 1, 3)
            v = v.reshape(B, S, KV, D).transpose(0, 2, 1, 3)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if sim:  # f16 KV cache; K·Q with Q converted to f16; V·softmax with the probabilities in f16
                q, k, v = f16(q), f16(k), f16(v)
            k = np.repeat(k, H // KV, axis=1)
            v = np.repeat(v, H // KV, axis=1)
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            if sim:
                s = f16(s)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H * D)
            x = x + mm(a, p + "attn_output.weight")
            h = self.rms(x, t[p + "ffn_norm.weight"])
            gate, up = mm(h, p + "ffn_gate.weight"), mm(h, p + "ffn_up.weight")
            x = x + mm(gate / (1 + np.exp(-gate)) * up, p + "ffn_down.weight")
        out = "output.weight" if "output.weight" in t else "token_embd.weight"
        return self.act(self.rms(x, t["output_norm.weight"]), out) @ self.output.T


def mean_kld(model, base, ids, ctx, chunks):
    total, n = 0.0, 0
    for c in range(chunks):
        x = ids[c * ctx:(c + 1) * ctx]
        lq, lp = ref.log_softmax(model.logits(x)[0]), ref.log_softmax(base.logits(x)[0])
        for j in range(ctx // 2, ctx - 1):
            total += float(np.sum(np.exp(lp[j]) * (lp[j] - lq[j])))
            n += 1
    return total / n


def main(argv):
    model_path, base_path, ids_path = argv[:3]
    ctx = int(argv[3]) if len(argv) > 3 else 512
    chunks = int(argv[4]) if len(argv) > 4 else 1
    ids = np.load(ids_path).astype(np.int64)
    exact = mean_kld(Rounded(model_path, False), Rounded(base_path, False), ids, ctx, chunks)
    rounded = mean_kld(Rounded(model_path, True), Rounded(base_path, True), ids, ctx, chunks)
    print(f"mean KLD, {chunks} chunk(s) of {ctx}: float activations {exact:.6f}; "
          f"llama.cpp CPU activation rounding {rounded:.6f} ({100 * (rounded / exact - 1):+.1f} %)")


if __name__ == "__main__":
    main(sys.argv[1:])
