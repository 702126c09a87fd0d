using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// GPT-NeoX / Pythia in llama.cpp (arch <c>gptneox</c>), as llama.cpp's convert_hf_to_gguf GPTNeoXModel writes them:
/// LayerNorms with biases, NEOX RoPE on the first
/// <c>rope.dimension_count</c> = int(rotary_pct · head width) dimensions of each head, <c>use_parallel_residual</c>, and
/// the fused <c>query_key_value</c> as <c>attn_qkv</c> with its rows reordered. transformers stores that projection per
/// head (head 0's q, k, v, then head 1's…); llama.cpp's graph splits it as all queries, then all keys, then all values,
/// so the converter reshapes the rows to (heads, 3, head width) and concatenates the q, k and v blocks, the bias alike.
/// <para>
/// llama.cpp's gptneox loader requires every bias and the output matrix. A model without attention biases
/// (attention_bias false) gets zero biases, which compute the same; a tied model gets <c>output.weight</c> as a copy of the
/// embeddings (the converter writes only the tensors the checkpoint holds, which llama.cpp would then refuse to load).
/// The converter leaves out rope.freq_base (llama.cpp then uses 10000); it is written here so another rotary_emb_base is
/// honoured.
/// </para>
/// </summary>
internal sealed class GptNeoXGguf : GgufArchitecture
{
    private const string Prefix = "gpt_neox.";

    // (checkpoint module under gpt_neox.layers.N, GGUF name, is a linear layer)
    private static readonly (string Hf, string Gguf, bool Linear)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm", false), ("attention.query_key_value", "attn_qkv", true), ("attention.dense", "attn_output", true),
        ("post_attention_layernorm", "ffn_norm", false), ("mlp.dense_h_to_4h", "ffn_up", true), ("mlp.dense_4h_to_h", "ffn_down", true),
    ];

    public override string Name => "gptneox";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        // The converter writes no rope scaling for gptneox, so llama.cpp would rotate by the unscaled frequencies.
        if (config.RopeScaling is { Type: not "default" } scaling)
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{scaling.Type}' has no llama.cpp gptneox equivalent (the converter writes no RoPE scaling for it)");
        return CheckTanhGelu(config);
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddLayerNormRotaryHyperParameters(metadata, config, withKeyValueHeads: false, parallelResidual: config.UseParallelResidual ?? true);
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        // transformers accepts a tied checkpoint that keeps only embed_out.weight (GptNeoXTests); llama.cpp reads token_embd.
        var embedding = names.Contains(Prefix + "embed_in.weight") ? Prefix + "embed_in.weight"
            : config.TieWordEmbeddings && names.Contains(GPTNeoXForCausalLM.OutputHeadName) ? GPTNeoXForCausalLM.OutputHeadName
            : throw new InvalidDataException($"the checkpoint has no {Prefix}embed_in.weight");
        var tensors = new List<MappedTensor> { Same("token_embd.weight", embedding, source) };
        for (var i = 0; i < config.NumLayers; i++)
            foreach (var (hf, gguf, linear) in LayerTensors)
            {
                var weight = $"{Prefix}layers.{i}.{hf}.weight";
                var bias = $"{Prefix}layers.{i}.{hf}.bias";
                if (!names.Contains(weight)) throw new InvalidDataException($"the checkpoint has no {weight}");
                var isQkv = gguf == "attn_qkv";
                tensors.Add(isQkv ? QkvBlocks($"blk.{i}.attn_qkv.weight", weight, source, config) : Same($"blk.{i}.{gguf}.weight", weight, source));
                var rows = source.ShapeOf(weight)[0];
                tensors.Add(names.Contains(bias)
                    ? isQkv ? QkvBlocks($"blk.{i}.attn_qkv.bias", bias, source, config) : Same($"blk.{i}.{gguf}.bias", bias, source)
                    : linear && !config.AttentionBias && hf.StartsWith("attention.", StringComparison.Ordinal)
                        ? new MappedTensor($"blk.{i}.{gguf}.bias", [rows], _ => new float[rows])
                        : throw new InvalidDataException($"the checkpoint has no {bias}"));
            }
        tensors.Add(Same("output_norm.weight", Prefix + "final_layer_norm.weight", source));
        tensors.Add(Same("output_norm.bias", Prefix + "final_layer_norm.bias", source));
        var head = !config.TieWordEmbeddings && names.Contains(GPTNeoXForCausalLM.OutputHeadName) ? GPTNeoXForCausalLM.OutputHeadName
            : config.TieWordEmbeddings ? embedding
            : throw new InvalidDataException($"the checkpoint has no {GPTNeoXForCausalLM.OutputHeadName} (tie_word_embeddings is false)");
        tensors.Add(Same("output.weight", head, source));
        return tensors;
    }

    public override string? LinearName(string checkpointName)
    {
        if (!checkpointName.StartsWith(Prefix + "layers.", StringComparison.Ordinal)) return null;
        var parts = checkpointName[(Prefix.Length + "layers.".Length)..].Split('.');
        if (parts.Length < 3) return null;
        var module = string.Join('.', parts[1..^1]);
        var match = LayerTensors.FirstOrDefault(t => t.Hf == module && t.Linear);
        return match.Gguf is null ? null : $"blk.{parts[0]}.{match.Gguf}.weight";
    }

    /// <summary>
    /// LoRA's B on query_key_value has the weight's rows, so it is reordered the same way: convert_lora_to_gguf.py runs the
    /// model's modify_tensors on B (its LoraTorchTensor reshapes and concatenates B's rows, A unchanged).
    /// </summary>
    public override float[] TransformLoraB(string checkpointName, float[] values, long[] shape, ModelConfig config) =>
        checkpointName.EndsWith(".attention.query_key_value.weight", StringComparison.Ordinal)
            ? HeadInterleavedToBlocks(values, shape[0], shape.Length > 1 ? shape[1] : 1, config.NumHeads)
            : values;

    private static MappedTensor QkvBlocks(string ggufName, string checkpointName, IWeightSource source, ModelConfig config)
    {
        var shape = source.ShapeOf(checkpointName);
        var columns = shape.Length > 1 ? shape[1] : 1;
        return new MappedTensor(ggufName, shape, s => HeadInterleavedToBlocks(s.Read(checkpointName), shape[0], columns, config.NumHeads));
    }

    /// <summary>
    /// Rows ordered (head, q|k|v, head width) become (q|k|v, head, head width): the converter's
    /// reshape((n_head, 3, head, -1)) followed by cat of [:, 0], [:, 1], [:, 2].
    /// </summary>
    internal static float[] HeadInterleavedToBlocks(float[] values, long rows, long columns, int heads)
    {
        if (rows % (3L * heads) != 0)
            throw new InvalidDataException($"query_key_value has {rows} rows, not 3 × {heads} heads × head width");
        var headWidth = rows / (3L * heads);
        var result = new float[values.Length];
        for (long h = 0; h < heads; h++)
            for (long part = 0; part < 3; part++)
            {
                var from = (h * 3 + part) * headWidth * columns;
                var to = (part * heads + h) * headWidth * columns;
                Array.Copy(values, from, result, to, headWidth * columns);
            }
        return result;
    }
}
