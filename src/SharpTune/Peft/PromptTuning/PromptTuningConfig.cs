using System.Text.Json.Nodes;

namespace SharpTune.Peft.PromptTuning;

/// <summary>How the virtual-token embeddings start: PEFT's <c>prompt_tuning_init</c>.</summary>
public enum PromptTuningInit
{
    /// <summary><c>"RANDOM"</c>: standard normal, as PEFT's freshly built <c>nn.Embedding</c>.</summary>
    Random,
    /// <summary><c>"TEXT"</c>: the embeddings of <c>prompt_tuning_init_text</c>'s tokens, repeated or cut to n.</summary>
    Text,
    /// <summary><c>"SAMPLE_VOCAB"</c>: the embeddings of n token ids drawn uniformly from the vocabulary.</summary>
    SampleVocab,
}

/// <summary>
/// Prompt tuning's settings (Lester et al. 2021), one property per field of PEFT's <c>PromptTuningConfig</c> JSON.
/// <see cref="TokenDim"/>, <see cref="NumAttentionHeads"/> and <see cref="NumLayers"/> describe the base model and are
/// filled in by <see cref="PromptTuningAdapter.Inject"/>, as PEFT does.
/// </summary>
public sealed record PromptTuningConfig
{
    public const string PeftTypeName = "PROMPT_TUNING";

    /// <summary><c>num_virtual_tokens</c>: how many trainable embeddings are prepended to every input.</summary>
    public int NumVirtualTokens { get; init; } = 20;
    /// <summary><c>prompt_tuning_init</c>.</summary>
    public PromptTuningInit PromptTuningInit { get; init; } = PromptTuningInit.Random;
    /// <summary><c>prompt_tuning_init_text</c>: required with <see cref="PromptTuningInit.Text"/>.</summary>
    public string? PromptTuningInitText { get; init; }
    /// <summary><c>tokenizer_name_or_path</c>: the folder whose tokenizer.json encodes the init text.</summary>
    public string? TokenizerNameOrPath { get; init; }
    /// <summary>
    /// The init text's token ids when the caller has tokenized it already (not saved). When null, the text is encoded
    /// with the tokenizer in <see cref="TokenizerNameOrPath"/>, special tokens included as PEFT's <c>tokenizer(text)</c> does.
    /// </summary>
    public IReadOnlyList<int>? InitTokenIds { get; init; }
    /// <summary><c>token_dim</c>: the model's hidden size.</summary>
    public int? TokenDim { get; init; }
    /// <summary><c>num_attention_heads</c> of the base model.</summary>
    public int? NumAttentionHeads { get; init; }
    /// <summary><c>num_layers</c> of the base model.</summary>
    public int? NumLayers { get; init; }
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }

    /// <summary>
    /// Throws when a value is out of range or, as PEFT's PromptTuningConfig.__post_init__ does, when a TEXT init lacks
    /// its text or its tokenizer's name (PEFT refuses to load such a file, so none is written).
    /// </summary>
    public void Validate(string source = "prompt tuning config")
    {
        PromptLearningFields.ValidateVirtualTokens(NumVirtualTokens, source);
        if (PromptTuningInit == PromptTuningInit.Text && PromptTuningInitText is null && InitTokenIds is null)
            throw new ArgumentException($"{source}: prompt_tuning_init is TEXT but prompt_tuning_init_text is not given");
        if (PromptTuningInit == PromptTuningInit.Text && string.IsNullOrEmpty(TokenizerNameOrPath))
            throw new ArgumentException($"{source}: prompt_tuning_init is TEXT but tokenizer_name_or_path is not given");
        if (InitTokenIds is { Count: 0 })
            throw new ArgumentException($"{source}: the init text encodes to no tokens");
    }

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT writes for prompt tuning.</summary>
    public JsonObject ToJson() =>
        new PromptLearningFields(NumVirtualTokens, TokenDim, NumAttentionHeads, NumLayers, BaseModelNameOrPath, InferenceMode)
            .ToJson(PeftTypeName, new Dictionary<string, JsonNode?>
            {
                ["prompt_tuning_init"] = PromptTuningInit switch
                {
                    PromptTuningInit.Text => "TEXT",
                    PromptTuningInit.SampleVocab => "SAMPLE_VOCAB",
                    _ => "RANDOM",
                },
                ["prompt_tuning_init_text"] = PromptTuningInitText,
                ["tokenizer_kwargs"] = null,
                ["tokenizer_name_or_path"] = TokenizerNameOrPath,
            });

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static PromptTuningConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        var shared = PromptLearningFields.Read(json, PeftTypeName, source, OwnFields, "a prompt-tuning");
        var init = AdapterState.Read(json, "prompt_tuning_init", "RANDOM", source);
        var initKind = init switch
        {
            "RANDOM" => PromptTuningInit.Random,
            "TEXT" => PromptTuningInit.Text,
            "SAMPLE_VOCAB" => PromptTuningInit.SampleVocab,
            _ => throw new NotSupportedException($"{source}: prompt_tuning_init '{init}' is not supported (RANDOM, TEXT and SAMPLE_VOCAB are)"),
        };
        RefuseTokenizerKwargs(json["tokenizer_kwargs"], initKind, shared.InferenceMode, source);
        var config = new PromptTuningConfig
        {
            NumVirtualTokens = shared.NumVirtualTokens,
            PromptTuningInit = initKind,
            PromptTuningInitText = AdapterState.Read<string?>(json, "prompt_tuning_init_text", null, source),
            TokenizerNameOrPath = AdapterState.Read<string?>(json, "tokenizer_name_or_path", null, source),
            TokenDim = shared.TokenDim,
            NumAttentionHeads = shared.NumAttentionHeads,
            NumLayers = shared.NumLayers,
            BaseModelNameOrPath = shared.BaseModelNameOrPath,
            InferenceMode = shared.InferenceMode,
        };
        config.Validate(source);
        return config;
    }

    private static readonly string[] OwnFields = ["prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs"];

    // tokenizer_kwargs go to AutoTokenizer.from_pretrained for the TEXT init; SharpTune reads the folder's tokenizer.json
    // as it is, so kwargs that could change the init text's ids are refused where the init runs (not in inference mode,
    // where PEFT skips it too). PEFT drops trust_remote_code itself.
    private static void RefuseTokenizerKwargs(JsonNode? kwargs, PromptTuningInit init, bool inferenceMode, string source)
    {
        if (!AdapterState.IsSet(kwargs)) return;
        if (init != PromptTuningInit.Text)
            throw new ArgumentException($"{source}: tokenizer_kwargs is only valid with prompt_tuning_init TEXT, found {kwargs!.ToJsonString()}");
        if (kwargs is not JsonObject entries)
            throw new InvalidDataException($"{source}: field 'tokenizer_kwargs' must be an object, found {kwargs!.ToJsonString()}");
        if (!inferenceMode && entries.Select(e => e.Key).FirstOrDefault(key => key != "trust_remote_code") is { } key)
            throw new NotSupportedException(
                $"{source}: field 'tokenizer_kwargs' = {entries.ToJsonString()} is not supported: '{key}' would change how " +
                "the init text is tokenized, and SharpTune reads the tokenizer.json as it is");
    }
}
