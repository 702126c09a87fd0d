using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// The decoder stack of the Llama-style families (transformers' <c>LlamaModel</c>, <c>Qwen3Model</c>,
/// <c>Phi3Model</c>, <c>Gemma3TextModel</c>…): token embeddings, the family's layers, a final RMSNorm. RoPE angles are
/// computed once per forward and shared by every layer; layers that ask for local RoPE (Gemma 3's sliding layers) get
/// angles from rope_local_base_freq without scaling.
/// </summary>
public sealed class DecoderModel : nn.Module
{
    public readonly TokenEmbedding embed_tokens;
    public readonly ModuleList<DecoderLayer> layers;
    public readonly RmsNorm norm;
    private readonly double? embedScale;
    private readonly bool hasLocalRopeLayers;
    private readonly DeviceCached<RotaryEmbedding> rotary;
    private readonly DeviceCached<RotaryEmbedding> localRotary;
    private readonly DecodeLayerStack layerStack = new();   // a decode step's layers in one pass, where they allow it

    /// <param name="layer">Builds decoder layer i.</param>
    /// <param name="gemmaStyle">Gemma: embeddings scaled by √hidden and a (1 + w) final norm.</param>
    /// <param name="olmo2Norm">OLMo 2: the final norm multiplies by its weight in float32 (Olmo2RMSNorm).</param>
    public DecoderModel(ModelConfig config, Func<int, DecoderLayer> layer, bool gemmaStyle = false, bool olmo2Norm = false) : base(nameof(DecoderModel))
    {
        embed_tokens = new TokenEmbedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, config.NumLayers).Select(layer).ToArray());
        norm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: gemmaStyle, weightInFloat32: olmo2Norm);
        embedScale = gemmaStyle ? Math.Sqrt(config.HiddenSize) : null;
        hasLocalRopeLayers = layers.Any(l => l.UsesLocalRope);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        // Local layers: rope_local_base_freq and no scaling (transformers copies the config with rope_type "default").
        localRotary = new DeviceCached<RotaryEmbedding>(device =>
            new RotaryEmbedding(config.RotaryDim, config.RopeLocalBaseFreq ?? config.RopeTheta, null, device));
        RegisterComponents();
    }

    /// <summary>
    /// Gemma 1 and 2: the √hidden scale is applied to the embeddings as the model's first step (the models' normalizer), not
    /// by the embedding module (Gemma 3's Gemma3TextScaledWordEmbedding). It decides what the input embeddings are —
    /// unscaled for Gemma 1 and 2 — and so where NEFTune's noise goes and what scale prompt-tuning's virtual tokens live at, as
    /// transformers' hook and PEFT see them.
    /// </summary>
    internal bool ScalesInputEmbeddings { get; init; }

    /// <summary>
    /// Token ids (B, T) → the input embeddings (B, T, C). Gemma 3's scaled embedding multiplies by √hidden first rounded
    /// to the weight dtype, as Gemma3TextScaledWordEmbedding does (Gemma 2 scales in <see cref="Forward"/> instead).
    /// </summary>
    public Tensor Embed(Tensor inputIds)
    {
        if (embedScale is not { } scaleValue || ScalesInputEmbeddings) return embed_tokens.forward(inputIds);
        using var scope = NewDisposeScope();
        return (embed_tokens.forward(inputIds) * EmbedScaleIn(embed_tokens.weight!.dtype, scaleValue)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Granite: the input embeddings are multiplied by embedding_multiplier as the model's first step (GraniteModel:
    /// inputs_embeds = inputs_embeds * self.embedding_multiplier), after NEFTune's hook on embed_tokens; null = none.
    /// </summary>
    internal double? InputMultiplier { get; init; }

    /// <summary>
    /// The model's first step on its input embeddings: Gemma 1 and 2 multiply them by √hidden rounded to their dtype
    /// (GemmaModel, Gemma2Model: hidden_states = inputs_embeds * torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)),
    /// Granite by its embedding_multiplier (a Python float, applied in the activations' dtype); other families take them
    /// as they are.
    /// </summary>
    internal Tensor ScaleInputs(Tensor inputsEmbeds)
    {
        if (ScalesInputEmbeddings && embedScale is { } scaleValue) return inputsEmbeds * EmbedScaleIn(inputsEmbeds.dtype, scaleValue);
        return InputMultiplier is { } multiplier ? inputsEmbeds * multiplier : inputsEmbeds;
    }

    /// <summary>√hidden as a scalar tensor rounded to <paramref name="dtype"/>, as both Gemma generations round it.</summary>
    private Tensor EmbedScaleIn(ScalarType dtype, double scaleValue) =>
        tensor((float)scaleValue, ScalarType.Float32, embed_tokens.weight!.device).to(dtype);

    /// <summary>Embeddings (B, T, C) → final hidden states (B, T, C); advances the cache, if any, by T.</summary>
    /// <param name="checkpointedLayers">How many of the first layers are recomputed in the backward.</param>
    /// <param name="keepingLayers">How many of those keep products for their recomputation (<see cref="ActivationCheckpoint.Keep"/>).</param>
    public Tensor Forward(Tensor x, ForwardContext ctx, int checkpointedLayers = 0, int keepingLayers = 0)
    {
        using var scope = NewDisposeScope();
        x = ScaleInputs(x);
        var checkpointing = checkpointedLayers > 0;
        var global = Angles(rotary, x, ctx, checkpointing);                                   // (B, 1, T, rotary dim)
        if (!checkpointing && !hasLocalRopeLayers && ctx.Cache is { } decoding && layerStack.TryRun(layers, x, ctx, global) is { } stacked)
        {
            decoding.Advance((int)x.size(1));
            return norm.forward(stacked).MoveToOuterDisposeScope();
        }
        var local = hasLocalRopeLayers ? Angles(localRotary, x, ctx, checkpointing) : global;
        var index = 0;
        var first = x;
        foreach (var layer in layers)
        {
            var angles = layer.UsesLocalRope ? local : global;
            var output = index < checkpointedLayers
                ? ActivationCheckpoint.Run(input => layer.Forward(input, ctx, angles), x, keepProducts: index < keepingLayers)
                : layer.Forward(x, ctx, angles);
            x = LayerInputRelease.Next(x, output, first);
            index++;
        }
        if (ctx.Cache is { } cache) cache.Advance((int)x.size(1));
        return norm.forward(x).MoveToOuterDisposeScope();
    }

    /// <summary>Decode steps that ran every layer in one pass (<see cref="DecodeLayerStack"/>).</summary>
    internal long LayerStackSteps => layerStack.StepsRun;

    /// <summary>Prompts that ran every layer in one pass (a small model's: <see cref="DecodeLayerStack"/>).</summary>
    internal long LayerStackPrompts => layerStack.PromptsRun;

    protected override void Dispose(bool disposing)
    {
        if (disposing) layerStack.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>cos and the sign-folded sin of <see cref="RotaryEmbedding.RotationTables"/>, once per forward for every layer.</summary>
    private static (Tensor Cos, Tensor SignedSin) Angles(DeviceCached<RotaryEmbedding> rope, Tensor x, ForwardContext ctx, bool checkpointLayers)
    {
        var angles = rope.For(x.device).RotationTables(ctx.PositionIds, x.dtype, ctx.MaxPosition);
        // The backward recomputes layers after the forward's scope has ended.
        return checkpointLayers ? (angles.Cos.DetachFromDisposeScope(), angles.SignedSin.DetachFromDisposeScope()) : angles;
    }
}

/// <summary>One decoder layer of a <see cref="DecoderModel"/>: hidden states (B, T, C) → (B, T, C).</summary>
public abstract class DecoderLayer(string name) : nn.Module(name)
{
    /// <summary>Whether this layer rotates with the local RoPE base (Gemma 3's sliding layers) instead of the config's.</summary>
    public virtual bool UsesLocalRope => false;

    public abstract Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles);
}

/// <summary>The self-attention block of a decoder layer: normed hidden states (B, T, C) → (B, T, C).</summary>
public abstract class DecoderAttention(string name) : nn.Module(name)
{
    public abstract Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles);

    /// <summary>The block's weights for <see cref="DecodeLayerStack"/>, or null when it is not a form the pass computes.</summary>
    internal virtual DecodeAttentionParts? DecodeParts() => null;
}
