using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// Phi-1 / Phi-1.5 / Phi-2 in llama.cpp (arch <c>phi2</c>), as convert_hf_to_gguf.py's Phi2Model writes them
/// (ggml-org/llama.cpp a458664f): the parallel block under one LayerNorm with bias (<c>attn_norm</c>), separate
/// <c>attn_q</c>, <c>attn_k</c>, <c>attn_v</c> and <c>attn_output</c> with biases, <c>ffn_up</c> / <c>ffn_down</c> (fc1 /
/// fc2) with biases, <c>output_norm</c> with bias, and <c>output</c> with <c>output.bias</c> (lm_head's bias); NEOX RoPE
/// on the first <c>rope.dimension_count</c> dimensions of each head; <c>add_bos_token</c> false unless the tokenizer says.
/// <para>
/// Where the converter's numbers hold only for the released checkpoints, the config's are written: llama.cpp's phi2
/// loader sizes fc1/fc2 by <c>feed_forward_length</c> and k/v by <c>head_count_kv</c>, which the converter fixes at
/// 4 × hidden_size and num_attention_heads (what phi-1, phi-1_5 and phi-2 have), so it takes intermediate_size and
/// num_key_value_heads here; <c>rope.dimension_count</c> is int(partial_rotary_factor × head width), what transformers
/// rotates (the converter's int(factor × hidden_size) // heads is the same for those checkpoints); and
/// <c>rope.freq_base</c>, which the converter leaves out (llama.cpp then uses 10000), is written so another rope_theta
/// is honoured. llama.cpp's phi2 graph shares key/value heads (GQA) as transformers does.
/// </para>
/// <para>
/// llama.cpp's phi2 loader requires <c>output.weight</c> and <c>output.bias</c>: a tied model gets the embeddings as
/// <c>output.weight</c> and keeps its own lm_head.bias. It has no per-head q/k LayerNorm, so qk_layernorm is refused.
/// </para>
/// </summary>
internal sealed class PhiGguf : GgufArchitecture
{
    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
        ("self_attn.dense", "attn_output"), ("mlp.fc1", "ffn_up"), ("mlp.fc2", "ffn_down"),
    ];

    public override string Name => "phi2";

    public override bool? AddBosTokenUnlessTokenizerSays => false;

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        if (config.QkLayerNorm)
            throw new NotSupportedException(
                $"{config.Architecture}: qk_layernorm has no llama.cpp phi2 equivalent (its graph has no LayerNorm on each head's queries and keys)");
        // The converter writes no rope scaling for phi2, so llama.cpp would rotate by the unscaled frequencies.
        if (config.RopeScaling is { Type: not "default" } scaling)
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{scaling.Type}' has no llama.cpp phi2 equivalent (the converter writes no RoPE scaling for it)");
        return CheckTanhGelu(config);
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddLayerNormRotaryHyperParameters(metadata, config, withKeyValueHeads: true, parallelResidual: null);
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        AddTokenEmbedding(tensors, names, config, source);
        for (var i = 0; i < config.NumLayers; i++)
            foreach (var (hf, gguf) in LayerTensors)
                foreach (var part in new[] { "weight", "bias" })
                    tensors.Add(Required($"blk.{i}.{gguf}.{part}", $"model.layers.{i}.{hf}.{part}", names, source));
        tensors.Add(Same("output_norm.weight", "model.final_layernorm.weight", source));
        tensors.Add(Same("output_norm.bias", "model.final_layernorm.bias", source));
        const string needed = " (llama.cpp's phi2 needs the output matrix and its bias)";
        tensors.Add(Required("output.weight", RequiredOutputHead(names, config), names, source, needed));
        tensors.Add(Required("output.bias", "lm_head.bias", names, source, needed));
        return tensors;
    }

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);
}
