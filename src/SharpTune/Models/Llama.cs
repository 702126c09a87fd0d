using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Llama-family decoder (Llama 2/3, TinyLlama, SmolLM, Mistral with its sliding window, Qwen2 with q/k/v bias and
/// optional windows): RMSNorm, rotary attention with grouped-query heads, SwiGLU MLP. Reads top to bottom like the
/// architecture; field names are the HF names. Per-layer windows and RoPE switches come from the config.
/// </summary>
public class LlamaForCausalLM : DecoderForCausalLM
{
    public LlamaForCausalLM(ModelConfig config) : this(nameof(LlamaForCausalLM), config) { }

    protected LlamaForCausalLM(string name, ModelConfig config)
        : base(name, config, new DecoderModel(config, i => new LlamaDecoderLayer(config, new LlamaAttention(config, i), new LlamaMlp(config))))
    {
    }
}

/// <summary>
/// The pre-norm decoder layer of Llama, Qwen2/3, SmolLM3, Phi-3, Granite and Gemma 1: x + attn(norm(x)), then
/// x + mlp(norm(x)). The family supplies its attention (plain, with q/k norms, fused qkv) and MLP (separate or fused
/// gate/up); Phi-3 adds residual dropout (resid_pdrop) after each block, Granite multiplies each block's output by its
/// residual_multiplier before the add, Gemma's norms scale by (1 + w).
/// </summary>
public sealed class LlamaDecoderLayer : DecoderLayer
{
    public readonly DecoderAttention self_attn;
    public readonly nn.Module<Tensor, Tensor> mlp;
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;
    public readonly Dropout? resid_attn_dropout;
    public readonly Dropout? resid_mlp_dropout;

    private readonly double? residualMultiplier;

    /// <param name="unitOffsetNorms">Gemma's (1 + w) norms.</param>
    public LlamaDecoderLayer(ModelConfig config, DecoderAttention attention, nn.Module<Tensor, Tensor> mlp, double? residualDropout = null,
        bool unitOffsetNorms = false)
        : base(nameof(LlamaDecoderLayer))
    {
        self_attn = attention;
        this.mlp = mlp;
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffsetNorms);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffsetNorms);
        // GraniteDecoderLayer: hidden_states = residual + hidden_states * self.residual_multiplier, after each block.
        residualMultiplier = config.ResidualMultiplier is { } multiplier && multiplier != 1.0 ? multiplier : null;
        if (residualDropout is { } p)
        {
            resid_attn_dropout = nn.Dropout(p);
            resid_mlp_dropout = nn.Dropout(p);
        }
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var attended = self_attn.Forward(input_layernorm.forward(x), ctx, angles);
        x = x + Scaled(resid_attn_dropout?.forward(attended) ?? attended);
        var normed = post_attention_layernorm.forward(x);
        var fed = mlp is LlamaMlp gated ? gated.CheckpointAwareForward(normed) : mlp.forward(normed);
        x = x + Scaled(resid_mlp_dropout?.forward(fed) ?? fed);
        return x.MoveToOuterDisposeScope();
    }

    private Tensor Scaled(Tensor blockOutput) => residualMultiplier is { } multiplier ? blockOutput * multiplier : blockOutput;

    /// <summary>
    /// This layer's weights for <see cref="DecodeLayerStack"/>, or null when a part is not the plain form it computes
    /// (an adapter wraps a projection, an attention with q/k norms, a GELU MLP, Gemma's norms, dropout while training).
    /// </summary>
    internal DecodeLayerParts? DecodeParts()
    {
        if ((resid_attn_dropout is not null || resid_mlp_dropout is not null) && training) return null;
        if (input_layernorm.UnitOffset || post_attention_layernorm.UnitOffset || mlp is not LlamaMlp gated ||
            self_attn.DecodeParts() is not { } attended || gated.DecodeParts() is not { } fed) return null;
        return new DecodeLayerParts(input_layernorm, attended, post_attention_layernorm, fed, residualMultiplier);
    }
}

public sealed class LlamaAttention : DecoderAttention
{
    // Typed as plain modules so fine-tuning methods can wrap them (LoRA, IA3, adapters) without touching this file.
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    private readonly AttentionHeads heads;
    private readonly bool useRope;
    private readonly FusedLinear qkv = new();

    public LlamaAttention(ModelConfig config, int layerIndex) : base(nameof(LlamaAttention))
    {
        heads = AttentionHeads.For(config, layerIndex);
        useRope = config.UsesRope(layerIndex);                         // SmolLM3's NoPE layers skip RoPE
        q_proj = nn.Linear(config.HiddenSize, heads.QueryWidth, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, heads.KeyValueWidth, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, heads.KeyValueWidth, hasBias: config.AttentionBias);
        // Qwen2 has biases on q/k/v only; Llama's attention_bias puts one on o_proj too.
        o_proj = nn.Linear(heads.QueryWidth, config.HiddenSize,
            hasBias: config.AttentionBias && config.Architecture != "Qwen2ForCausalLM");
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        (Tensor Cos, Tensor SignedSin)? rotation = useRope ? angles : null;
        if (x.size(1) == 1 && qkv.TryForward(x, q_proj, k_proj, v_proj) is { } fused)   // decoding: heads straight from the fused product
            return heads.Decode(fused, x.size(0), rotation, ctx, o_proj);
        var (q, k, v) = Projections.QueryKeyValue(qkv, x, q_proj, k_proj, v_proj, heads.QueryWidth, heads.KeyValueWidth);
        return heads.Attend(q, k, v, rotation, ctx, o_proj);
    }

