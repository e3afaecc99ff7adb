"""The Llama-3-8B-shaped stack of configs/gpu/llama3-8b-stack.yaml in PyTorch: the reference for midtrain's GPU
training throughput. Same precision policy as midtrain: fp32 master weights and AdamW state (torch fused AdamW),
bf16 compute (autocast), causal SDPA with GQA, RMSNorm, SwiGLU, rotate-half RoPE (theta 500000), untied LM head,
fp32 cross-entropy. Prints tokens/s and MFU (6N + causal attention FLOPs vs 989 TFLOP/s)."""
import math, time, torch
import torch.nn.functional as F

V, C, L, NH, NKV, FF, T, B = 128256, 4096, 4, 32, 8, 14336, 8192, 1
HD = C // NH
dev = "cuda"
torch.manual_seed(0)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(C, (NH + 2 * NKV) * HD, bias=False)
        self.o = torch.nn.Linear(NH * HD, C, bias=False)
        self.gate_up = torch.nn.Linear(C, 2 * FF, bias=False)
        self.down = torch.nn.Linear(FF, C, bias=False)
        self.n1 = torch.nn.Parameter(torch.ones(C))
        self.n2 = torch.nn.Parameter(torch.ones(C))

    def forward(self, x, cos, sin):
        h = F.rms_norm(x, (C,), self.n1, 1e-5)
        q, k, v = self.qkv(h).view(B, T, NH + 2 * NKV, HD).split([NH, NKV, NKV], dim=2)
        def rope(u):
            u1, u2 = u[..., : HD // 2], u[..., HD // 2:]
            return u * cos + torch.cat((-u2, u1), -1) * sin
        q, k = rope(q), rope(k)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, C))
        g, u = self.gate_up(F.rms_norm(x, (C,), self.n2, 1e-5)).chunk(2, -1)
        return x + self.down(F.silu(g) * u)


class Stack(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, C)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.norm = torch.nn.Parameter(torch.ones(C))
        self.head = torch.nn.Linear(C, V, bias=False)

    def forward(self, idx, tgt, cos, sin):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = self.head(F.rms_norm(x, (C,), self.norm, 1e-5))
        return F.cross_entropy(logits.float().view(-1, V), tgt.view(-1))


m = Stack().to(dev)
n_params = sum(p.numel() for p in m.parameters())
opt = torch.optim.AdamW(m.parameters(), lr=3e-5, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
inv = 1.0 / (500000.0 ** (torch.arange(0, HD, 2, device=dev, dtype=torch.float64) / HD))
ang = torch.outer(torch.arange(T, device=dev, dtype=torch.float64), inv)
cos = torch.cat((ang.cos(), ang.cos()), -1).float().to(torch.bfloat16)[None, :, None, :]
sin = torch.cat((ang.sin(), ang.sin()), -1).float().to(torch.bfloat16)[None, :, None, :]
data = torch.randint(0, V, (B, T + 1), device=dev)

def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = m(data[:, :-1], data[:, 1:], cos, sin)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

for _ in range(3):
    step()
torch.cuda.synchronize()
n = 10
t0 = time.perf_counter()
for _ in range(n):
    loss = step()
torch.cuda.synchronize()
dt = (time.perf_counter() - t0) / n
flops_tok = 6 * (n_params - V * C) + 6 * L * T * C
tps = B * T / dt
print("torch llama3-8b-shaped stack (L=%d, %.2fB params, seq %d, micro-batch %d): %.1f ms/step, %.0f tokens/s, MFU %.1f%% (loss %.3f, torch %s)"
      % (L, n_params / 1e9, T, B, dt * 1e3, tps, 100 * flops_tok * tps / 989e12, loss.item(), torch.__version__))
