using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// Gemma 3's text model in llama.cpp (arch <c>gemma3</c>), as convert_hf_to_gguf.py's Gemma3Model writes it: pre- and
/// post-norms around attention and the MLP, per-head q/k norms, NEOX RoPE (Q/K rows kept), and every RMSNorm weight
/// stored as 1 + w because llama.cpp's norm multiplies by the weight where Gemma3RMSNorm multiplies by (1 + w).
/// llama.cpp fixes some of what transformers reads from the config (the attention scale, GELU-tanh, no attention
/// soft-capping); configurations it cannot express are refused before anything is written.
/// </summary>
internal sealed class Gemma3Gguf : GgufArchitecture
{
    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_proj", "attn_k"), ("self_attn.k_norm", "attn_k_norm"), ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "post_attention_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"), ("post_feedforward_layernorm", "post_ffw_norm"),
    ];

    /// <summary>llama.cpp's gemma3 scales queries by 1/√n_embd_head, except for its 27B size (62 layers): 1/√(n_embd / n_head).</summary>
    private const int LayersOf27B = 62;

    public override string Name => "gemma3";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        void Refuse(string what) => throw new NotSupportedException($"{config.Architecture}: {what}; llama.cpp's gemma3 would compute a different model");
        if (config.AttnLogitSoftcapping is not null)
            Refuse($"attn_logit_softcapping = {config.AttnLogitSoftcapping} (llama.cpp's gemma3 has no attention soft-capping)");
        if (config.HiddenAct != "gelu_pytorch_tanh")
            Refuse($"hidden_activation '{config.HiddenAct}' (llama.cpp's gemma3 uses the tanh-approximated GELU)");
        if (config.AttentionBias)
            Refuse("attention_bias = true (llama.cpp's gemma3 has no attention biases)");
        var llamaCppScalar = config.NumLayers == LayersOf27B ? config.HiddenSize / config.NumHeads : config.HeadDim;
        if (config.QueryPreAttnScalar is { } scalar && scalar != llamaCppScalar)
            Refuse($"query_pre_attn_scalar = {scalar} (llama.cpp's gemma3 scales attention by 1/√{llamaCppScalar} for {config.NumLayers} layers)");
        if (config.RopeScaling is { Type: not ("default" or "linear") } scaling)
            Refuse($"rope_scaling '{scaling.Type}' (llama.cpp's gemma3 applies linear scaling only)");
        if (SlidingPeriod(config) is null)
            Refuse($"layer_types [{string.Join(", ", config.LayerTypes)}] (llama.cpp's gemma3 slides all layers but every n-th, counting from the first)");
        return [];
    }

    /// <summary>
    /// The period n with which llama.cpp's set_swa_pattern(n) reproduces the model's layers (layer i slides iff
    /// i % n &lt; n − 1, as transformers' sliding_window_pattern does); 1 when no layer slides; null when none fits.
    /// </summary>
    internal static int? SlidingPeriod(ModelConfig config)
    {
        var sliding = Enumerable.Range(0, config.NumLayers).Select(i => config.SlidingWindowOf(i) is not null).ToArray();
        for (var period = 1; period <= config.NumLayers + 1; period++)
            if (sliding.Select((s, i) => s == (i % period < period - 1)).All(ok => ok))
                return period;
        return null;
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        Add(metadata, "gemma3.attention.key_length", GgufValue.U32((uint)config.HeadDim));
        Add(metadata, "gemma3.attention.value_length", GgufValue.U32((uint)config.HeadDim));
        if (config.RopeScaling is { Type: "linear" } linear)
        {
            Add(metadata, "gemma3.rope.scaling.type", GgufValue.Str("linear"));
            Add(metadata, "gemma3.rope.scaling.factor", GgufValue.F32((float)linear.Factor));
        }
        if (config.FinalLogitSoftcapping is { } cap)
            Add(metadata, "gemma3.final_logit_softcapping", GgufValue.F32((float)cap));
        var period = SlidingPeriod(config) ?? throw new InvalidOperationException("Check refuses layer patterns llama.cpp cannot express");
        if (period > 1 && config.SlidingWindow is { } window)
        {
            // The converter writes only the window; llama.cpp defaults the period to 6 and the local RoPE base to 10000,
            // and reads these two keys when present, so non-default patterns and bases survive the round trip.
            Add(metadata, "gemma3.attention.sliding_window", GgufValue.U32((uint)window));
            Add(metadata, "gemma3.attention.sliding_window_pattern", GgufValue.U32((uint)period));
            Add(metadata, "gemma3.rope.freq_base_swa", GgufValue.F32((float)(config.RopeLocalBaseFreq ?? 10_000.0)));
        }
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        var embedding = Stored(names, "model.embed_tokens.weight")
                        ?? (config.TieWordEmbeddings ? Stored(names, "lm_head.weight") : null)
                        ?? throw new InvalidDataException("the checkpoint has no model.embed_tokens.weight");
        tensors.Add(Same("token_embd.weight", embedding, source));
        for (var i = 0; i < config.NumLayers; i++)
            foreach (var (hf, gguf) in LayerTensors)
            {
                var stored = Stored(names, $"model.layers.{i}.{hf}.weight")
                             ?? throw new InvalidDataException($"the checkpoint has no model.layers.{i}.{hf}.weight");
                tensors.Add(gguf.EndsWith("norm", StringComparison.Ordinal)
                    ? ShiftedNorm($"blk.{i}.{gguf}.weight", stored, source)
                    : Same($"blk.{i}.{gguf}.weight", stored, source));
            }
        tensors.Add(ShiftedNorm("output_norm.weight", Stored(names, "model.norm.weight")
                                                      ?? throw new InvalidDataException("the checkpoint has no model.norm.weight"), source));
        if (!config.TieWordEmbeddings && Stored(names, "lm_head.weight") is { } head)
            tensors.Add(Same("output.weight", head, source));
        return tensors;
    }

    /// <summary>A Gemma RMSNorm weight as llama.cpp multiplies by it: 1 + w.</summary>
    private static MappedTensor ShiftedNorm(string ggufName, string checkpointName, IWeightSource source) =>
        new(ggufName, source.ShapeOf(checkpointName), s => s.Read(checkpointName).Select(w => w + 1f).ToArray());

    public override string? LinearName(string checkpointName)
    {
        if (DecoderParts(checkpointName) is not { } parts) return null;
        var match = LayerTensors.FirstOrDefault(t => t.Hf == parts.Module && !t.Gguf.EndsWith("norm", StringComparison.Ordinal));
        return match.Gguf is null ? null : $"blk.{parts.Layer}.{match.Gguf}.weight";
    }
}
