#!/usr/bin/env python3
"""SentencePiece reference for GGUFTokenizer's "llama" model (needs the `sentencepiece` package).

    tokenizer_spm_reference.py make OUT_DIR TRAIN.txt [VOCAB_SIZE]
        trains a small llama-style SentencePiece BPE model (byte fallback, identity normalization,
        dummy prefix, digits split) on TRAIN.txt into OUT_DIR/spm.model and writes OUT_DIR/spm.gguf with
        the tokenizer metadata that llama.cpp's convert_hf_to_gguf (_set_vocab_sentencepiece) writes.
    tokenizer_spm_reference.py encode OUT_DIR/spm.model INPUT.json OUTPUT.json
        INPUT.json {"texts": [...]} -> OUTPUT.json {"ids": [[...], ...]} (no BOS/EOS).
"""
import json
import os
import sys


def make(out_dir, train, vocab_size):
    import sentencepiece as spm
    import gguf

    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.join(out_dir, "spm")
    spm.SentencePieceTrainer.train(
        input=train, model_prefix=prefix, vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, character_coverage=0.9995,
        max_sentence_length=100000, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        t = 1  # normal
        if sp.is_unknown(i):
            t = 2
        elif sp.is_control(i):
            t = 3
        elif sp.is_unused(i):
            t = 5
        elif sp.is_byte(i):
            t = 6
        types.append(t)
    w = gguf.GGUFWriter(prefix + ".gguf", "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def encode(model, request, response):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model)
    with open(request, encoding="utf-8") as f:
        texts = json.load(f)["texts"]
    with open(response, "w", encoding="utf-8") as f:
        json.dump({"ids": [sp.encode(t) for t in texts]}, f)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) in (3, 4) and a[0] == "make":
        make(a[1], a[2], int(a[3]) if len(a) == 4 else 2000)
    elif len(a) == 4 and a[0] == "encode":
        encode(a[1], a[2], a[3])
    else:
        raise SystemExit(__doc__)
