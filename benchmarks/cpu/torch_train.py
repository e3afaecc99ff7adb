#!/usr/bin/env python3
"""PyTorch CPU training throughput of the same Llama-3 configurations as dev.midtrain.bench.TrainBenchmark.

    python3 benchmarks/cpu/torch_train.py 3m|30m [steps] [warmup]

Debian python3-torch (1.13) with libopenblas0-pthread as the system BLAS; threads from MT_THREADS (default 2).
The model is plain eager PyTorch in float32: RMSNorm, fused-free q/k/v and gate/up projections, rotate-half RoPE,
GQA by repeat_interleave, causal attention (scaled_dot_product_attention when the torch version has it, else
softmax(QK^T + mask) V), SwiGLU, untied LM head, mean cross-entropy; torch.optim.AdamW (foreach when available)
with clip_grad_norm_. Same tokens per step (one micro-batch of B x T), same synthetic data distribution (a random
4-successor Markov chain; the exact sequence differs from the Java generator, which does not matter for speed).
Also measures the sgemm rate (1024^3, best of 5) through torch.mm.
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

PRESETS = {
    "3m": dict(V=512, C=256, L=4, NH=8, NKV=2, FF=688, T=256, B=8),
    "30m": dict(V=8192, C=512, L=8, NH=8, NKV=2, FF=1376, T=512, B=4),
}


class RMSNorm(torch.nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        C, NH, NKV, FF = p["C"], p["NH"], p["NKV"], p["FF"]
        self.NH, self.NKV, self.HD = NH, NKV, C // NH
        self.ln1, self.ln2 = RMSNorm(C), RMSNorm(C)
        self.q = torch.nn.Linear(C, NH * self.HD, bias=False)
        self.k = torch.nn.Linear(C, NKV * self.HD, bias=False)
        self.v = torch.nn.Linear(C, NKV * self.HD, bias=False)
        self.o = torch.nn.Linear(NH * self.HD, C, bias=False)
        self.gate = torch.nn.Linear(C, FF, bias=False)
        self.up = torch.nn.Linear(C, FF, bias=False)
        self.down = torch.nn.Linear(FF, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, self.NH, self.HD).transpose(1, 2)
        k = self.k(h).view(B, T, self.NKV, self.HD).transpose(1, 2)
        v = self.v(h).view(B, T, self.NKV, self.HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.NH // self.NKV, dim=1)
        v = v.repeat_interleave(self.NH // self.NKV, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.HD)) + mask
            y = att.softmax(-1) @ v
        x = x + self.o(y.transpose(1, 2).reshape(B, T, C))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.embed = torch.nn.Embedding(p["V"], p["C"])
        self.blocks = torch.nn.ModuleList([Block(p) for _ in range(p["L"])])
        self.norm = RMSNorm(p["C"])
        self.head = torch.nn.Linear(p["C"], p["V"], bias=False)
        HD, T = p["C"] // p["NH"], p["T"]
        inv = 1.0 / (500000.0 ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        emb = torch.cat([freqs, freqs], -1)
        self.register_buffer("cos", emb.cos().float())
        self.register_buffer("sin", emb.sin().float())
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))
        for n, w in self.named_parameters():
            if w.dim() == 2:
                torch.nn.init.normal_(w, std=0.02)

    def forward(self, idx, targets):
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def markov(V, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    nxt = torch.randint(0, V, (V, k), generator=g)
    choice = torch.randint(0, k, (n,), generator=g)
    s = torch.empty(n, dtype=torch.long)
    s[0] = 0
    for i in range(1, n):
        s[i] = nxt[s[i - 1], choice[i]]
    return s


def sgemm_rate(n=1024, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 1e9
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "3m"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    threads = int(os.environ.get("MT_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    p = PRESETS[name]
    B, T = p["B"], p["T"]
    model = Llama(p)
    decay = [w for n, w in model.named_parameters() if "norm" not in n and "ln" not in n]
    no_decay = [w for n, w in model.named_parameters() if "norm" in n or "ln" in n]
    kw = {"foreach": True} if "foreach" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **kw)
    stream = markov(p["V"], (steps + warmup) * B * T + T + 2, 4, 1)
    n_params = sum(w.numel() for w in model.parameters())
    matmul_params = n_params - p["V"] * p["C"]
    flops_per_token = 6.0 * matmul_params + 6.0 * p["L"] * T * p["C"]
    sgemm = sgemm_rate()

    def step(s):
        rows = torch.stack([stream[(s * B + b) * T:(s * B + b) * T + T + 1] for b in range(B)])
        opt.zero_grad(set_to_none=True)
        loss = model(rows[:, :-1], rows[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    first = 0.0
    for s in range(warmup):
        first = step(s)
    t0, c0 = time.perf_counter(), time.process_time()
    last = 0.0
    for s in range(warmup, warmup + steps):
        last = step(s)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    tps = steps * B * T / sec
    print(f"torch {torch.__version__} {name}: {n_params:,} params, {steps} steps x {B * T} tokens in {sec:.2f} s: "
          f"{tps:.0f} tokens/s | model {flops_per_token * tps / 1e9:.2f} GFLOP/s = {100 * flops_per_token * tps / sgemm:.1f}% "
          f"of sgemm {sgemm / 1e9:.2f} GFLOP/s ({threads} threads) | CPU {cpu:.1f} s = {steps * B * T / cpu:.0f} tokens per CPU-s "
          f"| loss {first:.3f} -> {last:.3f}")


if __name__ == "__main__":
    main()
