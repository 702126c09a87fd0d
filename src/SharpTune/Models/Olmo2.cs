using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// OLMo 2 (transformers' <c>Olmo2ForCausalLM</c>, model_type olmo2: allenai/OLMo-2-0425-1B, OLMo-2-1124-7B…): the
/// Llama attention and SwiGLU MLP with their norms moved after them — no norm before either block, each block's output
/// normed before its residual add — and RMSNorms on the whole projected queries and keys (num_heads·head_dim and
/// num_key_value_heads·head_dim wide) before they are split into heads and rotated. Every OLMo 2 RMSNorm multiplies by
/// its weight in float32 before casting back (Olmo2RMSNorm).
/// </summary>
public sealed class Olmo2ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Olmo2ForCausalLM), config,
    new DecoderModel(config, i => new Olmo2DecoderLayer(config, i), olmo2Norm: true));

/// <summary>
/// Olmo2DecoderLayer: h = x + post_attention_layernorm(attn(x)), then h + post_feedforward_layernorm(mlp(h)).
/// </summary>
public sealed class Olmo2DecoderLayer : DecoderLayer
{
    public readonly Olmo2Attention self_attn;
    public readonly LlamaMlp mlp;
    public readonly RmsNorm post_attention_layernorm;
    public readonly RmsNorm post_feedforward_layernorm;
    private readonly bool unscaledRope;

    public Olmo2DecoderLayer(ModelConfig config, int layerIndex) : base(nameof(Olmo2DecoderLayer))
    {
        // OLMo 3's sliding-attention layers rotate without the config's rope_scaling (transformers 4.57's Olmo3Model picks
        // rotary_embs[layer_type], the sliding layers' built with rope_type "default"), with their own rope_theta where
        // rope_parameters gives them one (RopeLocalBaseFreq). The rope follows layer_types, not the window; OLMo 2 has no
        // sliding layers.
        unscaledRope = layerIndex < config.LayerTypes.Count && config.LayerTypes[layerIndex] == ModelConfig.SlidingAttention &&
                       (config.RopeScaling is { Type: not "default" } || config.RopeLocalBaseFreq is not null);
        self_attn = new Olmo2Attention(config, layerIndex);
        mlp = new LlamaMlp(config);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, weightInFloat32: true);
        post_feedforward_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, weightInFloat32: true);
        RegisterComponents();
    }

    public override bool UsesLocalRope => unscaledRope;

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + post_attention_layernorm.forward(self_attn.Forward(x, ctx, angles));
        x = x + post_feedforward_layernorm.forward(mlp.CheckpointAwareForward(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Olmo2Attention: q_norm and k_norm normalise the whole projected queries and keys (not each head), then the heads are
/// split, rotated and attended as in Llama, scaled by head_dim^-½.
/// </summary>
public sealed class Olmo2Attention : DecoderAttention
{
    // Typed as plain modules so fine-tuning methods can wrap them (LoRA, IA3, adapters) without touching this file.
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly RmsNorm q_norm;   // over num_heads·head_dim
    public readonly RmsNorm k_norm;   // over num_key_value_heads·head_dim
    private readonly AttentionHeads heads;
    private readonly FusedLinear qkv = new();

    public Olmo2Attention(ModelConfig config, int layerIndex) : base(nameof(Olmo2Attention))
    {
        heads = AttentionHeads.For(config, layerIndex);
        q_proj = nn.Linear(config.HiddenSize, heads.QueryWidth, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, heads.KeyValueWidth, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, heads.KeyValueWidth, hasBias: config.AttentionBias);
        o_proj = nn.Linear(heads.QueryWidth, config.HiddenSize, hasBias: config.AttentionBias);
        q_norm = new RmsNorm(heads.QueryWidth, config.NormEps, weightInFloat32: true);
        k_norm = new RmsNorm(heads.KeyValueWidth, config.NormEps, weightInFloat32: true);
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        var (q, k, v) = Projections.QueryKeyValue(qkv, x, q_proj, k_proj, v_proj, heads.QueryWidth, heads.KeyValueWidth);
        return heads.Attend(q_norm.forward(q), k_norm.forward(k), v, angles, ctx, o_proj);   // norms over (B, T, n·hd)
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) qkv.Dispose();
        base.Dispose(disposing);
    }
}
