#!/usr/bin/python3
"""Tiny random gpt-oss checkpoints and their logits, as an independent reference for SharpTune's GptOssForCausalLM.

The forward below is transformers' GptOss (huggingface/transformers src/transformers/models/gpt_oss/modeling_gpt_oss.py
@00d4b3d2142cb4ced2f51b90614b5d26bc045015, configuration_gpt_oss.py @02b8f42b4240dddea1b27c45d2dc95fb2682f841, and the
YaRN frequencies of modeling_rope_utils.py's _compute_yarn_parameters) written out in plain PyTorch, in float64:
  - RMSNorm: x * rsqrt(mean(x^2) + eps) times the weight (input_layernorm, post_attention_layernorm, the final norm);
  - attention: q/k/v/o with biases, head_dim heads, key/value heads repeated for the query heads sharing them, RoPE
    (rotate_half form) with YaRN inverse frequencies and cos/sin times the attention factor 0.1 ln(factor) + 1;
    scores q.k^T * head_dim^-0.5 plus the causal mask (and, on sliding_attention layers, keys older than
    sliding_window positions hidden: kv_idx > q_idx - window), then the head's sink logit appended as one more column,
    softmax over the row, the sink column dropped, times v;
  - MLP: router logits = x W^T + b; top-k logits, softmax over those k; each chosen expert:
    gate_up = x @ gate_up_proj[e] + bias, gate = gate_up[..., ::2] clamped above at 7, up = gate_up[..., 1::2] clamped
    to [-7, 7], glu = gate * sigmoid(1.702 gate), out = ((up + 1) * glu) @ down_proj[e] + bias, weighted and summed;
  - lm_head untied, no bias.
Weights are rounded to float32 (reference_io.py writes them by hand); the forward then runs in float64 on them.

gpt_oss_tiny: 2 layers (sliding_attention with a window of 4, then full_attention, listed in layer_types), hidden 64,
4 query heads of 16 over 2 key/value heads, 4 experts of width 32 with top-2, YaRN factor 4 over 256 original positions (its ramp ends, 0.21 and 3.22, left unrounded),
beta_fast 32, beta_slow 1, truncate false, in rope_scaling with rope_theta at the top level (transformers 4's form);
non-zero sinks and biases; experts stored as float32 3D parameters.
gpt_oss_mxfp4: 3 layers (no layer_types: sliding, full, sliding by default) with a window of 3, YaRN given in
rope_parameters with rope_theta inside (transformers 5's form), truncate true, and the experts stored as the released
checkpoints store them: gate_up_proj_blocks / _scales and down_proj_blocks / _scales (uint8), with
quantization_config {"quant_method": "mxfp4"}. The reference decodes each 4-bit E2M1 code from its bits
(sign, 2 exponent bits, 1 mantissa bit) and each E8M0 scale as 2^(s - 127), independently of any lookup table.
Each EXPECTED.json holds, per prompt, the last-position logits, 8 greedy ids, and the logits at every position from
the prompt's last to the one before the last greedy token (what each cached decode step must give). gpt_oss_tiny also
gets EXPECTED_truncated_ramp.json: the last logits and greedy ids of the same weights with truncate true, the YaRN ramp
llama.cpp computes (it always rounds the ramp's ends outwards), for the GGUF export's llama.cpp checks, and
EXPECTED_all_sliding.json: the same with both layers sliding_attention (a layout llama.cpp's gpt-oss expresses with
attention.sliding_window_pattern 0 instead of its default 2).

Run: /usr/bin/python3 make_gpt_oss_reference.py [name ...] (needs Debian's python3-torch); writes the named fixtures
(all of them without names) beside this script.
"""
import json
import math
import os
import sys

import torch

from reference_io import write_expected, write_fixture

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 17, 42, 7, 59], [5, 1, 38, 23, 54, 12, 0, 47, 31, 45, 9, 60, 2]]
GREEDY_TOKENS = 8
TRUNCATED_RAMP_EXPECTED = "EXPECTED_truncated_ramp.json"
ALL_SLIDING_EXPECTED = "EXPECTED_all_sliding.json"


def base_config():
    return {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "vocab_size": 64,
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "attention_bias": True,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": 0,
        "eos_token_id": 63,
    }


def tiny_config():
    cfg = base_config()
    cfg.update({
        "num_hidden_layers": 2,
        "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": 4,
        "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                         "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False},
    })
    return cfg


def mxfp4_config():
    cfg = base_config()
    cfg.update({
        "num_hidden_layers": 3,
        "sliding_window": 3,
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 5000.0, "factor": 8.0, "original_max_position_embeddings": 128,
                            "beta_fast": 16.0, "beta_slow": 1.0, "truncate": True},
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
    })
    return cfg


