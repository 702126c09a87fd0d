#!/usr/bin/python3
"""Tiny random OLMo 3 checkpoints and their logits, as an independent reference for SharpTune's Olmo3ForCausalLM.

The forward below is transformers' OLMo 3 (huggingface/transformers src/transformers/models/olmo3/modular_olmo3.py,
commit 02e8340b967815b4a5417c6273a7774aae298a03, on OLMo 2's modeling_olmo2.py; the per-layer-type rotary split of the
transformers 4.57 form of modular_olmo3.py: Olmo3Model.rotary_embs, the sliding layers' built with rope_type "default")
written out in plain PyTorch, computed in float64:
  - no norm before attention or MLP: h = x + post_attention_layernorm(attn(x)), out = h + post_feedforward_layernorm(mlp(h));
  - q_norm / k_norm: RMSNorms over the whole projected queries and keys (heads * head_dim, kv_heads * head_dim wide),
    before the split into heads; every RMSNorm is x * rsqrt(mean(x^2) + eps) * weight (eps rms_norm_eps);
  - RoPE over the whole head (rotate_half), base rope_theta; with rope_scaling "linear" the full-attention layers divide
    their frequencies by the factor and the sliding layers rotate unscaled;
  - layer_types: by default sliding_attention except every fourth layer; a sliding layer's query at position i sees keys
    j with i - sliding_window < j <= i (create_sliding_window_causal_mask), a full layer's every j <= i;
  - scores q.k^T * head_dim^-0.5, softmax; MLP down(silu(gate(x)) * up(x)) without biases; no biases anywhere;
  - the final norm, then lm_head (untied).
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py writes them); the forward then
runs in float64 on those float32 values.

olmo3_sliding: 4 layers in OLMo 3's default pattern (three sliding, the fourth full), sliding_window 4 — crossed by
both prompts and their continuations —, 2 query heads of 8 sharing 1 key/value head, no rope_scaling.
olmo3_sliding_linear: the same shape with rope_scaling {"rope_type": "linear", "factor": 4.0} and layer_types given
explicitly (full, sliding, sliding, full), so the full layers rotate scaled and the sliding ones do not.
olmo3_sliding_yarn: olmo3_sliding with rope_scaling {"rope_type": "yarn", "factor": 4.0,
"original_max_position_embeddings": 64} (max_position_embeddings 256): the full layer rotates with YaRN (transformers'
_compute_yarn_parameters: with head_dim 8 and theta 500 the first pair extrapolates, the second ramps, the rest
interpolate, and cos/sin carry 0.1 ln 4 + 1), the sliding layers unscaled.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_olmo3_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures (all
of them without names) beside this script.
"""
import math
import os
import sys

import torch

from reference_io import write_named_fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def sliding_config():
    return {
        "architectures": ["Olmo3ForCausalLM"],
        "model_type": "olmo3",
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 500.0,
        "sliding_window": 4,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "pad_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def sliding_linear_config():
    cfg = sliding_config()
    cfg["rope_scaling"] = {"rope_type": "linear", "factor": 4.0}
    cfg["layer_types"] = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    return cfg


def sliding_yarn_config():
    cfg = sliding_config()
    # max_position_embeddings = factor * original context, so transformers' factor (which some versions take as that
    # ratio when original_max_position_embeddings is given) is 4 either way.
    cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    return cfg


def layer_types(cfg):
    return cfg.get("layer_types") or [
        "sliding_attention" if (i + 1) % 4 != 0 else "full_attention" for i in range(cfg["num_hidden_layers"])]


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd

    def normal(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"model.embed_tokens.weight": normal(v, h, std=0.5)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, rows in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, h)
        w[p + "self_attn.o_proj.weight"] = normal(h, h)
        w[p + "self_attn.q_norm.weight"] = 1 + normal(h, std=0.1)
        w[p + "self_attn.k_norm.weight"] = 1 + normal(kv, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "post_feedforward_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "mlp.gate_proj.weight"] = normal(ffn, h)
        w[p + "mlp.up_proj.weight"] = normal(ffn, h)
        w[p + "mlp.down_proj.weight"] = normal(h, ffn, std=0.1)
    w["model.norm.weight"] = 1 + normal(h, std=0.1)
    w["lm_head.weight"] = normal(v, h, std=0.3)
    return w


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotation(t, hd, theta, factor):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).double() / hd)) / factor
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()                                                                   # (T, hd)


