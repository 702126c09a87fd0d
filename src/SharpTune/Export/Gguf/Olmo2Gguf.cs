using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// OLMo 2 in llama.cpp (arch <c>olmo2</c>), as convert_hf_to_gguf.py's Olmo2Model writes it: the decoder's hyper-parameters
/// and the checkpoint's tensors renamed, with the norms after attention and the MLP as post_attention_norm and
/// post_ffw_norm, the whole-width q/k norms as attn_q_norm / attn_k_norm, and no Q/K permutation (llama.cpp rotates
/// OLMo 2 NEOX-style, as transformers does).
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
        return [];
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        AddHeadWidth(metadata, config);
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
