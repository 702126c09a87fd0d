"""The PyTorch peer of bench/SharpTune.Bench's training benchmark: the same Llama-style shapes (DESIGN.md §5 S and M),
random tokens, bf16 autocast, 2 threads, full fine-tuning or LoRA r8 on q/k/v/o. Debian 12's python3-torch (1.13) runs
it: `/usr/bin/python3 bench/pytorch-peer/train_peer.py M lora`. Prints tokens/s after warm-up steps."""
import math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {"S": dict(layers=4, d=256, ffn=688, heads=4, vocab=4096, batch=8),
           "M": dict(layers=12, d=768, ffn=2048, heads=12, vocab=32000, batch=4)}


class LoRALinear(nn.Module):
    def __init__(self, base, r=8, alpha=16):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.randn(r, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * self.w


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Block(nn.Module):
    def __init__(self, d, ffn, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, self.heads, -1).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, -1).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, -1).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.o(y)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, layers, d, ffn, heads, vocab, **_):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, ffn, heads) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        hd = d // heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        freqs = torch.outer(torch.arange(1024).float(), inv)
        emb = torch.cat([freqs, freqs], -1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, ids):
        t = ids.shape[1]
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.emb(ids)
        cos, sin = self.cos[:t], self.sin[:t]
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.head(self.norm(x))


def main():
    name, method = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    cfg = CONFIGS[name]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = Model(**cfg)
    if method == "lora":
        for p in model.parameters():
            p.requires_grad = False
        for block in model.blocks:
            for attr in ("q", "k", "v", "o"):
                setattr(block, attr, LoRALinear(getattr(block, attr)))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    batch, seq = cfg["batch"], 256
    times = []
    for step in range(steps):
        ids = torch.randint(3, cfg["vocab"], (batch, seq + 1))
        start = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, cfg["vocab"]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.time() - start)
    measured = times[2:]
    print(f"| {name} | {method} | bf16 autocast (PyTorch 1.13 peer) | {batch}×{seq} | {batch * seq * len(measured) / sum(measured):,.0f} |")


if __name__ == "__main__":
    main()
