#!/usr/bin/python3
"""Tiny random Granite checkpoints and their logits, as an independent reference for SharpTune's GraniteForCausalLM.

The forward below is transformers' Granite (huggingface/transformers src/transformers/models/granite/
modeling_granite.py, GraniteAttention / GraniteRMSNorm / GraniteMLP / GraniteDecoderLayer / GraniteModel /
GraniteForCausalLM, commit b6dd89b47daad100034ac4e3b7beb2101f07d7f1; configuration_granite.py, commit
90f2781aaf6cb2ba75e33a485edec50cbdcbdef5) written out in plain PyTorch, computed in float64:
  - GraniteModel: the embedding rows times embedding_multiplier;
  - GraniteRMSNorm: x * rsqrt(mean(x^2) + eps) * weight (eps rms_norm_eps), before attention (input_layernorm), before
    the MLP (post_attention_layernorm) and at the end (model.norm);
  - GraniteDecoderLayer: h = x + attn(input_layernorm(x)) * residual_multiplier,
    out = h + mlp(post_attention_layernorm(h)) * residual_multiplier;
  - q_proj, k_proj, v_proj, o_proj (all four with biases when attention_bias) over heads of hidden / num_attention_heads,
    num_key_value_heads key/value heads repeated for the query heads sharing them; RoPE over the whole head
    (rotate_half), base rope_theta;
  - scores q.k^T * attention_multiplier (GraniteAttention.scaling, in place of head_dim^-0.5), causal mask, softmax;
  - GraniteMLP: down(silu(gate(x)) * up(x)), gate/up/down with biases when mlp_bias;
  - the final norm, lm_head (tied to embed_tokens when tie_word_embeddings), then logits / logits_scaling.
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py writes them); the forward then
runs in float64 on those float32 values.

granite_bias_gqa: granite-3.3's multipliers (embedding 12, residual 0.22, attention 0.0625 = 1/16 where head_dim^-0.5
would be 0.35, logits_scaling 8), 2 layers, 4 query heads of 8 over 2 key/value heads, attention_bias and mlp_bias,
an untied lm_head (drawn wide: with residual_multiplier 0.22 the scaled embedding dominates the residual stream, and a
tied head would read it back and repeat the last token).
granite_plain: other multipliers (embedding 6, residual 0.5, attention 0.2, logits_scaling 2.5), 2 layers, 4 heads of 8
with as many key/value heads, no biases, tied as the published models, rope_theta 500.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_granite_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures
(all of them without names) beside this script.
"""
import os
import sys

import torch

from reference_io import write_named_fixtures
from reference_ops import attend, rms_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def bias_gqa_config():
    return {
        "architectures": ["GraniteForCausalLM"],
        "model_type": "granite",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": True,
        "mlp_bias": True,
        "attention_dropout": 0.0,
        "embedding_multiplier": 12.0,
        "residual_multiplier": 0.22,
        "attention_multiplier": 0.0625,
        "logits_scaling": 8.0,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def plain_config():
    cfg = bias_gqa_config()
    cfg.update({
        "num_key_value_heads": 4,
        "rope_theta": 500.0,
        "attention_bias": False,
        "mlp_bias": False,
        "embedding_multiplier": 6.0,
        "residual_multiplier": 0.5,
        "attention_multiplier": 0.2,
        "logits_scaling": 2.5,
        "tie_word_embeddings": True,
    })
    return cfg


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv_width = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])

    def normal(*shape, std=0.3):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"model.embed_tokens.weight": normal(v, h, std=0.15)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(h, std=0.1)
        for name, rows, cols in (("q_proj", h, h), ("k_proj", kv_width, h), ("v_proj", kv_width, h), ("o_proj", h, h)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, cols)
            if cfg["attention_bias"]:
                w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        for name, rows, cols in (("gate_proj", ffn, h), ("up_proj", ffn, h), ("down_proj", h, ffn)):
            w[p + f"mlp.{name}.weight"] = normal(rows, cols)
            if cfg["mlp_bias"]:
                w[p + f"mlp.{name}.bias"] = normal(rows, std=0.1)
    w["model.norm.weight"] = 1 + normal(h, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(v, h, std=1.0)
    return w


def forward(cfg, w, ids):
    h, heads, kv_heads = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    eps, residual = cfg["rms_norm_eps"], cfg["residual_multiplier"]
    W = {k: t.double() for k, t in w.items()}
    t = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)].unsqueeze(0) * cfg["embedding_multiplier"]   # (1, T, C)
    cos, sin = rotary_tables(cfg["rope_theta"], hd, t)                                                 # (T, hd)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, y):
            out = y @ W[p + name + ".weight"].T
            return out + W[p + name + ".bias"] if p + name + ".bias" in W else out

        normed = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = proj("self_attn.q_proj", normed).view(1, t, heads, hd).transpose(1, 2)
        k = proj("self_attn.k_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        x = x + proj("self_attn.o_proj", attend(q, k, v, cfg["attention_multiplier"])) * residual
        normed = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        mlp = proj("mlp.down_proj", torch.nn.functional.silu(proj("mlp.gate_proj", normed)) * proj("mlp.up_proj", normed))
        x = x + mlp * residual
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return (x @ head.T) / cfg["logits_scaling"]                                                      # (1, T, V)


FIXTURES = [
    ("granite_bias_gqa", bias_gqa_config, 3),
    ("granite_plain", plain_config, 3),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
