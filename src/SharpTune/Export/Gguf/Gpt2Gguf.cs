using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// GPT-2 in llama.cpp (arch <c>gpt2</c>): learned positions (<c>position_embd</c>), LayerNorm with biases, fused
/// <c>attn_qkv</c>. Hugging Face's Conv1D weights are stored [in, out] and are transposed; the output projection is the
/// tied token embedding, which llama.cpp uses when <c>output.weight</c> is absent.
/// </summary>
internal sealed class Gpt2Gguf : GgufArchitecture
{
    private static readonly (string Hf, string Gguf, bool Conv1D)[] LayerTensors =
    [
        ("ln_1", "attn_norm", false), ("attn.c_attn", "attn_qkv", true), ("attn.c_proj", "attn_output", true),
        ("ln_2", "ffn_norm", false), ("mlp.c_fc", "ffn_up", true), ("mlp.c_proj", "ffn_down", true),
    ];

    public override string Name => "gpt2";

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        Add(metadata, "gpt2.block_count", GgufValue.U32((uint)config.NumLayers));
        Add(metadata, "gpt2.context_length", GgufValue.U32((uint)config.MaxPositionEmbeddings));
        Add(metadata, "gpt2.embedding_length", GgufValue.U32((uint)config.HiddenSize));
        Add(metadata, "gpt2.feed_forward_length", GgufValue.U32((uint)config.IntermediateSize));
        Add(metadata, "gpt2.attention.head_count", GgufValue.U32((uint)config.NumHeads));
        Add(metadata, "gpt2.attention.layer_norm_epsilon", GgufValue.F32((float)config.NormEps));
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        // transformers accepts GPT-2 checkpoints with or without the "transformer." prefix.
        var prefix = source.Names.Contains("transformer.wte.weight") ? "transformer." : "";
        var tensors = new List<MappedTensor>
        {
            Same("token_embd.weight", prefix + "wte.weight", source),
            Same("position_embd.weight", prefix + "wpe.weight", source),
        };
        for (var i = 0; i < config.NumLayers; i++)
            foreach (var (hf, gguf, conv) in LayerTensors)
            {
                var weight = $"{prefix}h.{i}.{hf}.weight";
                tensors.Add(conv ? Transposed($"blk.{i}.{gguf}.weight", weight, source) : Same($"blk.{i}.{gguf}.weight", weight, source));
                tensors.Add(Same($"blk.{i}.{gguf}.bias", $"{prefix}h.{i}.{hf}.bias", source));
            }
        tensors.Add(Same("output_norm.weight", prefix + "ln_f.weight", source));
        tensors.Add(Same("output_norm.bias", prefix + "ln_f.bias", source));
        return tensors;
    }

    public override string? LinearName(string checkpointName)
    {
        var name = checkpointName.StartsWith("transformer.", StringComparison.Ordinal) ? checkpointName["transformer.".Length..] : checkpointName;
        var parts = name.Split('.');
        if (parts.Length < 4 || parts[0] != "h") return null;
        var module = string.Join('.', parts[2..^1]);
        var match = LayerTensors.FirstOrDefault(t => t.Hf == module && t.Conv1D);
        return match.Gguf is null ? null : $"blk.{parts[1]}.{match.Gguf}.weight";
    }
}
