#!/usr/bin/env python3
"""Reference logits of a llama-architecture GGUF model, numpy only (float64).

usage:
  llama_reference.py MODEL.gguf TOKENS.npy OUT.npy
      logits [batch, seq, vocab] (float32) for int token ids [batch, seq] (or [seq])
  llama_reference.py MODEL.gguf TOKENS.npy --perplexity CONTEXT CHUNKS
      llama-perplexity's figure: CHUNKS chunks of CONTEXT tokens, second half of each scored
  llama_reference.py MODEL.gguf TOKENS.npy --kld REFERENCE.gguf CONTEXT CHUNKS
      llama-perplexity --kl-divergence's figures (JSON) over the same scored positions
  llama_reference.py --requantize SRC.gguf DST.gguf TYPE
      a copy with every 2-D weight quantized to TYPE (e.g. Q4_0, Q8_0) by gguf-py's numpy quantizers
  llama_reference.py --variant SRC.gguf DST.gguf qwen2|qwen3
      the llama model relabelled as a qwen2 (random Q/K/V biases) or qwen3 (random Q/K head norms)
      model, rows un-permuted to HF order: a synthetic case for those graph variants
  llama_reference.py --tokenize TOKENIZER.json TEXT_FILE OUT.npy [--jargon-tail]
      token ids of a text (HF tokenizers; --jargon-tail: the evaluation split of jargon.txt
      as examples/tiny-llama-jargon/prep_data.py makes it)

The forward pass is written the way transformers' LlamaForCausalLM computes it, independently of
mpq's graph: Q/K weights are un-permuted from the GGUF (llama.cpp's convert_hf_to_gguf permutes the
rows for its "normal" rope with adjacent pairs) back to HF's layout, and RoPE uses rotate_half
(pairs (i, i + d/2)).
"""
import math
import sys

import numpy as np


def load(path):
    import gguf
    reader = gguf.GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        try:
            meta[key] = field.contents()
        except Exception:
            pass
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))  # ggml ne0-first -> numpy row-major
        tensors[t.name] = np.asarray(values, dtype=np.float64).reshape(shape)
    return meta, tensors


