#!/usr/bin/python3
"""Tiny random Gemma (1) checkpoints and their logits, as an independent reference for SharpTune's GemmaForCausalLM.

The forward below is transformers' Gemma (huggingface/transformers src/transformers/models/gemma/modeling_gemma.py,
GemmaRMSNorm / GemmaMLP / GemmaAttention / GemmaDecoderLayer / GemmaModel / GemmaForCausalLM, commit
c4cdd1a0d93642f0143c66609d4273efc74c22cf; configuration_gemma.py, commit 3676fc805228e63d9ae97b622d715af847c276c6)
written out in plain PyTorch, computed in float64:
  - GemmaModel: the embedding rows times torch.tensor(hidden_size ** 0.5, dtype=hidden_states.dtype) — the square root
    rounded to the model's dtype, float32 here (sqrt(24) = 4.898979... becomes 4.8989795);
  - GemmaRMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + weight) (eps rms_norm_eps), before attention (input_layernorm),
    before the MLP (post_attention_layernorm, despite its name) and at the end (model.norm);
  - pre-norm residuals: h = x + attn(input_layernorm(x)), out = h + mlp(post_attention_layernorm(h));
  - q_proj, k_proj, v_proj, o_proj (all four with biases when attention_bias) over heads of config.head_dim — not
    hidden_size / num_attention_heads —, num_key_value_heads key/value heads repeated for the query heads sharing them;
  - RoPE over the whole head (rotate_half), base rope_theta; scores q.k^T * head_dim^-0.5, causal mask, softmax;
  - GemmaMLP: down(act(gate(x)) * up(x)) without biases, act = ACT2FN[config.hidden_act] (this transformers no longer
    reads hidden_activation): "gelu_pytorch_tanh" the tanh form, "gelu" the exact (erf) form;
  - the final norm, then lm_head, tied to embed_tokens (tie_word_embeddings, GemmaConfig's default True).
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py writes them); the forward then
runs in float64 on those float32 values. The norms' weights are drawn around 0, since Gemma's norms scale by 1 + weight;
o_proj and down_proj are drawn wide enough that the blocks, not the scaled embedding the tied head reads back, decide
the greedy continuation (which otherwise repeats the prompt's last token).

gemma_mqa: 2 layers, hidden 24 (so sqrt(hidden) is not exact), 3 query heads of 16 (head_dim 16, not 24 / 3 = 8)
sharing 1 key/value head, gelu_pytorch_tanh (GemmaConfig's default), no biases, tied.
gemma_gqa_gelu: 2 layers, hidden 32, 4 query heads of 12 over 2 key/value heads, google/gemma-2b's published
hidden_act "gelu" (the exact GELU), attention_bias on q/k/v/o, rope_theta 500, tied.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_gemma_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures (all
of them without names) beside this script.
"""
import os
import sys

import torch

from reference_io import write_named_fixtures
from reference_ops import ACTIVATIONS, attend, rms_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def mqa_config():
    return {
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        "vocab_size": 64,
        "hidden_size": 24,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 3,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": None,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }


def gqa_gelu_config():
    cfg = mqa_config()
    cfg.update({
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 12,
        "hidden_act": "gelu",
        "rope_theta": 500.0,
        "attention_bias": True,
    })
    return cfg


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q_width = cfg["num_attention_heads"] * cfg["head_dim"]
    kv_width = cfg["num_key_value_heads"] * cfg["head_dim"]

    def normal(*shape, std=0.3):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"model.embed_tokens.weight": normal(v, h, std=0.3)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = normal(h, std=0.1)
        w[p + "post_attention_layernorm.weight"] = normal(h, std=0.1)
        for name, rows, cols in (("q_proj", q_width, h), ("k_proj", kv_width, h), ("v_proj", kv_width, h), ("o_proj", h, q_width)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, cols, std=0.5 if name == "o_proj" else 0.3)
            if cfg["attention_bias"]:
                w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        w[p + "mlp.gate_proj.weight"] = normal(ffn, h)
        w[p + "mlp.up_proj.weight"] = normal(ffn, h)
        w[p + "mlp.down_proj.weight"] = normal(h, ffn, std=0.5)
    w["model.norm.weight"] = normal(h, std=0.1)
    return w


def forward(cfg, w, ids):
    heads, kv_heads, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    act = ACTIVATIONS[cfg["hidden_act"]]
    W = {k: t.double() for k, t in w.items()}
    t = len(ids)
    normalizer = float(torch.tensor(cfg["hidden_size"] ** 0.5, dtype=torch.float32))                # in the model's dtype
    x = W["model.embed_tokens.weight"][torch.tensor(ids)].unsqueeze(0) * normalizer                # (1, T, C)
    cos, sin = rotary_tables(cfg["rope_theta"], hd, t)                                              # (T, hd)

    def norm(y, name):
        return rms_norm(y, 1.0 + W[name + ".weight"], eps)

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, y):
            out = y @ W[p + name + ".weight"].T
            return out + W[p + name + ".bias"] if p + name + ".bias" in W else out

        normed = norm(x, p + "input_layernorm")
        q = proj("self_attn.q_proj", normed).view(1, t, heads, hd).transpose(1, 2)
        k = proj("self_attn.k_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        x = x + proj("self_attn.o_proj", attend(q, k, v, hd ** -0.5))
        normed = norm(x, p + "post_attention_layernorm")
        x = x + proj("mlp.down_proj", act(proj("mlp.gate_proj", normed)) * proj("mlp.up_proj", normed))
    x = norm(x, "model.norm")
    return x @ W["model.embed_tokens.weight"].T                                                   # (1, T, V)


FIXTURES = [
    ("gemma_mqa", mqa_config, 6),
    ("gemma_gqa_gelu", gqa_gelu_config, 4),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
