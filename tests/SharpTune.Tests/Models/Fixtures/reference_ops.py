"""Operations the make_*_reference.py scripts share, written out in plain float64 PyTorch as transformers computes them
(rotate_half and the default rotary tables of modeling_rope_utils / each family's RotaryEmbedding, nn.LayerNorm)."""
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
