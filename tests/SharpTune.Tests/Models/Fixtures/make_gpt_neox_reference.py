#!/usr/bin/python3
"""Tiny random GPT-NeoX checkpoints and their logits, as an independent reference for SharpTune's GPTNeoXForCausalLM.

The forward below is transformers' modeling_gpt_neox.py (huggingface/transformers, GPTNeoXAttention / GPTNeoXMLP /
GPTNeoXLayer / GPTNeoXModel / GPTNeoXForCausalLM, commit 006bd23dd0ce18d54e1cf260b09b15fa943a731d) written out in
plain PyTorch, computed in float64:
  - query_key_value's output viewed as (B, T, heads, 3 * head_size), then q, k, v split per head;
  - rotary on the first rotary_ndims = int(head_size * rotary_pct) dims of q and k (rotate_half), base rotary_emb_base;
  - scores q.k^T * head_size^-0.5, causal mask, softmax, dense;
  - use_parallel_residual: x + attn(ln1(x)) + mlp(ln2(x)); otherwise h = x + attn(ln1(x)); h + mlp(ln2(h));
  - MLP dense_h_to_4h -> exact (erf) GELU -> dense_4h_to_h; final_layer_norm; untied embed_out.
Weights are rounded to float32 and saved as safetensors with HF names (reference_io.py, beside this script, writes
them by hand); the forward then runs in float64 on those float32 values.

gpt_neox_tied_head128 is one head of 128 with rotary_pct 0.25 (32 rotated dims, the size the cached decode's RoPE
step tables take), no attention biases and a tied head (tie_word_embeddings: logits = hidden . embed_in^T), stored in
bfloat16 to stay small; its EXPECTED.json adds, per prompt, the logits at every position from the prompt's last to
the one before the last greedy token (what each cached decode step must give), from one causal forward over the
prompt and its greedy continuation.

Run: /usr/bin/python3 make_gpt_neox_reference.py (needs Debian's python3-torch); writes gpt_neox_parallel/,
gpt_neox_sequential/ and gpt_neox_tied_head128/ beside this script.
"""
import math
import os

import torch

from reference_io import write_fixture
from reference_ops import layer_norm, rotary_tables, rotate_half

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8


def config_for(parallel, heads, rotary_pct, hidden=32, ffn=64, layers=2, bias=True, tied=False, dtype="float32"):
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": 64,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "rotary_pct": rotary_pct,
        "rotary_emb_base": 10000,
        "max_position_embeddings": 256,
        "layer_norm_eps": 1e-5,
        "use_parallel_residual": parallel,
        "attention_bias": bias,
        "tie_word_embeddings": tied,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "torch_dtype": dtype,
    }


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]

    def normal(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"gpt_neox.embed_in.weight": normal(v, h, std=0.5)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"gpt_neox.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "input_layernorm.bias"] = normal(h, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "post_attention_layernorm.bias"] = normal(h, std=0.1)
        w[p + "attention.query_key_value.weight"] = normal(3 * h, h)
        if cfg["attention_bias"]:
            w[p + "attention.query_key_value.bias"] = normal(3 * h, std=0.1)
        w[p + "attention.dense.weight"] = normal(h, h)
        if cfg["attention_bias"]:
            w[p + "attention.dense.bias"] = normal(h, std=0.1)
        w[p + "mlp.dense_h_to_4h.weight"] = normal(ffn, h)
        w[p + "mlp.dense_h_to_4h.bias"] = normal(ffn, std=0.1)
        w[p + "mlp.dense_4h_to_h.weight"] = normal(h, ffn, std=0.1)
        w[p + "mlp.dense_4h_to_h.bias"] = normal(h, std=0.1)
    w["gpt_neox.final_layer_norm.weight"] = 1 + normal(h, std=0.1)
    w["gpt_neox.final_layer_norm.bias"] = normal(h, std=0.1)
    if not cfg["tie_word_embeddings"]:
        w["embed_out.weight"] = normal(v, h, std=0.3)
    if cfg["torch_dtype"] == "bfloat16":
        w = {k: t.bfloat16() for k, t in w.items()}
    return w




def forward(cfg, w, ids):
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = h // heads
    rot = int(hd * cfg["rotary_pct"])
    eps = cfg["layer_norm_eps"]
    W = {k: t.double() for k, t in w.items()}
    t = len(ids)
    x = W["gpt_neox.embed_in.weight"][torch.tensor(ids)].unsqueeze(0)                          # (1, T, C)
    cos, sin = rotary_tables(cfg["rotary_emb_base"], rot, t)                                                  # (T, rot)
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(cfg["num_hidden_layers"]):
        p = f"gpt_neox.layers.{i}."
        a_in = layer_norm(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)
        qkv = a_in @ W[p + "attention.query_key_value.weight"].T + W.get(p + "attention.query_key_value.bias", 0.0)
        qkv = qkv.view(1, t, heads, 3 * hd)                                                       # per-head interleave
        q = qkv[..., :hd].permute(0, 2, 1, 3)
        k = qkv[..., hd: 2 * hd].permute(0, 2, 1, 3)
        v = qkv[..., 2 * hd:].permute(0, 2, 1, 3)
        q = torch.cat((q[..., :rot] * cos + rotate_half(q[..., :rot]) * sin, q[..., rot:]), dim=-1)
        k = torch.cat((k[..., :rot] * cos + rotate_half(k[..., :rot]) * sin, k[..., rot:]), dim=-1)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
        scores = scores.masked_fill(~causal, float("-inf"))
        attn = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(1, t, h)
        attn = attn @ W[p + "attention.dense.weight"].T + W.get(p + "attention.dense.bias", 0.0)

        def mlp(y):
            y = y @ W[p + "mlp.dense_h_to_4h.weight"].T + W[p + "mlp.dense_h_to_4h.bias"]
            y = 0.5 * y * (1.0 + torch.erf(y / math.sqrt(2.0)))                                    # ACT2FN["gelu"]
            return y @ W[p + "mlp.dense_4h_to_h.weight"].T + W[p + "mlp.dense_4h_to_h.bias"]

        ln2 = (W[p + "post_attention_layernorm.weight"], W[p + "post_attention_layernorm.bias"])
        if cfg["use_parallel_residual"]:
            x = x + attn + mlp(layer_norm(x, *ln2, eps))
        else:
            x = x + attn
            x = x + mlp(layer_norm(x, *ln2, eps))
    x = layer_norm(x, W["gpt_neox.final_layer_norm.weight"], W["gpt_neox.final_layer_norm.bias"], eps)
    head = W["gpt_neox.embed_in.weight"] if cfg["tie_word_embeddings"] else W["embed_out.weight"]
    return x @ head.T                                                                             # (1, T, V)


def main():
    # Parallel residual with 2 heads of 16 (4 dims rotate), sequential with 4 heads of 8 (4 dims rotate).
    # The third: one head of 128, 32 dims rotate, one layer, no attention biases, tied, bfloat16 weights.
    for name, cfg, seed, step_logits in [
            ("gpt_neox_parallel", config_for(True, 2, 0.25), 1234, False),
            ("gpt_neox_sequential", config_for(False, 4, 0.5), 4321, False),
            ("gpt_neox_tied_head128", config_for(True, 1, 0.25, hidden=128, ffn=64, layers=1, bias=False, tied=True,
                                                 dtype="bfloat16"), 2468, True)]:
        write_fixture(os.path.join(HERE, name), cfg, random_weights(cfg, seed), forward, PROMPTS, GREEDY_TOKENS, step_logits)


if __name__ == "__main__":
    main()
