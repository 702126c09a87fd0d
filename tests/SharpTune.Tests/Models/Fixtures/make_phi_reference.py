#!/usr/bin/python3
"""Tiny random Phi-1/Phi-1.5/Phi-2 checkpoints and their logits, as an independent reference for SharpTune's PhiForCausalLM.

The forward below is transformers' Phi (huggingface/transformers src/transformers/models/phi/modular_phi.py,
PhiAttention / PhiMLP / PhiDecoderLayer / PhiModel, commit b39782da06db496e7c2528808f42718e54157709, and
modeling_phi.py's PhiForCausalLM, commit 0faeaf39a9176bb1581969e51565851bfcc2dc98) written out in plain PyTorch,
computed in float64:
  - one input_layernorm (with bias) per layer; attention and MLP both read it; x = attn + mlp + x (parallel block);
  - q_proj, k_proj, v_proj (biases) viewed as (B, T, heads, head_dim) with head_dim = hidden_size / num_attention_heads;
    k and v have num_key_value_heads heads, repeated for the query heads that share them;
  - qk_layernorm: LayerNorm(head_dim) (weight and bias) on each head of q and k, before RoPE;
  - rotary on the first int(head_dim * partial_rotary_factor) dims of q and k (rotate_half), base rope_theta;
  - scores q.k^T * head_dim^-0.5, causal mask, softmax, dense (with bias);
  - MLP fc1 -> gelu_new (the tanh approximation) -> fc2, with biases; final_layernorm with bias;
  - lm_head with a bias; tie_word_embeddings ties only its weight to embed_tokens (the bias stays its own).
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py, beside this script, writes
them by hand); the forward then runs in float64 on those float32 values.

phi_qk_layernorm: 2 layers, 2 heads of 16, qk_layernorm, partial_rotary_factor 0.5 in transformers 5's
rope_parameters, untied lm_head, resid_pdrop/embd_pdrop 0.1 (inactive at inference).
phi_tied_gqa: 1 layer, 2 query heads of 32 sharing 1 key/value head, partial_rotary_factor 0.75 and rope_theta at the
top level (transformers 4's config.json form), tied embeddings with lm_head.bias, no lm_head.weight in the file.
phi_untied_mha: phi-2's shape in small — 2 layers, 4 heads of 16 with as many key/value heads, intermediate_size
4 x hidden_size, partial_rotary_factor 0.4 (6 of 16 dims) at the top level, no qk_layernorm, untied lm_head with its
bias: the form llama.cpp's phi2 runs as the converter writes it.
phi_rotary32_qkln_gqa: Phi-2's rotary size — 2 layers, 2 query heads of 80 sharing 1 key/value head,
partial_rotary_factor 0.4, so int(80 * 0.4) = 32 dims rotate as in Phi-1/1.5/2 (64 × 0.5, 80 × 0.4) — with
qk_layernorm over the grouped key/value heads, and rope_theta 2000 and the rotary share given only in rope_parameters
(the top-level fields, left out, would default to 10000 and 0.5).
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_phi_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures (all
of them without names) beside this script.
"""
import math
import os
import sys

import torch

from reference_io import write_named_fixtures
from reference_ops import layer_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def qk_layernorm_config():
    return {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "hidden_act": "gelu_new",
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "qk_layernorm": True,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attention_dropout": 0.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def tied_gqa_config():
    return {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "vocab_size": 64,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "gelu_new",
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "partial_rotary_factor": 0.75,
        "rope_theta": 500.0,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def untied_mha_config():
    return {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "vocab_size": 64,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "gelu_new",
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "partial_rotary_factor": 0.4,
        "rope_theta": 10000.0,
        "qk_layernorm": False,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def rotary32_qkln_gqa_config():
    return {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "vocab_size": 64,
        "hidden_size": 160,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "gelu_new",
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "qk_layernorm": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 2000.0, "partial_rotary_factor": 0.4},
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def rope_settings(cfg):
    rope = cfg.get("rope_parameters") or {}
    return rope.get("rope_theta", cfg.get("rope_theta", 10000.0)), rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 0.5))


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
        w[p + "input_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "input_layernorm.bias"] = normal(h, std=0.1)
        for name, rows in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, h)
            w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        w[p + "self_attn.dense.weight"] = normal(h, h)
        w[p + "self_attn.dense.bias"] = normal(h, std=0.1)
        if cfg.get("qk_layernorm"):
            for name in ("q_layernorm", "k_layernorm"):
                w[p + f"self_attn.{name}.weight"] = 1 + normal(hd, std=0.1)
                w[p + f"self_attn.{name}.bias"] = normal(hd, std=0.1)
        w[p + "mlp.fc1.weight"] = normal(ffn, h)
        w[p + "mlp.fc1.bias"] = normal(ffn, std=0.1)
        w[p + "mlp.fc2.weight"] = normal(h, ffn, std=0.1)
        w[p + "mlp.fc2.bias"] = normal(h, std=0.1)
    w["model.final_layernorm.weight"] = 1 + normal(h, std=0.1)
    w["model.final_layernorm.bias"] = normal(h, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(v, h, std=0.3)
    w["lm_head.bias"] = normal(v, std=0.3)
    return w




def gelu_new(y):
    return 0.5 * y * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * torch.pow(y, 3.0))))


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
        normed = layer_norm(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)

        def proj(name, y):
            return y @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        q = proj("self_attn.q_proj", normed).view(1, t, heads, hd).transpose(1, 2)
        k = proj("self_attn.k_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        if cfg.get("qk_layernorm"):
            q = layer_norm(q, W[p + "self_attn.q_layernorm.weight"], W[p + "self_attn.q_layernorm.bias"], eps)
            k = layer_norm(k, W[p + "self_attn.k_layernorm.weight"], W[p + "self_attn.k_layernorm.bias"], eps)
        q = torch.cat((q[..., :rot] * cos + rotate_half(q[..., :rot]) * sin, q[..., rot:]), dim=-1)
        k = torch.cat((k[..., :rot] * cos + rotate_half(k[..., :rot]) * sin, k[..., rot:]), dim=-1)
        k = k.repeat_interleave(heads // kv_heads, dim=1)                                         # repeat_kv
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
        scores = scores.masked_fill(~causal, float("-inf"))
        attn = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, t, h)
        attn = proj("self_attn.dense", attn)
        mlp = proj("mlp.fc2", gelu_new(proj("mlp.fc1", normed)))
        x = attn + mlp + x
    x = layer_norm(x, W["model.final_layernorm.weight"], W["model.final_layernorm.bias"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T + W["lm_head.bias"]                                                         # (1, T, V)


FIXTURES = [
    ("phi_qk_layernorm", qk_layernorm_config, 1357),
    ("phi_tied_gqa", tied_gqa_config, 8642),
    ("phi_untied_mha", untied_mha_config, 2468),
    ("phi_rotary32_qkln_gqa", rotary32_qkln_gqa_config, 2468),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
