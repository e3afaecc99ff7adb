#!/usr/bin/env python3
"""The ops of KernelBench (cuda) in PyTorch at the same shapes, for comparison: median of N CUDA-event timings after
warm-up, the same byte/FLOP conventions (bytes = inputs read once + outputs written once; causal attention FLOPs
4*B*T*T*NH*HD/2 forward, 2.5x backward), the same ceilings (1 GiB device-to-device copy, read + write counted;
bf16 8192^3 matmul). Prints markdown table rows. Runs on the GPU machine only (needs torch with CUDA)."""
import sys

import torch
import torch.nn.functional as F

WARMUP, REPS = 3, 20


def median_ms(fn):
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(REPS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[REPS // 2] if REPS % 2 else 0.5 * (ts[REPS // 2 - 1] + ts[REPS // 2])


CEIL = {}


def row(name, shape, ms, achieved, pct):
    print(f"| {name} | {shape} | {ms:.3f} | {achieved} | {pct} |", flush=True)


def bw(name, shape, ms, nbytes):
    gbs = nbytes / (ms * 1e6)
    row(name, shape, ms, f"{gbs:.0f} GB/s", f"{100 * gbs / CEIL['copy']:.0f}")


def fl(name, shape, ms, flops):
    tf = flops / (ms * 1e9)
    row(name, shape, ms, f"{tf:.1f} TFLOP/s", f"{100 * tf / CEIL['gemm']:.0f}" if "gemm" in CEIL else "100")
    return tf


def main():
    if not torch.cuda.is_available():
        print("torch_bench: no CUDA device")
        return 1
    dev = torch.device("cuda")
    bf = torch.bfloat16
    torch.manual_seed(0)
    print(f"torch_bench on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, median of {REPS} after {WARMUP} warm-up")
    print()
    print("| op (torch) | shape | time ms | achieved | % of ceiling |")
    print("|---|---|---:|---:|---:|")

    nb = 1 << 30
    a = torch.empty(nb // 4, dtype=torch.float32, device=dev).fill_(1)
    b = torch.empty_like(a)
    ms = median_ms(lambda: b.copy_(a))
    CEIL["copy"] = 2 * nb / (ms * 1e6)
    row("ceiling: copy", "1024 MiB", ms, f"{CEIL['copy']:.0f} GB/s", "100")
    del a, b

    n = 8192
    x = torch.randn(n, n, dtype=bf, device=dev)
    y = torch.randn(n, n, dtype=bf, device=dev)
    ms = median_ms(lambda: x @ y)
    CEIL["gemm"] = fl("ceiling: gemm (torch.matmul bf16)", f"M{n} N{n} K{n}", ms, 2.0 * n ** 3)
    del x, y

    N, C, Fh, V = 8192, 4096, 14336, 128256
    B, T, NH, NKV, HD = 1, 8192, 32, 8, 128

    # RMSNorm
    x = torch.randn(N, C, dtype=bf, device=dev)
    w = torch.ones(C, dtype=bf, device=dev)
    if hasattr(F, "rms_norm"):
        fwd = lambda: F.rms_norm(x, (C,), w, 1e-5)
        label = "F.rms_norm"
    else:
        fwd = lambda: (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)).to(bf) * w
        label = "rmsnorm (manual)"
    ms = median_ms(fwd)
    bw(label + " fwd", f"N{N} C{C}", ms, 2.0 * N * C * 2 + C * 2)
    xr = x.detach().requires_grad_(True)
    wr = w.detach().requires_grad_(True)
    yv = F.rms_norm(xr, (C,), wr, 1e-5) if hasattr(F, "rms_norm") else fwd()
    gy = torch.randn_like(yv)
    if yv.requires_grad:
        ms = median_ms(lambda: torch.autograd.grad(yv, (xr, wr), gy, retain_graph=True))
        bw(label + " bwd", f"N{N} C{C}", ms, 4.0 * N * C * 2 + C * 2 + 8.0 * C)
    del x, w, xr, wr, yv, gy

    # SwiGLU (eager: silu(gate) * up)
    gu = torch.randn(N, 2 * Fh, dtype=bf, device=dev)
    ms = median_ms(lambda: F.silu(gu[:, :Fh]) * gu[:, Fh:])
    bw("silu(gate)*up fwd (eager)", f"N{N} F{Fh}", ms, 3.0 * N * Fh * 2)
    del gu

    # attention (SDPA, causal, GQA via enable_gqa when available, else K/V repeated)
    q = torch.randn(B, NH, T, HD, dtype=bf, device=dev, requires_grad=True)
    k = torch.randn(B, NKV, T, HD, dtype=bf, device=dev, requires_grad=True)
    v = torch.randn(B, NKV, T, HD, dtype=bf, device=dev, requires_grad=True)
    try:
        F.scaled_dot_product_attention(q[:, :, :8], k[:, :, :8], v[:, :, :8], is_causal=True, enable_gqa=True)
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        gqa = "enable_gqa"
    except TypeError:
        rep = NH // NKV
        sdpa = lambda: F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=True)
        gqa = "repeat_interleave"
    flops = 4.0 * B * T * T * NH * HD / 2
    shape = f"B{B} T{T} NH{NH} NKV{NKV} HD{HD} ({gqa})"
    with torch.no_grad():
        ms = median_ms(sdpa)
    fl("sdpa causal fwd", shape, ms, flops)
    o = sdpa()
    go = torch.randn_like(o)
    ms = median_ms(lambda: torch.autograd.grad(o, (q, k, v), go, retain_graph=True))
    fl("sdpa causal bwd", shape, ms, 2.5 * flops)
    del q, k, v, o, go

    # cross-entropy (logits bf16 -> fp32 inside F.cross_entropy)
    logits = torch.randn(N, V, dtype=bf, device=dev)
    tg = torch.randint(0, V, (N,), device=dev)
    ms = median_ms(lambda: F.cross_entropy(logits.float(), tg))
    bw("F.cross_entropy fwd (bf16 logits)", f"N{N} V{V}", ms, 1.0 * N * V * 2)
    del logits

    # AdamW, fused (fp32 params, 200M)
    P = 200_000_000
    p = torch.nn.Parameter(torch.full((P,), 0.1, device=dev))
    p.grad = torch.full((P,), 0.01, device=dev)
    try:
        opt = torch.optim.AdamW([p], lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
        label = "AdamW fused"
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW([p], lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=True)
        label = "AdamW foreach"
    ms = median_ms(opt.step)
    bw(label + " (fp32, no bf16 copy)", f"n{P}", ms, 28.0 * P)
    del p, opt

    # model GEMMs
    for name, M, Nn, K in (("matmul qkv", N, (NH + 2 * NKV) * HD, C), ("matmul ffn up", N, 2 * Fh, C), ("matmul ffn down", N, C, Fh)):
        a = torch.randn(M, K, dtype=bf, device=dev)
        w = torch.randn(Nn, K, dtype=bf, device=dev)
        ms = median_ms(lambda: a @ w.t())
        fl(name, f"M{M} N{Nn} K{K}", ms, 2.0 * M * Nn * K)
        del a, w
    return 0


if __name__ == "__main__":
    sys.exit(main())
