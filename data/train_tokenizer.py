#!/usr/bin/env python3
"""Trains the tiny byte-level BPE tokenizer of configs/tiny.yaml and writes data/tokenizer/tokenizer.json (HF format).

Llama-3 layout, scaled down: 256 byte tokens (ids 0-255, GPT-2 byte-to-unicode alphabet), 254 merges (ids 256-509),
then the specials <|begin_of_text|> = 510 and <|end_of_text|> = 511: exactly 512 contiguous ids. Pre-tokenizer:
Split with Llama-3's regex, then ByteLevel (no prefix space), as in Meta-Llama-3's tokenizer.json.

Trained on the shipped samples (data/make_samples.py output), QA pairs rendered with midtrain prepare's default
template. Deterministic (ties broken by the smaller pair of ids). Needs only the standard library; uses the `regex`
module for the exact Llama-3 pattern when installed, else an ASCII-equivalent approximation (the pattern only decides
which merges are learned; the written tokenizer.json always carries the exact regex).
Run: python3 data/train_tokenizer.py
"""
import collections
import json
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
VOCAB = 512
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]
LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QA_TEMPLATE = "Question: {question}\nAnswer: {answer}"  # midtrain prepare's default --qa-template

try:
    import regex
    PAT = regex.compile(LLAMA3_PATTERN)
except ImportError:  # \p{L} -> [^\W\d_], \p{N} -> \d: identical on the (ASCII) sample text
    import re
    L, N = r"[^\W\d_]", r"\d"
    PAT = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:(?![\r\n])[\W_])?" + L + r"+|\d{1,3}| ?(?:(?!\s)[\W_])+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def corpus():
    with open(os.path.join(ROOT, "boostqa", "sample.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            yield QA_TEMPLATE.format(question=r["question"], answer=r["answer"])
    with open(os.path.join(ROOT, "knowedu", "sample.jsonl"), encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def train():
    words = collections.Counter()
    for doc in corpus():
        for w in PAT.findall(doc):
            words[tuple(w.encode("utf-8"))] += 1
    words = {w: c for w, c in words.items()}
    merges = []
    for new_id in range(256, VOCAB - len(SPECIALS)):
        pairs = collections.Counter()
        for w, c in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] += c
        if not pairs:
            raise SystemExit("corpus too small for the vocabulary")
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        nw = {}
        for w, c in words.items():
            if len(w) > 1 and best[0] in w:
                out, i = [], 0
                while i < len(w):
                    if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                        out.append(new_id)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                w = tuple(out)
            nw[w] = nw.get(w, 0) + c
        words = nw
    return merges


def encode_word(word_bytes, ranks):
    """Reference BPE: repeatedly apply the lowest-rank merge (what HF's BPE model does)."""
    w = list(word_bytes)
    while len(w) > 1:
        best = None
        for i in range(len(w) - 1):
            r = ranks.get((w[i], w[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        r, i = best
        w[i:i + 2] = [256 + r]
    return w


def main():
    merges = train()
    b2u = bytes_to_unicode()
    tok = {b: b2u[b] for b in range(256)}
    for k, (a, b) in enumerate(merges):
        tok[256 + k] = tok[a] + tok[b]
    vocab = {tok[i]: i for i in range(256 + len(merges))}
    assert len(vocab) == 256 + len(merges), "duplicate token strings"
    bos, eos = 256 + len(merges), 257 + len(merges)
    assert eos == VOCAB - 1
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in zip((bos, eos), SPECIALS)]
    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": SPECIALS[0], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {SPECIALS[0]: {"id": SPECIALS[0], "ids": [bos], "tokens": [SPECIALS[0]]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{tok[a]} {tok[b]}" for a, b in merges]},
    }
    path = os.path.join(ROOT, "tokenizer", "tokenizer.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    # report tokens per source (plus one end-of-text token per document), with the reference encoder
    ranks = {p: r for r, p in enumerate(merges)}
    cache = {}
    counts = {"boostqa": 0, "knowedu": 0}
    n_qa = sum(1 for _ in open(os.path.join(ROOT, "boostqa", "sample.jsonl")))
    for k, doc in enumerate(corpus()):
        n = 1
        for w in PAT.findall(doc):
            if w not in cache:
                cache[w] = len(encode_word(w.encode("utf-8"), ranks))
            n += cache[w]
        counts["boostqa" if k < n_qa else "knowedu"] += n
    print(f"wrote {path}: {len(vocab) + 2} ids ({len(merges)} merges); tokens per source: {counts}")


if __name__ == "__main__":
    main()
