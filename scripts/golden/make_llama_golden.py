#!/usr/bin/env python3
"""Writes the PyTorch golden fixtures that GoldenLlamaTest checks the Java engine against.

    python3 scripts/golden/make_llama_golden.py [FIXTURE.bin ...]   # Debian: apt-get install -y python3-torch (1.13 works)
    (no argument: every fixture; llama_rope_llama3.bin was written with torch 2.13 and cross-checked against
    transformers' own llama3 rope initialisation, which the script does whenever transformers is installed)

Outputs (committed; the Java tests never run Python):
    java/src/test/resources/golden/llama_gqa.bin   untied embeddings, GQA (4 q heads / 2 kv heads), 2 layers,
                                                   10 AdamW steps of 2 accumulated micro-batches each
    java/src/test/resources/golden/llama_tied.bin  tied embeddings, MQA (4 q heads / 1 kv head), 1 step
    java/src/test/resources/golden/llama_rope_llama3.bin  Llama-3.2 style: tied embeddings, GQA, rope_scaling
                                                   llama3 (Hugging Face's _compute_llama3_parameters), 4 steps

The model is written out independently and plainly with Hugging Face LlamaForCausalLM semantics: embedding,
L x [RMSNorm -> q,k,v projections -> rotate-half RoPE (base theta, llama3 frequency scaling when set) -> causal attention with k/v repeated per group
(repeat_interleave over heads, HF repeat_kv) -> o_proj -> residual -> RMSNorm -> down(silu(gate) * up) -> residual],
final RMSNorm, lm_head (or the embedding matrix when tied), mean token cross-entropy with ignore_index -100.

Precision: everything runs in float64 (weights are drawn in float32 and widened, so the fp32 engine starts from the
same values); tensors are stored as float32. The reference therefore carries no fp32 rounding of its own.

Training recipe replicated by the Java trainer: loss of a step = sum of token losses over its micro-batches / valid
target tokens of the whole step; global-norm clipping (torch.nn.utils.clip_grad_norm_); torch.optim.AdamW with two
groups (weight decay off for names containing "norm"); lr per step from linear warmup (step s <= warmup:
lr * s / warmup) then linear decay to min_lr at the last step. AdamW eps is 1e-4 rather than 1e-8: an fp32 engine's
gradient differs from this float64 one by ~1e-7 absolute, and AdamW's normalised update m / (sqrt(v) + eps) amplifies
that by up to 1/eps for elements whose gradient is near zero; 1e-4 keeps the 10-step comparison well conditioned.

Binary format (little-endian):
    8 bytes  magic b"MTGOLDEN"
    int32    version (1)
    int32    n = byte length of the JSON header
    n bytes  UTF-8 JSON: {"config": {...}, "tensors": [{"name", "dtype": "f32"|"i32", "shape": [...]}, ...]}
    then each tensor's elements in header order, row-major, no padding.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

IGNORE = -100
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "java", "src", "test", "resources", "golden")


def param_names(cfg):
    """Hugging Face names in the engine's slab order (ParamLayout)."""
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        names += [p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight",
                  p + "self_attn.o_proj.weight", p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight",
                  p + "mlp.down_proj.weight", p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    names.append("model.norm.weight")
    if not cfg["tied_embeddings"]:
        names.append("lm_head.weight")
    return names


def param_shape(cfg, name):
    C, V, F, HD = cfg["dim"], cfg["vocab_size"], cfg["ffn_dim"], cfg["dim"] // cfg["n_heads"]
    if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
        return [V, C]
    if "norm" in name:
        return [C]
    if "q_proj" in name:
        return [cfg["n_heads"] * HD, C]
    if "k_proj" in name or "v_proj" in name:
        return [cfg["n_kv_heads"] * HD, C]
    if "o_proj" in name:
        return [C, cfg["n_heads"] * HD]
    if "gate_proj" in name or "up_proj" in name:
        return [F, C]
    if "down_proj" in name:
        return [C, F]
    raise ValueError(name)


def init_params(cfg, gen):
    """float32 draws (norm weights around 1 so their gradients matter), widened to float64 leaf tensors."""
    params = {}
    for name in param_names(cfg):
        shape = param_shape(cfg, name)
        if "norm" in name:
            w = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float32)
        else:
            w = cfg["init_std"] * torch.randn(shape, generator=gen, dtype=torch.float32)
        params[name] = w.to(torch.float64).requires_grad_(True)
    return params


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def llama3_inv_freq(inv_freq, rs):
    """Hugging Face's _compute_llama3_parameters (transformers.modeling_rope_utils), written out in float64."""
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context_len / low, old_context_len / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low) / (high - low)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def check_against_transformers(cfg, inv_freq):
    """When transformers is installed, its own llama3 rope init must agree with the formula above."""
    try:
        from transformers import LlamaConfig
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    except ImportError:
        print("transformers not installed: llama3 inverse frequencies not cross-checked")
        return
    hf = LlamaConfig(hidden_size=cfg["dim"], num_attention_heads=cfg["n_heads"], num_key_value_heads=cfg["n_kv_heads"],
                     rope_theta=cfg["rope_theta"], rope_scaling=dict(cfg["rope_scaling"]),
                     max_position_embeddings=8 * cfg["rope_scaling"]["original_max_position_embeddings"])
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    err = (ref.double() - inv_freq).abs().max().item() / inv_freq.abs().max().item()
    print(f"llama3 inverse frequencies vs transformers: max rel diff {err:.2e} (transformers computes in float32)")
    assert err < 1e-6, err


