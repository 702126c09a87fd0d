using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// StableLM in llama.cpp (arch <c>stablelm</c>), as convert_hf_to_gguf.py's StableLMModel writes it (ggml-org/llama.cpp,
/// conversion/stablelm.py): LayerNorms with biases (<c>attn_norm</c>, <c>output_norm</c>, and <c>ffn_norm</c> — the
/// post_attention_layernorm — only with a sequential residual: llama.cpp's graph runs the parallel block when a layer has
/// none), <c>attn_q</c>/<c>attn_k</c>/<c>attn_v</c> with their biases when use_qkv_bias, <c>attn_output</c>, the gated
/// <c>ffn_gate</c>/<c>ffn_up</c>/<c>ffn_down</c>, and with qk_layernorm each layer's per-head norm weights stacked into
/// <c>attn_q_norm</c> (heads × head width) and <c>attn_k_norm</c> (key/value heads × head width), as the converter's
/// _stack_qk_norm does; NEOX RoPE on the first <c>rope.dimension_count</c> = int(partial_rotary_factor · head width)
/// dimensions.
/// <para>
/// The converter leaves out rope.freq_base (llama.cpp then uses 10000); it is written here so another rope_theta is
/// honoured. llama.cpp's stablelm loader requires <c>output.weight</c>, so a tied model gets the embeddings there too.
/// </para>
/// </summary>
internal sealed class StableLmGguf : GgufArchitecture
{
    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"),
        ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
    ];

    public override string Name => "stablelm";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        // The converter writes no rope scaling for stablelm, so llama.cpp would rotate by the unscaled frequencies.
        if (config.RopeScaling is { Type: not "default" } scaling)
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{scaling.Type}' has no llama.cpp stablelm equivalent (the converter writes no RoPE scaling for it)");
        // llama.cpp's stablelm MLP is SiLU-gated (build_ffn with LLM_FFN_SILU).
        if (config.HiddenAct is not ("silu" or "swish"))
            throw new NotSupportedException(
                $"{config.Architecture}: hidden_act '{config.HiddenAct}' has no llama.cpp stablelm equivalent (its MLP is SiLU-gated)");
        return [];
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddLayerNormRotaryHyperParameters(metadata, config, withKeyValueHeads: true, parallelResidual: config.UseParallelResidual ?? false);
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        AddTokenEmbedding(tensors, names, config, source);
        var parallel = config.UseParallelResidual == true;
        for (var i = 0; i < config.NumLayers; i++)
        {
            foreach (var (hf, gguf) in LayerTensors)
            {
                if (hf == "post_attention_layernorm" && parallel) continue;
                var hasBias = hf.EndsWith("layernorm", StringComparison.Ordinal);
                foreach (var part in hasBias ? new[] { "weight", "bias" } : new[] { "weight" })
                {
                    tensors.Add(Required($"blk.{i}.{gguf}.{part}", $"model.layers.{i}.{hf}.{part}", names, source));
                }
                if (config.AttentionBias && hf is "self_attn.q_proj" or "self_attn.k_proj" or "self_attn.v_proj")
                {
                    tensors.Add(Required($"blk.{i}.{gguf}.bias", $"model.layers.{i}.{hf}.bias", names, source, " (use_qkv_bias is true)"));
                }
            }
            if (config.QkLayerNorm)
            {
                tensors.Add(StackedHeadNorms(names, source, i, "q_layernorm", "attn_q_norm", config.NumHeads, config.HeadDim));
                tensors.Add(StackedHeadNorms(names, source, i, "k_layernorm", "attn_k_norm", config.NumKeyValueHeads, config.HeadDim));
            }
        }
        tensors.Add(Same("output_norm.weight", "model.norm.weight", source));
        tensors.Add(Same("output_norm.bias", "model.norm.bias", source));
        tensors.Add(Required("output.weight", RequiredOutputHead(names, config), names, source));
        return tensors;
    }

    // The heads' norms.N.weight (head width each) in head order, as one (heads, head width) tensor.
    private static MappedTensor StackedHeadNorms(ISet<string> names, IWeightSource source, int layer, string module, string gguf, int heads, int headDim)
    {
        var parts = Enumerable.Range(0, heads).Select(h => $"model.layers.{layer}.self_attn.{module}.norms.{h}.weight").ToArray();
        foreach (var part in parts)
            if (!names.Contains(part)) throw new InvalidDataException($"the checkpoint has no {part} (qk_layernorm is true)");
        return new MappedTensor($"blk.{layer}.{gguf}.weight", [heads, headDim], s => parts.SelectMany(s.Read).ToArray());
    }

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);
}
