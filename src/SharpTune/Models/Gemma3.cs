using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Gemma 3 text model (transformers' <c>Gemma3ForCausalLM</c>, model_type gemma3_text; also the language model of a
/// Gemma3ForConditionalGeneration checkpoint): Gemma's sandwich-normed layers (<see cref="GemmaDecoderLayer"/>) with
/// per-head q/k norms, scores scaled by query_pre_attn_scalar^-½, sliding-window local layers with their own RoPE base
/// and full global layers with rope_theta + rope_scaling, and optional attention / final-logit soft-capping.
/// </summary>
public sealed class Gemma3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Gemma3ForCausalLM), config,
    new DecoderModel(config, i => new GemmaDecoderLayer(config, new Gemma3Attention(config, i),
        usesLocalRope: IsSlidingLayer(config, i)), gemmaStyle: true))
{
    // Gemma3RotaryEmbedding's local copy and the scaled embedding's embed_scale were buffers in older checkpoints.
    public override bool IsIgnorableCheckpointTensor(string name) =>
        base.IsIgnorableCheckpointTensor(name) ||
        name.EndsWith("rotary_emb_local.inv_freq", StringComparison.Ordinal) ||
        name.EndsWith("embed_tokens.embed_scale", StringComparison.Ordinal);

    /// <summary>A sliding layer rotates with rope_local_base_freq (even when the config sets no window).</summary>
    private static bool IsSlidingLayer(ModelConfig config, int layer) =>
        layer < config.LayerTypes.Count && config.LayerTypes[layer] == ModelConfig.SlidingAttention;
}

/// <summary>Gemma 3's attention: (1 + w) q/k norms, then Gemma's score scale, window and soft-capping.</summary>
public sealed class Gemma3Attention : QkNormAttention
{
    public Gemma3Attention(ModelConfig config, int layerIndex)
        : base(nameof(Gemma3Attention), config, layerIndex, unitOffsetNorms: true, AttentionSettings.For(config, layerIndex))
    {
        RegisterComponents();
    }
}