def rope_tables(T, HD, theta, rope_scaling=None):
    inv_freq = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))      # [HD/2]
    if rope_scaling is not None:
        inv_freq = llama3_inv_freq(inv_freq, rope_scaling)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)                 # [T, HD/2]
    emb = torch.cat([freqs, freqs], dim=-1)                                             # [T, HD]
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def forward(cfg, P, inputs):
    """inputs: int64 [B, T] -> logits float64 [B, T, V]."""
    B, T = inputs.shape
    C, NH, NKV = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    HD, eps = C // NH, cfg["norm_eps"]
    cos, sin = rope_tables(T, HD, cfg["rope_theta"], cfg.get("rope_scaling"))
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    x = P["model.embed_tokens.weight"][inputs]                                          # [B, T, C]
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, T, NH, HD).transpose(1, 2)   # [B, NH, T, HD]
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, T, NKV, HD).transpose(1, 2)  # [B, NKV, T, HD]
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, T, NKV, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)                                       # [B, NH, T, HD]
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HD)                                 # [B, NH, T, T]
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, NH * HD)
        x = x + y @ P[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, P[p + "post_attention_layernorm.weight"], eps)
        g = h @ P[p + "mlp.gate_proj.weight"].T
        u = h @ P[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ P[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tied_embeddings"] else P["lm_head.weight"]
    return x @ head.T


def token_loss_sum(cfg, P, batch):
    """batch: int64 [B, T+1] -> (sum of token losses, valid targets, logits)."""
    logits = forward(cfg, P, batch[:, :-1])
    targets = batch[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum()), logits


def lr_at(opt, step):
    """1-based step -> learning rate (the engine's LrSchedule)."""
    lr, min_lr, warm, total = opt["lr"], opt["min_lr"], opt["warmup_steps"], opt["steps"]
    if step <= warm:
        return lr * step / warm
    if total == warm:
        return lr
    return lr - (lr - min_lr) * (step - warm) / (total - warm)


def make_batches(cfg, gen, steps, micro, B, T, ignore_last):
    """int32 [steps, micro, B, T+1]: a noisy repeating pattern (learnable), some last targets ignored."""
    V = cfg["vocab_size"]
    toks = torch.randint(0, V, (steps, micro, B, T + 1), generator=gen, dtype=torch.int64)
    period = 5
    base = torch.randint(0, V, (period,), generator=gen, dtype=torch.int64)
    keep = torch.rand((steps, micro, B, T + 1), generator=gen) < 0.6
    pattern = base[torch.arange(T + 1) % period].expand(steps, micro, B, T + 1)
    toks = torch.where(keep, pattern, toks)
    if ignore_last:
        toks[0, 1, 1, T] = IGNORE        # step 1, micro-batch 1, row 1: its last target is ignored
        toks[3, 0, 2, T] = IGNORE
    return toks


class Writer:
    def __init__(self, cfg):
        self.cfg, self.entries = cfg, []

    def add(self, name, t, dtype="f32"):
        a = t.detach().cpu().numpy()
        a = a.astype("<f4" if dtype == "f32" else "<i4")
        self.entries.append((name, dtype, list(a.shape), a.tobytes()))

    def write(self, path):
        header = json.dumps({"config": self.cfg,
                             "tensors": [{"name": n, "dtype": d, "shape": s} for n, d, s, _ in self.entries]},
                            separators=(",", ":")).encode()
        with open(path, "wb") as f:
            f.write(b"MTGOLDEN")
            f.write(struct.pack("<ii", 1, len(header)))
            f.write(header)
            for _, _, _, data in self.entries:
                f.write(data)
        print(f"wrote {path}: {os.path.getsize(path)} bytes, {len(self.entries)} tensors")


def make_fixture(cfg, opt, path, seed):
    gen = torch.Generator().manual_seed(seed)
    steps, micro, B, T = opt["steps"], opt["micro_batches"], cfg["batch"], cfg["seq_len"]
    P = init_params(cfg, gen)
    names = param_names(cfg)
    batches = make_batches(cfg, gen, steps, micro, B, T, ignore_last=micro > 1)
    w = Writer({"model": cfg, "optimizer": opt, "ignore_index": IGNORE})
    w.add("tokens", batches, "i32")
    for n in names:
        w.add("init." + n, P[n])

    # logits and loss of the first micro-batch alone
    loss_sum, valid, logits = token_loss_sum(cfg, P, batches[0, 0])
    w.add("logits0", logits)
    w.add("loss0", (loss_sum / valid).reshape(1))

    decay = [P[n] for n in names if "norm" not in n]
    no_decay = [P[n] for n in names if "norm" in n]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": opt["weight_decay"]},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    losses, norms, lrs = [], [], []
    for s in range(steps):
        optim.zero_grad(set_to_none=False)
        valid = int((batches[s, :, :, 1:] != IGNORE).sum())
        total = 0.0
        for mb in range(micro):
            loss_sum, _, _ = token_loss_sum(cfg, P, batches[s, mb])
            (loss_sum / valid).backward()                  # gradient accumulation: d(step loss)/d(token loss) = 1/valid
            total += loss_sum.item()
        if s == 0:
            for n in names:
                w.add("grad." + n, P[n].grad)
        norm = torch.nn.utils.clip_grad_norm_([P[n] for n in names], opt["grad_clip_norm"])
        lr = lr_at(opt, s + 1)
        for g in optim.param_groups:
            g["lr"] = lr
        optim.step()
        losses.append(total / valid)
        norms.append(norm.item())
        lrs.append(lr)
        print(f"step {s + 1:2d}  loss {total / valid:.6f}  grad norm {norm.item():.4f}  "
              f"{'clipped' if norm.item() > opt['grad_clip_norm'] else '       '}  lr {lr:.5f}")
    w.add("losses", torch.tensor(losses))
    w.add("grad_norms", torch.tensor(norms))
    w.add("lrs", torch.tensor(lrs))
    for n in names:
        w.add("final." + n, P[n])
    w.write(path)


def main():
    """Writes every fixture, or only those named on the command line (e.g. llama_rope_llama3.bin)."""
    torch.set_default_dtype(torch.float64)
    os.makedirs(OUT_DIR, exist_ok=True)
    only = set(sys.argv[1:])
    want = lambda name: not only or name in only
    gqa = dict(vocab_size=61, dim=40, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=45, rope_theta=10000.0,
               norm_eps=1e-5, tied_embeddings=False, seq_len=11, batch=3, init_std=0.1)
    opt = dict(lr=1e-2, min_lr=1e-3, warmup_steps=3, steps=10, beta1=0.9, beta2=0.95, eps=1e-4,
               weight_decay=0.1, grad_clip_norm=1.5, micro_batches=2)
    if want("llama_gqa.bin"):
        make_fixture(gqa, opt, os.path.join(OUT_DIR, "llama_gqa.bin"), seed=20240601)

    tied = dict(vocab_size=37, dim=32, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=29, rope_theta=500000.0,
                norm_eps=1e-6, tied_embeddings=True, seq_len=7, batch=2, init_std=0.2)
    opt_tied = dict(opt, steps=3, warmup_steps=1, micro_batches=1, grad_clip_norm=8.5)
    if want("llama_tied.bin"):
        make_fixture(tied, opt_tied, os.path.join(OUT_DIR, "llama_tied.bin"), seed=7)

    # Llama-3.2-style: tied embeddings, GQA, rope_scaling llama3. original_max_position_embeddings 16 puts the
    # wavelengths of HD 10 / theta 1e4 (6.3, 40, 250, 1579, 9934) in both scaled bands: the first is interpolated
    # (between 16/4 and 16/1), the others are divided by the factor.
    rs = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16)
    scaled = dict(vocab_size=53, dim=40, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=36, rope_theta=10000.0,
                  norm_eps=1e-5, tied_embeddings=True, seq_len=13, batch=3, init_std=0.1, rope_scaling=rs)
    if want("llama_rope_llama3.bin"):
        base = 1.0 / (scaled["rope_theta"] ** (torch.arange(0, 10, 2, dtype=torch.float64) / 10))
        check_against_transformers(scaled, llama3_inv_freq(base, rs))
        opt_scaled = dict(opt, steps=4, warmup_steps=2, micro_batches=2, grad_clip_norm=2.0)
        make_fixture(scaled, opt_scaled, os.path.join(OUT_DIR, "llama_rope_llama3.bin"), seed=31)


if __name__ == "__main__":
    main()
