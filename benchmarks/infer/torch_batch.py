#!/usr/bin/env python3
"""PyTorch reference for dev.midtrain.bench.BatchDecodeBenchmark: Hugging Face transformers LlamaForCausalLM (fp32,
CPU, random N(0, 0.02^2) weights) on the same 3m / 30m configurations, B sequences decoded together.

    python3 benchmarks/infer/torch_batch.py 3m|30m [prompt] [new] [B,B,...]

For each B: B different PROMPT-token prompts (equal lengths, so no padding on either side) as one batch;
(1) the HF KV-cache loop: model(prompts, use_cache=True), then NEW greedy steps of the whole batch with
    past_key_values; aggregate decode tokens/s = B x NEW / decode time;
(2) model.generate(prompts, max_new_tokens=NEW + 1, min_new_tokens=NEW + 1, greedy): end-to-end tokens/s =
    B x (NEW + 1) / time (prefill included).
Best of two after a warm-up. Threads: MT_THREADS (default 2), torch.set_num_threads. torch.inference_mode().
"""
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_infer import kv_loop, setup  # noqa: E402  (the same model and KV-cache loop as the single-sequence reference)


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "3m"
    plen = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    new = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    bs = [int(b) for b in (sys.argv[4] if len(sys.argv) > 4 else "1,4,16").split(",")]
    threads, p, model = setup(name)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    nparams = sum(x.numel() for x in model.parameters())
    rnd = random.Random(1234)
    prompts = torch.tensor([[rnd.randrange(p["V"]) for _ in range(plen)] for _ in range(max(bs))])

    loop = lambda B, n: kv_loop(model, prompts[:B], n)

    def generate(B, n):
        x = prompts[:B]
        t0 = time.perf_counter()
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=n + 1, min_new_tokens=n + 1,
                             do_sample=False)
        assert out.shape == (B, plen + n + 1), out.shape
        return time.perf_counter() - t0

    line = f"pytorch {name}: {nparams:,} params, {threads} threads (torch {torch.__version__}), prompt {plen}, {new} new tokens each"
    with torch.inference_mode():
        loop(1, min(4, new))
        generate(1, min(4, new))
        for B in bs:
            dec = min(loop(B, new)[1] for _ in range(2))
            gen = min(generate(B, new) for _ in range(2))
            line += f" | B={B}: decode {B * new / dec:.1f} tokens/s, generate {B * (new + 1) / gen:.1f} tokens/s"
    print(line)


if __name__ == "__main__":
    main()
