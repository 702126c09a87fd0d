using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// Phi-3 / Phi-3.5 / Phi-4-mini in llama.cpp (arch <c>phi3</c>), as convert_hf_to_gguf.py's Phi3MiniModel writes them:
/// the fused <c>qkv_proj</c> becomes <c>attn_qkv</c> and the fused <c>gate_up_proj</c> becomes <c>ffn_up</c> unchanged
/// (llama.cpp's SwiGLU takes the gate from the first half, as Phi3MLP does), NEOX RoPE on the first
/// <c>rope.dimension_count</c> dimensions of each head, and LongRoPE's per-frequency divisors as the
/// <c>rope_factors_short</c> / <c>rope_factors_long</c> tensors with the attention factor in
/// <c>rope.scaling.attn_factor</c>. llama.cpp switches to the long factors when its context exceeds the original
/// context, where transformers switches by sequence length.
/// </summary>
internal sealed class Phi3Gguf : GgufArchitecture
{
    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.qkv_proj", "attn_qkv"), ("self_attn.o_proj", "attn_output"),
        ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
    ];

    public override string Name => "phi3";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        if (config.RopeScaling is { Type: not ("default" or "longrope") } scaling)
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{scaling.Type}' has no llama.cpp phi3 equivalent (the converter writes LongRoPE only)");
        if (config.RopeScaling is { Type: "longrope" } longRope
            && (longRope.ShortFactor!.Count != config.RotaryDim / 2 || longRope.LongFactor!.Count != config.RotaryDim / 2))
            throw new InvalidDataException(
                $"{config.Architecture}: LongRoPE short_factor and long_factor need {config.RotaryDim / 2} entries (rotary dimensions / 2), " +
                $"found {longRope.ShortFactor.Count} and {longRope.LongFactor!.Count}");
        if (config.AttentionBias)
            throw new NotSupportedException($"{config.Architecture}: attention biases have no place in llama.cpp's phi3");
        var warnings = IgnoredWindowWarning(config).ToList();
        if (config.RopeScaling is { Type: "longrope" } scaled)
            warnings.Add($"LongRoPE: llama.cpp uses the long factors whenever its context is larger than {scaled.OriginalMaxPositionEmbeddings} tokens " +
                         "(transformers switches once a sequence grows past it), so run llama.cpp with a context of at most that size for short-context behaviour");
        return warnings;
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        var original = config.RopeScaling?.OriginalMaxPositionEmbeddings
                       ?? (config.Raw["original_max_position_embeddings"] is { } o ? o.GetValue<int>() : config.MaxPositionEmbeddings);
        Add(metadata, "phi3.rope.scaling.original_context_length", GgufValue.U32((uint)original));
        Add(metadata, "phi3.rope.dimension_count", GgufValue.U32((uint)config.RotaryDim));
        AddHeadWidth(metadata, config);
        // The converter writes 0 without a window ("distinguishes Phi-4"); llama.cpp's phi3 reads and then disables it.
        Add(metadata, "phi3.attention.sliding_window", GgufValue.U32((uint)(config.SlidingWindow ?? 0)));
        if (config.RopeScaling is { Type: "longrope" } scaling)
        {
            var attentionFactor = scaling.AttentionFactor
                                  ?? (scaling.Factor > 1 ? Math.Sqrt(1 + Math.Log(scaling.Factor) / Math.Log(scaling.OriginalMaxPositionEmbeddings)) : 1.0);
            Add(metadata, "phi3.rope.scaling.attn_factor", GgufValue.F32((float)attentionFactor));
        }
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        if (config.RopeScaling is { Type: "longrope" } scaling)
        {
            tensors.Add(new MappedTensor("rope_factors_long.weight", [scaling.LongFactor!.Count], _ => scaling.LongFactor.Select(f => (float)f).ToArray()));
            tensors.Add(new MappedTensor("rope_factors_short.weight", [scaling.ShortFactor!.Count], _ => scaling.ShortFactor.Select(f => (float)f).ToArray()));
        }
        AddTokenEmbedding(tensors, names, config, source);
        AddLayerWeights(tensors, names, config, source, LayerTensors, " (llama.cpp's phi3 needs the fused qkv_proj and gate_up_proj)");
        AddDecoderOutput(tensors, names, config, source);
        return tensors;
    }

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);
}