    /// <summary>The fused q/k/v projection, o_proj and the heads, for <see cref="DecodeLayerStack"/>; null while a projection is wrapped.</summary>
    internal override DecodeAttentionParts? DecodeParts() =>
        DecodeProjection.Of(o_proj) is { } output && DecodeProjection.Fused(qkv, q_proj, k_proj, v_proj) is { } fused
            ? new DecodeAttentionParts(fused, output, heads, useRope)
            : null;

    protected override void Dispose(bool disposing)
    {
        if (disposing) qkv.Dispose();
        base.Dispose(disposing);
    }
}

public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_proj;
    public nn.Module<Tensor, Tensor> up_proj;
    public nn.Module<Tensor, Tensor> down_proj;
    private readonly Func<Tensor, Tensor> act;
    private readonly bool silu;   // SwiGLU: a decode step's act(gate)·up can run in one pass (SwiGluKernel)
    private readonly FusedLinear gateUp = new();
    private readonly long intermediate;

    /// <summary>Gated MLP: down(act(gate(x)) · up(x)); the activation is the config's (SiLU for Llama, GELU-tanh for Gemma).</summary>
    public LlamaMlp(ModelConfig config) : this(config, config.IntermediateSize) { }

    /// <summary>The same MLP with a hidden width of its own (a mixture-of-experts expert's moe_intermediate_size).</summary>
    public LlamaMlp(ModelConfig config, int intermediateSize) : base(nameof(LlamaMlp))
    {
        act = Activations.For(config.HiddenAct);
        silu = config.HiddenAct is "silu" or "swish";
        intermediate = intermediateSize;
        gate_proj = nn.Linear(config.HiddenSize, intermediateSize, hasBias: config.MlpBias);
        up_proj = nn.Linear(config.HiddenSize, intermediateSize, hasBias: config.MlpBias);
        down_proj = nn.Linear(intermediateSize, config.HiddenSize, hasBias: config.MlpBias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (gateUp.TryForward(x, gate_proj, up_proj) is { } fused)                             // (…, 2·ffn): gate, then up
            return DenseMatVec.Forward(down_proj, (silu ? SwiGluKernel.TryApply(fused, intermediate) : null) ??
                act(fused.narrow(-1, 0, intermediate)) * fused.narrow(-1, intermediate, intermediate));
        return down_proj.forward(act(gate_proj.forward(x)) * up_proj.forward(x));
    }

    /// <summary>
    /// <see cref="forward"/>, except inside a checkpointed layer (<see cref="ActivationCheckpoint"/>), where frozen
    /// projections (<see cref="FrozenProjection"/>) need not be multiplied twice: a keeping layer's forward keeps the gate
    /// and up products (2·ffn values per token), which its recomputation then reuses; and a recomputation leaves out
    /// down_proj's product, since the layer's recomputed output is never read. Trainable or wrapped projections run as usual.
    /// </summary>
    public Tensor CheckpointAwareForward(Tensor x)
    {
        var recomputing = ActivationCheckpoint.IsRecomputing;
        if (!recomputing && !ActivationCheckpoint.IsKeeping) return forward(x);
        var frozenGateUp = FrozenProjection.Supports(gate_proj) && FrozenProjection.Supports(up_proj);
        Tensor gate, up;
        if (recomputing && frozenGateUp && ActivationCheckpoint.HasKept)
        {
            gate = FrozenProjection.WithKnownValue(gate_proj, x, ActivationCheckpoint.TakeKept());
            up = FrozenProjection.WithKnownValue(up_proj, x, ActivationCheckpoint.TakeKept());
        }
        else
        {
            (gate, up) = (gate_proj.forward(x), up_proj.forward(x));
            if (!recomputing && frozenGateUp)
            {
                ActivationCheckpoint.Keep(gate);
                ActivationCheckpoint.Keep(up);
            }
        }
        var hidden = act(gate) * up;
        return recomputing && FrozenProjection.Supports(down_proj) ? FrozenProjection.WithoutValue(down_proj, hidden) : down_proj.forward(hidden);
    }

    /// <summary>The fused gate/up projection and down_proj of a SwiGLU MLP, for <see cref="DecodeLayerStack"/>; null otherwise.</summary>
    internal DecodeMlpParts? DecodeParts() =>
        silu && DecodeProjection.Of(down_proj) is { } down && DecodeProjection.Fused(gateUp, gate_proj, up_proj) is { } fused
            ? new DecodeMlpParts(fused, down, intermediate)
            : null;

    protected override void Dispose(bool disposing)
    {
        if (disposing) gateUp.Dispose();
        base.Dispose(disposing);
    }
}
