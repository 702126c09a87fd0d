#!/usr/bin/python3
"""Tiny random StableLM checkpoints and their logits, as an independent reference for SharpTune's StableLmForCausalLM.

The forward below is transformers' StableLM (huggingface/transformers src/transformers/models/stablelm/
modeling_stablelm.py, StableLmAttention / StableLmLayerNormPerHead / StableLmMLP / StableLmDecoderLayer / StableLmModel /
StableLmForCausalLM, commit 00dcc6dda6f6d8e69541a6b51f97986a80242367; configuration_stablelm.py, commit
05cd1ec14dbe16127778060fb68c34105873015c) written out in plain PyTorch, computed in float64:
  - input_layernorm (LayerNorm with bias, eps layer_norm_eps) per layer;
    use_parallel_residual: x + attn(ln(x)) + mlp(ln(x)), the one norm feeding both (no post_attention_layernorm);
    otherwise h = x + attn(ln(x)), then h + mlp(post_attention_layernorm(h));
  - q_proj, k_proj, v_proj (biases when use_qkv_bias) viewed as (B, T, heads, head_dim), head_dim = hidden / heads;
    k and v have num_key_value_heads heads, repeated for the query heads that share them; o_proj has no bias;
  - qk_layernorm: StableLmLayerNormPerHead — a LayerNorm(head_dim) of its own per head (weight only, no bias), on q
    (num_attention_heads norms) and k (num_key_value_heads norms), before RoPE;
  - rotary on the first int(head_dim * partial_rotary_factor) dims of q and k (rotate_half), base rope_theta;
  - scores q.k^T / sqrt(head_dim), causal mask, softmax;
  - MLP down(silu(gate(x)) * up(x)) without biases; model.norm LayerNorm with bias; lm_head without bias (tied to
    embed_tokens when tie_word_embeddings).
hidden_dropout (after the MLP) and attention_dropout are inactive at inference.
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py writes them); the forward then
runs in float64 on those float32 values.

stablelm_parallel_qkln: StableLM-2-12B's form in small — 2 layers, 2 query heads of 16 sharing 1 key/value head,
use_parallel_residual, qk_layernorm, use_qkv_bias, partial_rotary_factor 0.25 (4 of 16 dims), rope_theta 10000 and
the share in transformers 5's rope_parameters, untied lm_head.
stablelm_sequential: StableLM-2-1.6B / StableLM-3B's form in small — 2 layers, 2 heads of 16 (as many key/value
heads), sequential residual, no qk_layernorm, no q/k/v bias, partial_rotary_factor 0.5 (8 of 16 dims) and rope_theta 500 at the top
level (transformers 4's form), tied embeddings (no lm_head.weight in the file), hidden_dropout 0.1.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_stablelm_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures
(all of them without names) beside this script.
"""
import os
import sys

import torch

from reference_io import write_named_fixtures
from reference_ops import layer_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def parallel_qkln_config():
    return {
        "architectures": ["StableLmForCausalLM"],
        "model_type": "stablelm",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "use_qkv_bias": True,
        "qk_layernorm": True,
        "use_parallel_residual": True,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 2000.0, "partial_rotary_factor": 0.5},
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def sequential_config():
    return {
        "architectures": ["StableLmForCausalLM"],
        "model_type": "stablelm",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "use_qkv_bias": False,
        "qk_layernorm": False,
        "use_parallel_residual": False,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.0,
        "partial_rotary_factor": 0.5,
        "rope_theta": 500.0,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def rope_settings(cfg):
    rope = cfg.get("rope_parameters") or {}
    return rope.get("rope_theta", cfg.get("rope_theta", 10000.0)), rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 0.25))


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads

    def normal(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"model.embed_tokens.weight": normal(v, h, std=0.5)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "input_layernorm.bias"] = normal(h, std=0.1)
        if not cfg["use_parallel_residual"]:
            w[p + "post_attention_layernorm.weight"] = 1 + normal(h, std=0.1)
            w[p + "post_attention_layernorm.bias"] = normal(h, std=0.1)
        for name, rows in (("q_proj", heads * hd), ("k_proj", kv_heads * hd), ("v_proj", kv_heads * hd)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, h)
            if cfg["use_qkv_bias"]:
                w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        w[p + "self_attn.o_proj.weight"] = normal(h, h)
        if cfg["qk_layernorm"]:
            for name, count in (("q_layernorm", heads), ("k_layernorm", kv_heads)):
                for n in range(count):
                    w[p + f"self_attn.{name}.norms.{n}.weight"] = 1 + normal(hd, std=0.2)
        w[p + "mlp.gate_proj.weight"] = normal(ffn, h)
        w[p + "mlp.up_proj.weight"] = normal(ffn, h)
        w[p + "mlp.down_proj.weight"] = normal(h, ffn, std=0.1)
    w["model.norm.weight"] = 1 + normal(h, std=0.1)
    w["model.norm.bias"] = normal(h, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(v, h, std=0.3)
    return w




def per_head_layer_norm(x, W, prefix, eps):
    """StableLmLayerNormPerHead: head n of (B, heads, T, hd) through norms.n (weight only)."""
    return torch.cat([layer_norm(x[:, n:n + 1], W[f"{prefix}.norms.{n}.weight"], None, eps) for n in range(x.shape[1])], dim=1)


def forward(cfg, w, ids):
    h, heads, kv_heads = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    theta, share = rope_settings(cfg)
    rot = int(hd * share)
    eps = cfg["layer_norm_eps"]
    W = {k: t.double() for k, t in w.items()}
    t = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)].unsqueeze(0)                          # (1, T, C)
    cos, sin = rotary_tables(theta, rot, t)                                                  # (T, rot)
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, y):
            out = y @ W[p + name + ".weight"].T
            return out + W[p + name + ".bias"] if p + name + ".bias" in W else out

        normed = layer_norm(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)
        q = proj("self_attn.q_proj", normed).view(1, t, heads, hd).transpose(1, 2)
        k = proj("self_attn.k_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        if cfg["qk_layernorm"]:
            q = per_head_layer_norm(q, W, p + "self_attn.q_layernorm", eps)
            k = per_head_layer_norm(k, W, p + "self_attn.k_layernorm", eps)
        q = torch.cat((q[..., :rot] * cos + rotate_half(q[..., :rot]) * sin, q[..., rot:]), dim=-1)
        k = torch.cat((k[..., :rot] * cos + rotate_half(k[..., :rot]) * sin, k[..., rot:]), dim=-1)
        k = k.repeat_interleave(heads // kv_heads, dim=1)                                         # repeat_kv
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) / (hd ** 0.5)
        scores = scores.masked_fill(~causal, float("-inf"))
        attn = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, t, h)
        attn = proj("self_attn.o_proj", attn)

        def mlp(y):
            return proj("mlp.down_proj", torch.nn.functional.silu(proj("mlp.gate_proj", y)) * proj("mlp.up_proj", y))

        if cfg["use_parallel_residual"]:
            x = x + attn + mlp(normed)
        else:
            x = x + attn
            x = x + mlp(layer_norm(x, W[p + "post_attention_layernorm.weight"], W[p + "post_attention_layernorm.bias"], eps))
    x = layer_norm(x, W["model.norm.weight"], W["model.norm.bias"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T                                                                             # (1, T, V)


FIXTURES = [
    ("stablelm_parallel_qkln", parallel_qkln_config, 4247),
    ("stablelm_sequential", sequential_config, 2424),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
