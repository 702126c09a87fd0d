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
/// written as plain olmo2, without the window. Other layer_types patterns have no llama.cpp form and are refused.
/// </para>
/// <para>
/// RoPE scaling is written as rope.scaling.type, factor and, for YaRN, original_context_length. llama.cpp's converter
/// writes those in TextModel.set_gguf_parameters (ggml-org/llama.cpp@00bd27a6 conversion/base.py), together with
/// yarn_ext_factor, yarn_attn_factor, yarn_beta_fast and yarn_beta_slow whenever the config holds extrapolation_factor,
/// attention_factor, beta_fast or beta_slow; its Olmo2Model (ggml-org/llama.cpp@7bca1fd9 conversion/olmo.py) writes
/// the YaRN type, factor and original context again plus rope.scaling.attn_factor from attention_factor, and
/// attention.sliding_window with attention.sliding_window_pattern (one flag per layer, from layer_types). The keys left
/// out here are the ones whose llama.cpp defaults are transformers' defaults: a YaRN with other betas, truncate, mscale
/// or a non-default attention_factor is refused, as for the llama family, and a layer pattern other than llama.cpp's
/// default for olmo2 (see above) is refused too. llama.cpp's olmo2 graph (src/models/olmo2.cpp@8a5c4e03) applies the
/// scaling to the full-attention layers (freq_scale, ext_factor, attn_factor) and rotates the sliding ones with
/// freq_scale 1, ext_factor 0, attn_factor 1.
/// </para>
/// <para>
/// A sliding rope_theta of its own (transformers 5's rope_parameters keyed by layer type) is refused: transformers' OLMo 3
/// has none (modular_olmo3.py@02e8340b rotates every layer with one rotary embedding of the config's rope_theta; the 4.57
/// form gives the sliding layers rope_type "default" with that same theta), and llama.cpp's olmo2 reads
/// <c>rope.freq_base_swa</c> (load_arch_hparams) but its graph rotates the sliding layers with the context's freq_base:
/// the prebuilt llama.cpp the tests run reproduced olmo3_sliding's reference logits (theta 500) with
/// <c>olmo2.rope.freq_base_swa</c> = 10000 written beside it, so the key would be ignored.
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
        if (config.RopeScaling is { Type: "yarn" } yarn && !LlamaFamilyGguf.IsLlamaCppYarn(yarn))
            throw new NotSupportedException(
                $"{config.Architecture}: this YaRN rope_scaling sets beta_fast, beta_slow, truncate, mscale or attention_factor away from " +
                "their defaults; llama.cpp's GGUF keys carry only the factor and the original context, so it would rotate differently");
        // With no sliding layer (OLMo 2, or OLMo 3 with every layer full_attention) the file is plain olmo2, without a window.
        var sliding = Enumerable.Range(0, config.NumLayers).Select(i => config.SlidingWindowOf(i) is not null).ToArray();
        if (sliding.Any(s => s) && Enumerable.Range(0, config.NumLayers).Any(i => sliding[i] != ((i + 1) % 4 != 0)))
            throw new NotSupportedException(
                $"{config.Architecture}: layer_types [{string.Join(", ", config.LayerTypes)}] has no llama.cpp olmo2 equivalent " +
                "(it slides every layer but each fourth, OLMo 3's default pattern)");
        if (sliding.Any(s => s) && config.RopeLocalBaseFreq is { } local && local != config.RopeTheta)
            throw new NotSupportedException(
                $"{config.Architecture}: the sliding layers' rope_theta {local} (rope_parameters.sliding_attention) has no llama.cpp olmo2 " +
                $"equivalent: its graph rotates every layer with rope.freq_base ({config.RopeTheta}) and ignores rope.freq_base_swa " +
                "(transformers' OLMo 3 has no sliding theta of its own either)");
        return LlamaFamilyGguf.YarnFactorWarning(config).ToList();
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        AddHeadWidth(metadata, config);
        if (config.SlidingWindow is { } window && Enumerable.Range(0, config.NumLayers).Any(i => config.SlidingWindowOf(i) is not null))
            Add(metadata, "olmo2.attention.sliding_window", GgufValue.U32((uint)window));
        if (config.RopeScaling is { Type: "linear" } linear)
        {
            Add(metadata, "olmo2.rope.scaling.type", GgufValue.Str("linear"));
            Add(metadata, "olmo2.rope.scaling.factor", GgufValue.F32((float)linear.Factor));
        }
        if (config.RopeScaling is { Type: "yarn" } yarn)
        {
            // The keys the converter's TextModel.set_gguf_parameters always writes for YaRN; llama.cpp's default attn_factor 1
            // then scales by 0.1·ln(factor) + 1, transformers' default attention_factor (Check refuses any other).
            Add(metadata, "olmo2.rope.scaling.type", GgufValue.Str("yarn"));
            Add(metadata, "olmo2.rope.scaling.factor", GgufValue.F32((float)yarn.Factor));
            Add(metadata, "olmo2.rope.scaling.original_context_length", GgufValue.U32((uint)yarn.OriginalMaxPositionEmbeddings));
        }
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
