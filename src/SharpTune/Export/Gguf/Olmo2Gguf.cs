using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// OLMo 2 in llama.cpp (arch <c>olmo2</c>), as convert_hf_to_gguf.py's Olmo2Model writes it: the decoder's hyper-parameters
/// and the checkpoint's tensors renamed, with the norms after attention and the MLP as post_attention_norm and
/// post_ffw_norm, the whole-width q/k norms as attn_q_norm / attn_k_norm, and no Q/K permutation (llama.cpp rotates
/// OLMo 2 NEOX-style, as transformers does).
/// <para>
/// OLMo 3 is written the same way (the converter registers Olmo3ForCausalLM under Olmo2Model) with
/// <c>attention.sliding_window</c>: llama.cpp's olmo2 then slides every layer but each fourth (set_swa_pattern(4)) and
/// rotates the sliding layers unscaled, as transformers 4.57's OLMo 3 does. An OLMo 3 whose layers all attend in full is
/// written as plain olmo2, without the window. Other layer_types patterns, and a sliding rope_theta of their own, have no
/// llama.cpp form and are refused.
/// </para>
/// </summary>
internal sealed class Olmo2Gguf : GgufArchitecture
{
    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"), ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
        ("post_attention_layernorm", "post_attention_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"), ("post_feedforward_layernorm", "post_ffw_norm"),
    ];

    public override string Name => "olmo2";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        if (config.AttentionBias)
            throw new NotSupportedException(
                $"{config.Architecture}: attention_bias = true; llama.cpp's olmo2 has no attention biases and would compute a different model");
        if (config.RopeScaling is { Type: not ("default" or "linear" or "yarn") } scaling)
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{scaling.Type}' has no llama.cpp olmo2 equivalent");
        // With no sliding layer (OLMo 2, or OLMo 3 with every layer full_attention) the file is plain olmo2, without a window.
        var sliding = Enumerable.Range(0, config.NumLayers).Select(i => config.SlidingWindowOf(i) is not null).ToArray();
        if (sliding.Any(s => s) && Enumerable.Range(0, config.NumLayers).Any(i => sliding[i] != ((i + 1) % 4 != 0)))
            throw new NotSupportedException(
                $"{config.Architecture}: layer_types [{string.Join(", ", config.LayerTypes)}] has no llama.cpp olmo2 equivalent " +
                "(it slides every layer but each fourth, OLMo 3's default pattern)");
        if (sliding.Any(s => s) && config.RopeLocalBaseFreq is { } local && local != config.RopeTheta)
            throw new NotSupportedException(
                $"{config.Architecture}: the sliding layers' rope_theta {local} (rope_parameters.sliding_attention) has no llama.cpp olmo2 " +
                $"equivalent (it rotates every layer with rope_theta {config.RopeTheta})");
        return [];
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        AddHeadWidth(metadata, config);
        if (config.SlidingWindow is { } window && Enumerable.Range(0, config.NumLayers).Any(i => config.SlidingWindowOf(i) is not null))
            Add(metadata, "olmo2.attention.sliding_window", GgufValue.U32((uint)window));
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        AddTokenEmbedding(tensors, names, config, source);
        AddLayerWeights(tensors, names, config, source, LayerTensors);
        AddDecoderOutput(tensors, names, config, source);
        return tensors;
    }

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);
}
