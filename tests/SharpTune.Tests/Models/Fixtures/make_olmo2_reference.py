#!/usr/bin/python3
"""Tiny random OLMo 2 checkpoints and their logits, as an independent reference for SharpTune's Olmo2ForCausalLM.

The forward below is transformers' OLMo 2 (huggingface/transformers src/transformers/models/olmo2/modeling_olmo2.py,
Olmo2RMSNorm / Olmo2Attention / Olmo2MLP / Olmo2DecoderLayer / Olmo2Model / Olmo2ForCausalLM, commit
7264638d7b0ab5841670813ebed806189b8f7b71; configuration_olmo2.py, commit d9ba0a3fef608b3acf672f456b3462446f75bf17)
written out in plain PyTorch, computed in float64:
  - no norm before attention or the MLP: h = x + post_attention_layernorm(attn(x)),
    out = h + post_feedforward_layernorm(mlp(h));
  - q_proj, k_proj, v_proj, o_proj (all four with biases when attention_bias) over heads of head_dim
    (getattr(config, "head_dim", hidden_size // num_attention_heads));
  - q_norm / k_norm: RMSNorms over the whole projected queries and keys (heads * head_dim, kv_heads * head_dim wide),
    before the split into heads — not per head; every RMSNorm is x * rsqrt(mean(x^2) + eps) * weight (eps rms_norm_eps);
  - RoPE over the whole head (rotate_half), base rope_theta; num_key_value_heads key/value heads repeated for the query
    heads sharing them; scores q.k^T * head_dim^-0.5, causal mask, softmax;
  - Olmo2MLP: down(silu(gate(x)) * up(x)) without biases;
  - the final norm, then lm_head (tied to embed_tokens when tie_word_embeddings).
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py writes them); the forward then
runs in float64 on those float32 values.

olmo2_gqa: OLMo-2's form in small — 2 layers, 4 query heads of 8 over 2 key/value heads (k_norm 16 wide, q_norm 32),
no biases, untied lm_head, rope_theta 500.
olmo2_bias_head_dim: 2 layers, 4 query heads of 12 (head_dim given, not 32 / 4 = 8) over 1 key/value head,
attention_bias on q/k/v/o, tied.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_olmo2_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures (all
of them without names) beside this script.
"""
import os
import sys

import torch

from reference_io import write_named_fixtures
from reference_ops import attend, rms_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def gqa_config():
    return {
        "architectures": ["Olmo2ForCausalLM"],
        "model_type": "olmo2",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 500.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "pad_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def bias_head_dim_config():
    cfg = gqa_config()
    cfg.update({
        "num_key_value_heads": 1,
        "head_dim": 12,
        "rope_theta": 10000.0,
        "attention_bias": True,
        "tie_word_embeddings": True,
    })
    return cfg


def head_dim(cfg):
    return cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q_width = cfg["num_attention_heads"] * head_dim(cfg)
    kv_width = cfg["num_key_value_heads"] * head_dim(cfg)

    def normal(*shape, std=0.3):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"model.embed_tokens.weight": normal(v, h, std=0.3)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, rows, cols in (("q_proj", q_width, h), ("k_proj", kv_width, h), ("v_proj", kv_width, h), ("o_proj", h, q_width)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, cols)
            if cfg["attention_bias"]:
                w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        w[p + "self_attn.q_norm.weight"] = 1 + normal(q_width, std=0.1)
        w[p + "self_attn.k_norm.weight"] = 1 + normal(kv_width, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "post_feedforward_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "mlp.gate_proj.weight"] = normal(ffn, h)
        w[p + "mlp.up_proj.weight"] = normal(ffn, h)
        w[p + "mlp.down_proj.weight"] = normal(h, ffn)
    w["model.norm.weight"] = 1 + normal(h, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(v, h)
    return w


def forward(cfg, w, ids):
    heads, kv_heads, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    W = {k: t.double() for k, t in w.items()}
    t = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)].unsqueeze(0)                          # (1, T, C)
    cos, sin = rotary_tables(cfg["rope_theta"], hd, t)                                          # (T, hd)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, y):
            out = y @ W[p + name + ".weight"].T
            return out + W[p + name + ".bias"] if p + name + ".bias" in W else out

        q = rms_norm(proj("self_attn.q_proj", x), W[p + "self_attn.q_norm.weight"], eps).view(1, t, heads, hd).transpose(1, 2)
        k = rms_norm(proj("self_attn.k_proj", x), W[p + "self_attn.k_norm.weight"], eps).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", x).view(1, t, kv_heads, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        x = x + rms_norm(proj("self_attn.o_proj", attend(q, k, v, hd ** -0.5)), W[p + "post_attention_layernorm.weight"], eps)
        mlp = proj("mlp.down_proj", torch.nn.functional.silu(proj("mlp.gate_proj", x)) * proj("mlp.up_proj", x))
        x = x + rms_norm(mlp, W[p + "post_feedforward_layernorm.weight"], eps)
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T                                                                             # (1, T, V)


FIXTURES = [
    ("olmo2_gqa", gqa_config, 2),
    ("olmo2_bias_head_dim", bias_head_dim_config, 2),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