def yarn_rotation(t, hd, theta, scaling):
    """transformers' _compute_yarn_parameters (modeling_rope_utils.py) with beta_fast 32, beta_slow 1, truncate: the
    frequencies ramp from extrapolated (fast pairs) to interpolated by the factor (slow pairs) between the correction
    dimensions of the original context, and cos/sin carry the attention factor 0.1 ln(factor) + 1."""
    factor, original = scaling["factor"], scaling["original_max_position_embeddings"]

    def correction_dim(rotations):
        return (hd * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = max(math.floor(correction_dim(32)), 0), min(math.ceil(correction_dim(1)), hd - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(hd // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    pos_freqs = theta ** (torch.arange(0, hd, 2, dtype=torch.int64).double() / hd)
    extrapolation = 1 - ramp
    inv_freq = (1 / (factor * pos_freqs)) * (1 - extrapolation) + (1 / pos_freqs) * extrapolation
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    attention_factor = 0.1 * math.log(factor) + 1
    return emb.cos() * attention_factor, emb.sin() * attention_factor


def forward(cfg, w, ids):
    h, heads, kv_heads = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    eps, window = cfg["rms_norm_eps"], cfg["sliding_window"]
    scaling = cfg.get("rope_scaling") or {}
    factor = scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear" else 1.0
    W = {k: t.double() for k, t in w.items()}
    t = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)].unsqueeze(0)                          # (1, T, C)
    full = yarn_rotation(t, hd, cfg["rope_theta"], scaling) if scaling.get("rope_type") == "yarn" \
        else rotation(t, hd, cfg["rope_theta"], factor)
    rotations = {"full_attention": full,
                 "sliding_attention": rotation(t, hd, cfg["rope_theta"], 1.0)}
    i_idx, j_idx = torch.arange(t).view(-1, 1), torch.arange(t).view(1, -1)
    masks = {"full_attention": j_idx <= i_idx, "sliding_attention": (j_idx <= i_idx) & (j_idx > i_idx - window)}
    for i, kind in enumerate(layer_types(cfg)):
        p = f"model.layers.{i}."

        def proj(name, y):
            return y @ W[p + name + ".weight"].T

        cos, sin = rotations[kind]
        q = rms_norm(proj("self_attn.q_proj", x), W[p + "self_attn.q_norm.weight"], eps).view(1, t, heads, hd).transpose(1, 2)
        k = rms_norm(proj("self_attn.k_proj", x), W[p + "self_attn.k_norm.weight"], eps).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", x).view(1, t, kv_heads, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=1)                                         # repeat_kv
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
        scores = scores.masked_fill(~masks[kind], float("-inf"))
        attn = proj("self_attn.o_proj", (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, t, h))
        x = x + rms_norm(attn, W[p + "post_attention_layernorm.weight"], eps)
        mlp = proj("mlp.down_proj", torch.nn.functional.silu(proj("mlp.gate_proj", x)) * proj("mlp.up_proj", x))
        x = x + rms_norm(mlp, W[p + "post_feedforward_layernorm.weight"], eps)
    x = rms_norm(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T                                                              # (1, T, V)


FIXTURES = [
    ("olmo3_sliding", sliding_config, 3131),
    ("olmo3_sliding_linear", sliding_linear_config, 1313),
    ("olmo3_sliding_yarn", sliding_yarn_config, 3113),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
