using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// What llama.cpp's gemma, gemma2 and gemma3 share, as convert_hf_to_gguf.py's GemmaModel, Gemma2Model and Gemma3Model
/// write them: NEOX RoPE (Q/K rows kept), a tied head, and every RMSNorm weight stored as 1 + w
/// because llama.cpp's norm multiplies by the weight where Gemma's RMSNorm multiplies by (1 + w). llama.cpp fixes some
/// of what transformers reads from the config (the attention scale, GELU-tanh, no biases, the window pattern);
/// configurations it cannot express are refused before anything is written.
/// </summary>
internal abstract class GemmaGguf : GgufArchitecture
{
    /// <summary>(checkpoint module, GGUF tensor) of one decoder layer, in file order.</summary>
    protected abstract IReadOnlyList<(string Hf, string Gguf)> LayerTensors { get; }

    /// <summary>The layer count llama.cpp takes for the family's 27B, whose queries it scales by 1/√(n_embd / n_head).</summary>
    protected abstract int LayersOf27B { get; }

    /// <summary>Throws the refusal for <paramref name="config"/>: <paramref name="what"/> and why llama.cpp differs.</summary>
    protected void Refuse(ModelConfig config, string what) =>
        throw new NotSupportedException($"{config.Architecture}: {what}; llama.cpp's {Name} would compute a different model");

    /// <summary>
    /// The checks both families need: llama.cpp's GELU-tanh, no attention biases, and its query scale of 1/√head_dim,
    /// or 1/√(n_embd / n_head) for the 27B (llama_model::load_hparams, after gemma_pytorch's config).
    /// </summary>
    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        var warnings = new List<string>();
        if (config.HiddenAct == "gelu" && ExactGeluIsApproximated)
            warnings.Add($"llama.cpp's {Name} uses the tanh-approximated GELU where the config's hidden_act \"gelu\" is the exact one; " +
                         "the two differ by at most 5e-4 per activation");
        else if (config.HiddenAct != "gelu_pytorch_tanh")
            Refuse(config, $"hidden_activation '{config.HiddenAct}' (llama.cpp's {Name} uses the tanh-approximated GELU)");
        if (config.AttentionBias)
            Refuse(config, $"attention_bias = true (llama.cpp's {Name} has no attention biases)");
        var llamaCppScalar = config.NumLayers == LayersOf27B ? config.HiddenSize / config.NumHeads : config.HeadDim;
        if (config.QueryPreAttnScalar is { } scalar && scalar != llamaCppScalar)
            Refuse(config, $"query_pre_attn_scalar = {scalar} (llama.cpp's {Name} scales attention by 1/√{llamaCppScalar} for {config.NumLayers} layers)");
        return warnings;
    }

    /// <summary>
    /// Whether a config's exact GELU ("gelu") is exported with a warning rather than refused: Gemma 1, whose published
    /// configs name it (GemmaMLP applies hidden_act) though the models were trained with the tanh approximation.
    /// </summary>
    protected virtual bool ExactGeluIsApproximated => false;

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

    /// <summary>The hyper-parameters both converters write: the decoder's, and head_dim as key and value length.</summary>
    protected void AddGemmaHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        Add(metadata, $"{Name}.attention.key_length", GgufValue.U32((uint)config.HeadDim));
        Add(metadata, $"{Name}.attention.value_length", GgufValue.U32((uint)config.HeadDim));
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        AddTokenEmbedding(tensors, names, config, source);
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

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);
}
