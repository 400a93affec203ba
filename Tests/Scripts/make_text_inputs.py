"""Tokenizes real sentences for all-MiniLM-L6-v2: OUT.npz with int64 input_ids,
attention_mask and token_type_ids [COUNT, longest], padded with [PAD].

Usage: make_text_inputs.py TOKENIZER.json TEXT.txt OUT.npz COUNT [MAX_TOKENS]"""
import re
import sys

import numpy as np
from tokenizers import Tokenizer


def sentences(path, count):
    text = open(path, encoding="utf-8", errors="replace").read()
    text = re.sub(r"\s+", " ", text)
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s", text) if 20 <= len(s.strip()) <= 400]
    # Spread the picks across the text, varied lengths give real padding.
    step = max(1, len(found) // count)
    return found[::step][:count]


def main(tokenizer_path, text_path, out, count, max_tokens=128):
    tokenizer = Tokenizer.from_file(tokenizer_path)
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(sentences(text_path, count))
    np.savez(out,
             input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
             attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
             token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), *(int(a) for a in sys.argv[5:]))