def unpermute(w, heads):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute (rows grouped per head, pairs interleaved)."""
    out_features = w.shape[0]
    return w.reshape(heads, out_features // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class Llama:
    def __init__(self, path):
        meta, t = load(path)
        arch = meta["general.architecture"]
        if arch not in ("llama", "qwen2", "qwen3"):
            raise SystemExit(f"only llama, qwen2 and qwen3 are implemented here, not {arch}")
        # llama: GGUF Q/K rows permuted by the converter (undone below); qwen2/qwen3: HF order, NeoX rope.
        self.permuted = arch == "llama"
        g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
        self.layers = int(g("block_count"))
        self.heads = int(g("attention.head_count"))
        self.kv_heads = int(g("attention.head_count_kv", self.heads))
        self.hidden = int(g("embedding_length"))
        self.head_dim = int(g("attention.key_length", self.hidden // self.heads))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.base = float(g("rope.freq_base", 10000.0))
        self.t = t
        self.output = t.get("output.weight", t["token_embd.weight"])

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, positions):
        # x [B, H, S, D], HF rotate_half convention
        d = self.head_dim
        inv = 1.0 / (self.base ** (np.arange(0, d, 2, dtype=np.float64) / d))
        freqs = np.outer(positions, inv)
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb), np.sin(emb)
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        rotated = np.concatenate([-x2, x1], axis=-1)
        return x * cos + rotated * sin

    def logits(self, ids):
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        t, (B, S) = self.t, ids.shape
        H, KV, D = self.heads, self.kv_heads, self.head_dim
        x = t["token_embd.weight"][ids]
        pos = np.arange(S)
        mask = np.triu(np.full((S, S), -np.inf), 1)
        for i in range(self.layers):
            p = f"blk.{i}."
            h = self.rms(x, t[p + "attn_norm.weight"])
            wq, wk = t[p + "attn_q.weight"], t[p + "attn_k.weight"]
            if self.permuted:
                wq, wk = unpermute(wq, H), unpermute(wk, KV)
            q = h @ wq.T + t.get(p + "attn_q.bias", 0)
            k = h @ wk.T + t.get(p + "attn_k.bias", 0)
            v = h @ t[p + "attn_v.weight"].T + t.get(p + "attn_v.bias", 0)
            q = q.reshape(B, S, H, D).transpose(0, 2, 1, 3)
            k = k.reshape(B, S, KV, D).transpose(0, 2, 1, 3)
            v = v.reshape(B, S, KV, D).transpose(0, 2, 1, 3)
            if p + "attn_q_norm.weight" in t:  # qwen3: RMSNorm of each head before RoPE
                q = self.rms(q, t[p + "attn_q_norm.weight"])
                k = self.rms(k, t[p + "attn_k_norm.weight"])
            q, k = self.rope(q, pos), self.rope(k, pos)
            k = np.repeat(k, H // KV, axis=1)  # HF repeat_kv: head h reads kv head h // (H / KV)
            v = np.repeat(v, H // KV, axis=1)
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H * D)
            x = x + a @ t[p + "attn_output.weight"].T
            h = self.rms(x, t[p + "ffn_norm.weight"])
            gate = h @ t[p + "ffn_gate.weight"].T
            up = h @ t[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ t[p + "ffn_down.weight"].T
        return self.rms(x, t["output_norm.weight"]) @ self.output.T


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def requantize(src, dst, type_name):
    import gguf
    qtype = getattr(gguf.GGMLQuantizationType, type_name)
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), field.types[0])
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        data = data.reshape([int(d) for d in reversed(t.shape)])
        if data.ndim == 2:
            writer.add_tensor(t.name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def variant(src, dst, arch):
    import gguf
    reader = gguf.GGUFReader(src)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    heads, kv = int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])
    head_dim = int(meta["llama.attention.key_length"])
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        name = arch + key[len("llama"):] if key.startswith("llama.") else key
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), field.types[0])
    rng = np.random.default_rng(0)
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        data = data.reshape([int(d) for d in reversed(t.shape)])
        if t.name.endswith("attn_q.weight"):
            data = unpermute(data, heads)
        elif t.name.endswith("attn_k.weight"):
            data = unpermute(data, kv)
        writer.add_tensor(t.name, data)
        layer = t.name.rsplit(".", 2)[0]
        if arch == "qwen2" and t.name.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight")):
            writer.add_tensor(t.name[:-len("weight")] + "bias", (0.2 * rng.standard_normal(data.shape[0])).astype(np.float32))
        if arch == "qwen3" and t.name.endswith("attn_q.weight"):
            for which in ("q", "k"):
                writer.add_tensor(f"{layer}.attn_{which}_norm.weight",
                                  (1 + 0.2 * rng.standard_normal(head_dim)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def kld(model, reference, ids, ctx, chunks):
    import json
    klds, same, nll, first = [], 0, 0.0, ctx // 2
    for c in range(chunks):
        x = ids[c * ctx:(c + 1) * ctx]
        lr = log_softmax(reference.logits(x)[0])[first:ctx - 1]
        lm = log_softmax(model.logits(x)[0])[first:ctx - 1]
        klds += list((np.exp(lr) * (lr - lm)).sum(-1))
        same += int((lr.argmax(-1) == lm.argmax(-1)).sum())
        nll -= lm[np.arange(ctx - 1 - first), x[first + 1:ctx]].sum()
    k = np.array(klds)
    n = len(k)
    print(json.dumps({"perplexity": math.exp(nll / n), "mean": k.mean(),
                      "standard_error": math.sqrt(max(0.0, np.mean(k * k) - k.mean() ** 2) / (n - 1)),
                      "median": float(np.percentile(k, 50)), "p99": float(np.percentile(k, 99)),
                      "same_top": same / n, "count": n}))


def main(argv):
    if argv[0] == "--variant":
        variant(argv[1], argv[2], argv[3])
        return
    if argv[0] == "--requantize":
        requantize(argv[1], argv[2], argv[3])
        return
    if argv[0] == "--tokenize":
        from tokenizers import Tokenizer
        text = open(argv[2], encoding="utf-8").read()
        if "--jargon-tail" in argv:
            data = "\n".join(l.strip() for l in text.split("\n"))
            n = len(data)
            cut = int(n * 0.75) + data[int(n * 0.75):].index("\n") + 1
            text = data[cut:]
        ids = Tokenizer.from_file(argv[1]).encode(text).ids
        np.save(argv[3], np.asarray(ids, dtype=np.int64))
        return
    model = Llama(argv[0])
    ids = np.load(argv[1]).astype(np.int64)
    if len(argv) > 2 and argv[2] == "--kld":
        kld(model, Llama(argv[3]), ids, int(argv[4]), int(argv[5]))
        return
    if len(argv) > 2 and argv[2] == "--perplexity":
        ctx, chunks = int(argv[3]), int(argv[4])
        nll, count = 0.0, 0
        for c in range(chunks):
            x = ids[c * ctx:(c + 1) * ctx]
            lp = log_softmax(model.logits(x)[0])
            first = ctx // 2
            nll -= sum(lp[j, x[j + 1]] for j in range(first, ctx - 1))
            count += ctx - 1 - first
            print(f"chunk {c + 1}: ppl so far {math.exp(nll / count):.4f}", flush=True)
        print(f"perplexity {math.exp(nll / count):.6f} over {count} tokens")
        return
    np.save(argv[2], model.logits(ids).astype(np.float32))


if __name__ == "__main__":
    main(sys.argv[1:])
