"""Operations the make_*_reference.py scripts share, written out in plain float64 PyTorch as transformers computes them
(rotate_half and the default rotary tables of modeling_rope_utils / each family's RotaryEmbedding, nn.LayerNorm, the
T5-style RMSNorm, activations.py's GELUs, and eager_attention_forward with its causal / sliding-window mask)."""
import math

import torch


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotary_tables(theta, rot, t):
    """cos and sin (T, rot) of the default rope over the first rot dimensions of a head, positions 0 .. t-1."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot, 2, dtype=torch.int64).double() / rot))
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rms_norm(x, w, eps):
    """x * rsqrt(mean(x^2) + eps) * w (LlamaRMSNorm and its copies; Gemma's norms pass 1 + weight as w)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def gelu(x):
    """ACT2FN["gelu"]: the exact GELU, x * Phi(x)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """ACT2FN["gelu_pytorch_tanh"]: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


ACTIVATIONS = {"gelu": gelu, "gelu_pytorch_tanh": gelu_tanh, "silu": torch.nn.functional.silu}


def attend(q, k, v, scaling, window=None, softcap=None):
    """eager_attention_forward on (1, heads, T, hd) queries and (1, kv_heads, T, hd) keys and values: repeat_kv, scores
    q.k^T * scaling, soft-capped as softcap * tanh(scores / softcap) when softcap is given, then the causal mask — with a
    window, query i sees keys j with i - window < j <= i — and softmax. Returns (1, T, heads * hd)."""
    heads, t = q.shape[1], q.shape[2]
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    i_idx, j_idx = torch.arange(t).view(-1, 1), torch.arange(t).view(1, -1)
    visible = j_idx <= i_idx
    if window is not None:
        visible = visible & (j_idx > i_idx - window)
    scores = scores.masked_fill(~visible, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, t, -1)
