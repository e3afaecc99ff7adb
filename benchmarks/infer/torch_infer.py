#!/usr/bin/env python3
"""PyTorch reference for dev.midtrain.bench.InferBenchmark: Hugging Face transformers LlamaForCausalLM (fp32, CPU,
random N(0, 0.02^2) weights) on the same 3m / 30m configurations.

    python3 benchmarks/infer/torch_infer.py 3m|30m [items] [ctx] [prompt] [new]

(1) multiple-choice scoring: ITEMS items of a CTX-token context and four 4-6-token continuations; the 4*ITEMS
    sequences sorted by length (longest first) and run in right-padded batches of up to 4 x max_seq_len tokens with an
    attention mask, log_softmax gathered at the continuation tokens (what lm-evaluation-harness's HF model does);
(2) generation: the usual HF KV-cache loop: model(prompt, use_cache=True), then one token at a time with
    past_key_values, greedy; prefill and decode timed apart (best of two after a warm-up).
Threads: MT_THREADS (default 2), torch.set_num_threads. torch.inference_mode() throughout.
"""
import os
import random
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {"3m": dict(V=512, C=256, L=4, NH=8, NKV=2, FF=688, T=256),
           "30m": dict(V=8192, C=512, L=8, NH=8, NKV=2, FF=1376, T=512)}


def setup(name):
    """Threads from MT_THREADS (default 2), the preset, and the model: seed 1234, random N(0, 0.02^2) weights, no
    bos/eos (so generate runs to its length)."""
    threads = int(os.environ.get("MT_THREADS", "2"))
    torch.set_num_threads(threads)
    p = PRESETS[name]
    cfg = LlamaConfig(vocab_size=p["V"], hidden_size=p["C"], intermediate_size=p["FF"], num_hidden_layers=p["L"],
                      num_attention_heads=p["NH"], num_key_value_heads=p["NKV"], max_position_embeddings=p["T"],
                      rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.02,
                      bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(1234)
    return threads, p, LlamaForCausalLM(cfg).eval()


def kv_loop(model, x, n):
    """The usual HF KV-cache loop on the batch x [B, T]: prefill, then n greedy steps with past_key_values.
    Returns (prefill seconds, decode seconds)."""
    t0 = time.perf_counter()
    o = model(input_ids=x, use_cache=True)
    past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
    t1 = time.perf_counter()
    for _ in range(n):
        o = model(input_ids=nxt, past_key_values=past, use_cache=True)
        past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
    return t1 - t0, time.perf_counter() - t1


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "3m"
    items, ctx, plen, new = [int(a) for a in (sys.argv[2:6] + ["64", "96", "128", "128"][len(sys.argv[2:6]):])]
    threads, p, model = setup(name)
    nparams = sum(x.numel() for x in model.parameters())
    rnd = random.Random(1234)
    ids = lambda n: [rnd.randrange(p["V"]) for _ in range(n)]
    seqs = []
    for _ in range(items):
        c = ids(ctx)
        for _ in range(4):
            cont = ids(4 + rnd.randrange(3))
            seqs.append((c + cont, len(cont)))
    seqs.sort(key=lambda s: -len(s[0]))
    cap = 4 * p["T"]

    def score(batch_seqs):
        out = []
        i = 0
        while i < len(batch_seqs):
            T = len(batch_seqs[i][0])
            B = max(1, min(len(batch_seqs) - i, cap // T))
            chunk = batch_seqs[i:i + B]
            inp = torch.zeros(B, T, dtype=torch.long)
            mask = torch.zeros(B, T, dtype=torch.long)
            for b, (s, _) in enumerate(chunk):
                inp[b, :len(s)] = torch.tensor(s)
                mask[b, :len(s)] = 1
            lp = torch.log_softmax(model(input_ids=inp, attention_mask=mask).logits.float(), dim=-1)
            for b, (s, k) in enumerate(chunk):
                n = len(s)
                tgt = torch.tensor(s[n - k:])
                out.append(lp[b, n - k - 1:n - 1].gather(1, tgt[:, None]).sum().item())
            i += B
        return out

    with torch.inference_mode():
        score(seqs[:8])
        t0 = time.perf_counter()
        score(seqs)
        eval_s = time.perf_counter() - t0
        prompt = torch.tensor([ids(plen)])
        pre, dec = [], []
        for rep in range(3):
            a, b = kv_loop(model, prompt, new)
            pre.append(a)
            dec.append(b)
    pre_s, dec_s = min(pre[1:]), min(dec[1:])
    print(f"pytorch {name}: {nparams:,} params, {threads} threads (torch {torch.__version__}) | eval: {items} items ({len(seqs)} choices, ctx {ctx}) "
          f"in {eval_s:.2f} s = {items / eval_s:.1f} items/s | prefill {plen} tokens: {plen / pre_s:.0f} tokens/s | "
          f"decode {new} tokens: {new / dec_s:.1f} tokens/s")


if __name__ == "__main__":
    main()
