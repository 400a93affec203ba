#!/usr/bin/env python3
"""Reference tokenization with Hugging Face `tokenizers`, for GGUFTokenizer tests.

    tokenizer_reference.py (--json TOKENIZER.json | --gguf MODEL.gguf) INPUT.json OUTPUT.json

INPUT.json is {"texts": [str, ...], "add_special_tokens": bool (default false)};
OUTPUT.json receives {"ids": [[int, ...], ...], "seconds": float} (seconds = time spent in encode_batch/encode).

With --gguf the HF tokenizer is rebuilt from the file's tokenizer.ggml.* metadata (vocab, merges, and the
pre-tokenizer that tokenizer.ggml.pre names, as llama.cpp's convert_hf_to_gguf maps them), without special
tokens added (llama.cpp's parse_special = false: control tokens in text are plain text), except user-defined
tokens (type 4), which llama.cpp always splits out.
"""
import json
import sys
import time

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def from_gguf(path):
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    model = field("tokenizer.ggml.model")
    if model != "gpt2":
        raise SystemExit(f"unsupported tokenizer model {model!r}")
    pre = field("tokenizer.ggml.pre")
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {}
    for i, t in enumerate(tokens):
        vocab[t] = i  # a repeated text keeps its last id, as in llama.cpp
    merges = []
    for m in field("tokenizer.ggml.merges"):
        pos = m.find(" ", 1)
        if pos > 0:
            merges.append((m[:pos], m[pos + 1:]))
    ignore_merges = pre in ("llama3", "llama-v3", "llama-bpe")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "gpt-2":
        tok.pre_tokenizer = byte_level
    elif pre in ("smollm", "starcoder"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("llama3", "llama-v3", "llama-bpe", "qwen2"):
        pattern = QWEN2 if pre == "qwen2" else LLAMA3
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        raise SystemExit(f"unsupported pre-tokenizer {pre!r}")
    tok.decoder = decoders.ByteLevel()
    user = [AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == 4]
    if user:
        tok.add_tokens(user)
    return tok


def main():
    args = sys.argv[1:]
    if len(args) != 4 or args[0] not in ("--json", "--gguf"):
        raise SystemExit(__doc__)
    tok = Tokenizer.from_file(args[1]) if args[0] == "--json" else from_gguf(args[1])
    with open(args[2], encoding="utf-8") as f:
        request = json.load(f)
    add_special = bool(request.get("add_special_tokens", False))
    start = time.perf_counter()
    ids = [tok.encode(t, add_special_tokens=add_special).ids for t in request["texts"]]
    seconds = time.perf_counter() - start
    with open(args[3], "w", encoding="utf-8") as f:
        json.dump({"ids": ids, "seconds": seconds}, f)


if __name__ == "__main__":
    main()