def layer_types(cfg):
    return cfg.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(cfg["num_hidden_layers"])]


def rope_settings(cfg):
    if "rope_parameters" in cfg:
        return cfg["rope_parameters"], cfg["rope_parameters"]["rope_theta"]
    return cfg["rope_scaling"], cfg["rope_theta"]


def random_weights(cfg, seed, mxfp4):
    g = torch.Generator().manual_seed(seed)
    h, v, e, i = cfg["hidden_size"], cfg["vocab_size"], cfg["num_local_experts"], cfg["intermediate_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def normal(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).float()

    w = {"model.embed_tokens.weight": normal(v, h, std=1.0), "lm_head.weight": normal(v, h),
         "model.norm.weight": 1 + normal(h, std=0.1)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = 1 + normal(h, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(h, std=0.1)
        for name, rows, cols in [("q_proj", nh * hd, h), ("k_proj", nkv * hd, h), ("v_proj", nkv * hd, h), ("o_proj", h, nh * hd)]:
            w[p + f"self_attn.{name}.weight"] = normal(rows, cols, std=0.15)
            w[p + f"self_attn.{name}.bias"] = normal(rows, std=0.1)
        w[p + "self_attn.sinks"] = normal(nh, std=1.0)
        w[p + "mlp.router.weight"] = normal(e, h, std=0.3)
        w[p + "mlp.router.bias"] = normal(e, std=0.2)
        w[p + "mlp.experts.gate_up_proj_bias"] = normal(e, 2 * i, std=0.5)
        w[p + "mlp.experts.down_proj_bias"] = normal(e, h, std=0.1)
        if mxfp4:
            # (E, rows, groups, 16) codes and (E, rows, groups) exponents: rows are the output features, as stored.
            w[p + "mlp.experts.gate_up_proj_blocks"] = torch.randint(0, 256, (e, 2 * i, h // 32, 16), generator=g, dtype=torch.uint8)
            w[p + "mlp.experts.gate_up_proj_scales"] = torch.randint(124, 128, (e, 2 * i, h // 32), generator=g, dtype=torch.uint8)
            w[p + "mlp.experts.down_proj_blocks"] = torch.randint(0, 256, (e, h, i // 32, 16), generator=g, dtype=torch.uint8)
            w[p + "mlp.experts.down_proj_scales"] = torch.randint(121, 125, (e, h, i // 32), generator=g, dtype=torch.uint8)
        else:
            w[p + "mlp.experts.gate_up_proj"] = normal(e, h, 2 * i, std=0.6)
            w[p + "mlp.experts.down_proj"] = normal(e, i, h, std=0.15)
    return w


def e2m1(code):
    """A 4-bit E2M1 code's value from its bits: sign, exponent (bias 1; 0 = subnormal), one mantissa bit."""
    sign = -1.0 if code & 8 else 1.0
    exponent, mantissa = (code >> 1) & 3, code & 1
    magnitude = mantissa * 0.5 if exponent == 0 else (1 + mantissa * 0.5) * 2.0 ** (exponent - 1)
    return sign * magnitude


def dequantize(blocks, scales):
    """(E, R, G, 16) bytes and (E, R, G) exponents -> (E, G*32, R): byte j holds value 2j in its low nibble, 2j+1 high."""
    e, r, groups, _ = blocks.shape
    codes = torch.empty(e, r, groups, 32, dtype=torch.long)
    codes[..., 0::2] = (blocks & 0x0F).long()
    codes[..., 1::2] = (blocks >> 4).long()
    values = torch.tensor([e2m1(c) for c in range(16)], dtype=torch.float64)[codes]
    values = values * torch.pow(2.0, scales.double() - 127).unsqueeze(-1)
    return values.reshape(e, r, groups * 32).transpose(1, 2)


def expert_weights(w, p):
    if p + "mlp.experts.gate_up_proj" in w:
        return w[p + "mlp.experts.gate_up_proj"].double(), w[p + "mlp.experts.down_proj"].double()
    return (dequantize(w[p + "mlp.experts.gate_up_proj_blocks"], w[p + "mlp.experts.gate_up_proj_scales"]),
            dequantize(w[p + "mlp.experts.down_proj_blocks"], w[p + "mlp.experts.down_proj_scales"]))


def yarn(cfg):
    """_compute_yarn_parameters: inverse frequencies and the cos/sin factor."""
    scaling, base = rope_settings(cfg)
    dim = cfg["head_dim"]
    factor = scaling["factor"]
    original = scaling["original_max_position_embeddings"]
    attention_factor = 0.1 * math.log(factor) + 1.0

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(scaling["beta_fast"]), correction_dim(scaling["beta_slow"])
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation_share = 1 - ramp
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_share) + (1.0 / pos_freqs) * extrapolation_share
    return inv_freq, attention_factor


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def linear(x, w, b=None):
    y = x @ w.double().T
    return y + b.double() if b is not None else y


def forward(cfg, w, ids):
    nh, nkv, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
    k_top, limit, alpha = cfg["num_experts_per_tok"], 7.0, 1.702
    t = len(ids)
    x = w["model.embed_tokens.weight"].double()[torch.tensor(ids)].unsqueeze(0)     # (1, T, C)
    inv_freq, attention_factor = yarn(cfg)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)
    cos, sin = emb.cos() * attention_factor, emb.sin() * attention_factor            # (T, hd)
    q_pos, k_pos = torch.arange(t)[:, None], torch.arange(t)[None, :]
    for layer, kind in enumerate(layer_types(cfg)):
        p = f"model.layers.{layer}."
        visible = k_pos <= q_pos
        if kind == "sliding_attention":
            visible = visible & (k_pos > q_pos - cfg["sliding_window"])
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"]).view(1, t, nh, hd).transpose(1, 2)
        k = linear(h, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"]).view(1, t, nkv, hd).transpose(1, 2)
        v = linear(h, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"]).view(1, t, nkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5                                # (1, nh, T, T)
        scores = scores.masked_fill(~visible, float("-inf"))
        sinks = w[p + "self_attn.sinks"].double().view(1, nh, 1, 1).expand(1, nh, t, 1)
        probs = torch.softmax(torch.cat([scores, sinks], dim=-1), dim=-1)[..., :-1]
        attn = (probs @ v).transpose(1, 2).reshape(1, t, nh * hd)
        x = x + linear(attn, w[p + "self_attn.o_proj.weight"], w[p + "self_attn.o_proj.bias"])
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)[0]              # (T, C)
        logits = linear(h, w[p + "mlp.router.weight"], w[p + "mlp.router.bias"])
        top, chosen = logits.topk(k_top, dim=-1)
        weights = torch.softmax(top, dim=-1)
        gate_up_proj, down_proj = expert_weights(w, p)
        out = torch.zeros_like(h)
        for token in range(t):
            for slot in range(k_top):
                e = int(chosen[token, slot])
                gate_up = h[token] @ gate_up_proj[e] + w[p + "mlp.experts.gate_up_proj_bias"][e].double()
                gate = gate_up[0::2].clamp(max=limit)
                up = gate_up[1::2].clamp(min=-limit, max=limit)
                glu = gate * torch.sigmoid(gate * alpha)
                y = ((up + 1) * glu) @ down_proj[e] + w[p + "mlp.experts.down_proj_bias"][e].double()
                out[token] += weights[token, slot] * y
        x = x + out.unsqueeze(0)
    x = rms_norm(x, w["model.norm.weight"], eps)
    return linear(x, w["lm_head.weight"])


FIXTURES = {
    "gpt_oss_tiny": (tiny_config, 11, False),
    "gpt_oss_mxfp4": (mxfp4_config, 12, True),
}


def main(names):
    for name in names or FIXTURES:
        make_config, seed, mxfp4 = FIXTURES[name]
        cfg = make_config()
        weights = random_weights(cfg, seed, mxfp4)
        write_fixture(os.path.join(HERE, name), cfg, weights, forward, PROMPTS, GREEDY_TOKENS, step_logits=True)
        if not rope_settings(cfg)[0].get("truncate", True):
            # The same model with the YaRN ramp's ends rounded outwards, as llama.cpp always rotates (its GGUF export's check).
            truncated = json.loads(json.dumps(cfg))
            rope_settings(truncated)[0]["truncate"] = True
            write_expected(os.path.join(HERE, name, TRUNCATED_RAMP_EXPECTED), truncated, weights, forward, PROMPTS, GREEDY_TOKENS,
                           step_logits=False)
            # Every layer sliding, for the export of layer_types other than gpt-oss's alternation (llama.cpp's ramp as above).
            all_sliding = json.loads(json.dumps(truncated))
            all_sliding["layer_types"] = ["sliding_attention"] * all_sliding["num_hidden_layers"]
            write_expected(os.path.join(HERE, name, ALL_SLIDING_EXPECTED), all_sliding, weights, forward, PROMPTS, GREEDY_TOKENS,
                           step_logits=False)


if __name__ == "__main__":
    main(sys.argv[1:])
