namespace SharpTune.Models;

/// <summary>
/// SmolLM3 (transformers' <c>SmolLM3ForCausalLM</c>): the Llama decoder with RoPE switched off on the layers whose
/// <c>no_rope_layers</c> entry is 0 (by default every fourth), and with use_sliding_window a window on those NoPE
/// layers. Tensor names are Llama's; the per-layer switches live in <see cref="ModelConfig.RopeLayers"/> and
/// <see cref="ModelConfig.LayerTypes"/>, which <see cref="LlamaAttention"/> honours.
/// </summary>
public sealed class SmolLM3ForCausalLM(ModelConfig config) : LlamaForCausalLM(nameof(SmolLM3ForCausalLM), config);
