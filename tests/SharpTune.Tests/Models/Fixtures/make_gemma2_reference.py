#!/usr/bin/python3
"""Tiny random Gemma 2 checkpoints and their logits, as an independent reference for SharpTune's Gemma2ForCausalLM.

The forward below is transformers' Gemma 2 (huggingface/transformers src/transformers/models/gemma2/modeling_gemma2.py,
Gemma2RMSNorm / Gemma2MLP / Gemma2Attention / eager_attention_forward / Gemma2DecoderLayer / Gemma2Model /
Gemma2ForCausalLM, commit 9a80143ca26066ee3266749a57c7b3850d8843be; configuration_gemma2.py, commit
19f5346140749359823ef26c4183bd8f1aed3db7) written out in plain PyTorch, computed in float64:
  - Gemma2Model: the embedding rows times torch.tensor(hidden_size ** 0.5, dtype=hidden_states.dtype), the square root
    rounded to the model's dtype (float32 here);
  - Gemma2RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + weight), eps rms_norm_eps;
  - sandwich norms: h = x + post_attention_layernorm(attn(input_layernorm(x))),
    out = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)));
  - q_proj, k_proj, v_proj, o_proj (all four with biases when attention_bias) over heads of config.head_dim,
    num_key_value_heads key/value heads repeated for the query heads sharing them; RoPE over the whole head
    (rotate_half), base rope_theta;
  - scores q.k^T * query_pre_attn_scalar^-0.5 (not head_dim^-0.5), then, when attn_logit_softcapping is set,
    cap * tanh(scores / cap), then the mask and softmax;
  - the even layers (Gemma2Attention: sliding_window if not bool(layer_idx % 2)) see only the last sliding_window keys —
    query i sees keys j with i - sliding_window < j <= i (Gemma2DecoderLayer's tril(..., diagonal=-sliding_window)) —,
    the odd layers every j <= i;
  - Gemma2MLP: down(act(gate(x)) * up(x)) without biases, act = ACT2FN[config.hidden_activation]
    ("gelu_pytorch_tanh" the tanh form, "gelu" the exact form);
  - the final norm, lm_head (tied to embed_tokens when tie_word_embeddings), then, when final_logit_softcapping is set,
    cap * tanh(logits / cap).
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py writes them); the forward then
runs in float64 on those float32 values. The norms' weights are drawn around 0, since Gemma's norms scale by 1 + weight.

gemma2_sliding_capped: 4 layers (0 and 2 slide), sliding_window 4 — crossed by both prompts and their continuations —,
2 query heads of 16 over hidden 24 sharing 1 key/value head, query_pre_attn_scalar 24 (not head_dim 16), soft caps
that bind (attn_logit_softcapping 1.5, final_logit_softcapping 2.5: removing either moves the logits far past the
tolerance), gelu_pytorch_tanh, tied.
gemma2_bias_uncapped: 2 layers (0 slides), sliding_window 6 — crossed by the long prompt only —, 4 query heads of 8
over hidden 32 and 2 key/value heads, query_pre_attn_scalar 8 (= head_dim), attention_bias on q/k/v/o, both soft caps
null, the exact "gelu", untied lm_head, rope_theta 500.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give).

Run: /usr/bin/python3 make_gemma2_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures
(all of them without names) beside this script.
"""
import os
import sys

import torch

from reference_io import write_named_fixtures
from reference_ops import ACTIVATIONS, attend, rms_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def sliding_capped_config():
    return {
        "architectures": ["Gemma2ForCausalLM"],
        "model_type": "gemma2",
        "vocab_size": 64,
        "hidden_size": 24,
        "intermediate_size": 48,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "query_pre_attn_scalar": 24,
        "sliding_window": 4,
        "attn_logit_softcapping": 1.5,
        "final_logit_softcapping": 2.5,
        "cache_implementation": "hybrid",
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }


def bias_uncapped_config():
    cfg = sliding_capped_config()
    cfg.update({
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "hidden_activation": "gelu",
        "hidden_act": "gelu",
        "rope_theta": 500.0,
        "attention_bias": True,
        "query_pre_attn_scalar": 8,
        "sliding_window": 6,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "tie_word_embeddings": False,
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
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"):
            w[p + norm + ".weight"] = normal(h, std=0.1)
        for name, rows, cols in (("q_proj", q_width, h), ("k_proj", kv_width, h), ("v_proj", kv_width, h), ("o_proj", h, q_width)):
            w[p + f"self_attn.{name}.weight"] = normal(rows, cols)
            if cfg["attention_bias"]:
                w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        w[p + "mlp.gate_proj.weight"] = normal(ffn, h)
        w[p + "mlp.up_proj.weight"] = normal(ffn, h)
        w[p + "mlp.down_proj.weight"] = normal(h, ffn)
    w["model.norm.weight"] = normal(h, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(v, h)
    return w


def forward(cfg, w, ids):
    heads, kv_heads, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    act = ACTIVATIONS[cfg["hidden_activation"]]
    scaling = cfg["query_pre_attn_scalar"] ** -0.5
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

        window = cfg["sliding_window"] if i % 2 == 0 else None
        normed = norm(x, p + "input_layernorm")
        q = proj("self_attn.q_proj", normed).view(1, t, heads, hd).transpose(1, 2)
        k = proj("self_attn.k_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        v = proj("self_attn.v_proj", normed).view(1, t, kv_heads, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        attn = attend(q, k, v, scaling, window=window, softcap=cfg["attn_logit_softcapping"])
        x = x + norm(proj("self_attn.o_proj", attn), p + "post_attention_layernorm")
        normed = norm(x, p + "pre_feedforward_layernorm")
        mlp = proj("mlp.down_proj", act(proj("mlp.gate_proj", normed)) * proj("mlp.up_proj", normed))
        x = x + norm(mlp, p + "post_feedforward_layernorm")
    x = norm(x, "model.norm")
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    logits = x @ head.T                                                                           # (1, T, V)
    cap = cfg["final_logit_softcapping"]
    return logits if cap is None else torch.tanh(logits / cap) * cap


FIXTURES = [
    ("gemma2_sliding_capped", sliding_capped_config, 6),
    ("gemma2_bias_uncapped", bias_uncapped_config, 4),
]


def main(names):
    write_named_fixtures(HERE, FIXTURES, names, random_weights, forward, PROMPTS, GREEDY_TOKENS)


if __name__ == "__main__":
    main(sys.argv[1:])
