#!/usr/bin/python3
"""A PEFT LoRA adapter on gpt_oss_tiny's fused expert parameters (target_parameters) and attention, and the logits it
gives, as an independent reference for SharpTune's LoRA on gpt-oss experts.

The adapter is written in the layout PEFT saves (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
src/peft/tuners/lora/layer.py ParamWrapper and tuners_utils.py BaseTuner._inject_parameters, with transformers 5's
GptOssExperts, whose is_transposed=True keeps a 3-D parameter's order (experts, in, out)):
  - lora_A.weight is nn.Linear(in, r * experts).weight, shape (r * E, in); lora_B.weight is nn.Linear(r * E, out).weight,
    shape (out, r * E);
  - the update is get_delta_weight's einsum("o r e, e r i -> e i o", B.reshape(out, r, E), A.reshape(E, r, in)) times
    lora_alpha / r, added to the parameter (_LoraParameterProxy: W + delta);
  - one ParamWrapper per targeted parameter, nested in the experts module's parameter order, gate_up_proj innermost:
    gate_up_proj's factors under mlp.experts.base_layer.lora_A/B.weight, down_proj's under mlp.experts.lora_A/B.weight;
  - q_proj and o_proj get ordinary LoRA (W + s * B A), keys self_attn.q_proj.lora_A.weight …;
  - rank_pattern {"down_proj": 4} gives down_proj rank 4 (matched against the parameter's full name), scaling 6 / 4.
The logits come from make_gpt_oss_reference.py's float64 forward over the gpt_oss_tiny weights with the updates added.

Run: /usr/bin/python3 make_gpt_oss_lora_reference.py (needs Debian's python3-torch); writes gpt_oss_tiny_expert_lora/
beside this script: adapter_config.json, adapter_model.safetensors and EXPECTED.json (per prompt: input ids,
last-position logits, 4 greedy ids). The prompts are make_gpt_oss_reference.py's and one of 128 tokens, which routes more
than 32 tokens to each expert: enough that SharpTune forms W + ΔW per expert on a long prefill (its inference shortcut)
instead of the low-rank products.
"""
import json
import os

import torch

from make_gpt_oss_reference import HERE, PROMPTS, forward, random_weights, tiny_config
from reference_io import write_safetensors

FOLDER = os.path.join(HERE, "gpt_oss_tiny_expert_lora")
R, ALPHA, DOWN_R = 2, 6, 4
GREEDY_TOKENS = 4
LONG_PROMPT = [(5 * k + 3) % 63 for k in range(128)]

CONFIG = {
    "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "gpt_oss_tiny", "bias": "none",
    "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layer_replication": None,
    "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": ALPHA, "lora_dropout": 0.0,
    "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA", "r": R,
    "rank_pattern": {"down_proj": DOWN_R}, "revision": None, "target_modules": ["o_proj", "q_proj"],
    "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], "task_type": "CAUSAL_LM",
    "use_dora": False, "use_rslora": False,
}


def expert_delta(a, b, experts, scaling):
    """get_delta_weight for a 3-D parameter that is not swapped: (E, in, out)."""
    a = a.double().reshape(experts, -1, a.shape[-1])        # (E, r, in)
    b = b.double().reshape(b.shape[0], -1, experts)         # (out, r, E)
    return torch.einsum("o r e, e r i -> e i o", b, a) * scaling


def main():
    cfg = tiny_config()
    base = random_weights(cfg, 11, False)                   # gpt_oss_tiny's weights (its seed in make_gpt_oss_reference.py)
    g = torch.Generator().manual_seed(23)
    e, h, i = cfg["num_local_experts"], cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"] * cfg["head_dim"]

    def normal(*shape):
        return (torch.randn(*shape, generator=g) * 0.1).float()

    adapter, merged = {}, {k: v.double() for k, v in base.items()}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        for name, r, fan_in, fan_out, prefix in [("gate_up_proj", R, h, 2 * i, "base_layer."), ("down_proj", DOWN_R, i, h, "")]:
            a, b = normal(r * e, fan_in), normal(fan_out, r * e)
            adapter[f"base_model.model.{p}mlp.experts.{prefix}lora_A.weight"] = a
            adapter[f"base_model.model.{p}mlp.experts.{prefix}lora_B.weight"] = b
            merged[p + f"mlp.experts.{name}"] += expert_delta(a, b, e, ALPHA / r)
        for name, fan_in, fan_out in [("q_proj", h, heads), ("o_proj", heads, h)]:
            a, b = normal(R, fan_in), normal(fan_out, R)
            adapter[f"base_model.model.{p}self_attn.{name}.lora_A.weight"] = a
            adapter[f"base_model.model.{p}self_attn.{name}.lora_B.weight"] = b
            merged[p + f"self_attn.{name}.weight"] += (b.double() @ a.double()) * (ALPHA / R)
    os.makedirs(FOLDER, exist_ok=True)
    with open(os.path.join(FOLDER, "adapter_config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2, sort_keys=True)
    write_safetensors(os.path.join(FOLDER, "adapter_model.safetensors"), adapter)
    cases = []
    for ids in PROMPTS + [LONG_PROMPT]:
        greedy, seq = [], list(ids)
        for _ in range(GREEDY_TOKENS):
            nxt = int(forward(cfg, merged, seq)[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
        logits = forward(cfg, merged, ids)[0, -1]
        cases.append({"input_ids": ids, "last_logits": [round(float(v), 7) for v in logits], "greedy_ids": greedy})
    with open(os.path.join(FOLDER, "EXPECTED.json"), "w") as f:
        json.dump({"prompts": cases}, f)


if __name__ == "__main__":
    main()
