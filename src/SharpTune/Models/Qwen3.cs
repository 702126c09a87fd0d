using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Qwen3 (transformers' <c>Qwen3ForCausalLM</c>): the Llama decoder with a per-head RMSNorm on queries and keys
/// (<c>q_norm</c>/<c>k_norm</c>, applied before RoPE), a head_dim independent of hidden / heads, no q/k/v bias by
/// default, and sliding windows on the layers from max_window_layers on when use_sliding_window is set.
/// </summary>
public sealed class Qwen3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Qwen3ForCausalLM), config,
    new DecoderModel(config, i => new LlamaDecoderLayer(config, new Qwen3Attention(config, i), new LlamaMlp(config))));

public sealed class Qwen3Attention : QkNormAttention
{
    public Qwen3Attention(ModelConfig config, int layerIndex)
        : base(nameof(Qwen3Attention), config, layerIndex, unitOffsetNorms: false,
            new AttentionSettings(SlidingWindow: config.SlidingWindowOf(layerIndex)))
    {
        RegisterComponents();
    }
}
