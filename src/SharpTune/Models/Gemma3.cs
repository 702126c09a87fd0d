using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Gemma 3 text model (transformers' <c>Gemma3ForCausalLM</c>, model_type gemma3_text; also the language model of a
/// Gemma3ForConditionalGeneration checkpoint): embeddings scaled by √hidden in the weight dtype, (1 + w) RMSNorms in
/// float32 before and after both attention and MLP, per-head q/k norms, scores scaled by query_pre_attn_scalar^-½,
/// sliding-window local layers with their own RoPE base and full global layers with rope_theta + rope_scaling, a
/// GELU-tanh gated MLP, and optional attention / final-logit soft-capping.
/// </summary>
public sealed class Gemma3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Gemma3ForCausalLM), config,
    new DecoderModel(config, i => new Gemma3DecoderLayer(config, i), gemmaStyle: true))
{
    // Gemma3RotaryEmbedding's local copy and the scaled embedding's embed_scale were buffers in older checkpoints.
    public override bool IsIgnorableCheckpointTensor(string name) =>
        base.IsIgnorableCheckpointTensor(name) ||
        name.EndsWith("rotary_emb_local.inv_freq", StringComparison.Ordinal) ||
        name.EndsWith("embed_tokens.embed_scale", StringComparison.Ordinal);
}

public sealed class Gemma3DecoderLayer : DecoderLayer
{
    public readonly Gemma3Attention self_attn;
    public readonly LlamaMlp mlp;   // gate/up/down with the config's gelu_pytorch_tanh
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;
    public readonly RmsNorm pre_feedforward_layernorm;
    public readonly RmsNorm post_feedforward_layernorm;

    public Gemma3DecoderLayer(ModelConfig config, int layerIndex) : base(nameof(Gemma3DecoderLayer))
    {
        self_attn = new Gemma3Attention(config, layerIndex);
        mlp = new LlamaMlp(config);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        pre_feedforward_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        post_feedforward_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        UsesLocalRope = config.LayerTypes.Count > layerIndex && config.LayerTypes[layerIndex] == ModelConfig.SlidingAttention;
        RegisterComponents();
    }

    /// <summary>A local layer (sliding window) rotates with rope_local_base_freq.</summary>
    public override bool UsesLocalRope { get; }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + post_attention_layernorm.forward(self_attn.Forward(input_layernorm.forward(x), ctx, angles));
        x = x + post_feedforward_layernorm.forward(mlp.forward(pre_feedforward_layernorm.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Gemma 3's attention: (1 + w) q/k norms, scores scaled by query_pre_attn_scalar^-½, optional soft-capping.</summary>
public sealed class Gemma3Attention : QkNormAttention
{
    public Gemma3Attention(ModelConfig config, int layerIndex)
        : base(nameof(Gemma3Attention), config, layerIndex, unitOffsetNorms: true, new AttentionSettings(
            SlidingWindow: config.SlidingWindowOf(layerIndex),
            Scale: Math.Pow(config.QueryPreAttnScalar ?? config.HeadDim, -0.5),
            SoftCap: config.AttnLogitSoftcapping))
    {
        RegisterComponents();
    }
}
