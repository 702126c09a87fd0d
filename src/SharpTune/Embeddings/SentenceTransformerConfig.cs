using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Models;

namespace SharpTune.Embeddings;

/// <summary>How token hidden states become one vector, as sentence-transformers' <c>Pooling</c> module names its modes.</summary>
public enum PoolingMode
{
    /// <summary>The first token's hidden state (<c>pooling_mode_cls_token</c>).</summary>
    Cls,

    /// <summary>Element-wise maximum over the tokens (<c>pooling_mode_max_tokens</c>).</summary>
    Max,

    /// <summary>Mean over the tokens (<c>pooling_mode_mean_tokens</c>).</summary>
    Mean,

    /// <summary>Sum over the tokens divided by √(token count) (<c>pooling_mode_mean_sqrt_len_tokens</c>).</summary>
    MeanSqrtLength,

    /// <summary>Mean weighted by position 1, 2, … (<c>pooling_mode_weightedmean_tokens</c>, SGPT).</summary>
    WeightedMean,

    /// <summary>The last token's hidden state (<c>pooling_mode_lasttoken</c>), what decoder embedders such as Qwen3-Embedding use.</summary>
    LastToken,
}

/// <summary>
/// What a sentence-transformers model folder says about turning a model's last hidden state into an embedding:
/// <c>modules.json</c> (Transformer → Pooling → optional Normalize), the Pooling module's <c>config.json</c>, and the
/// prompts in <c>config_sentence_transformers.json</c>. A folder without these files gets <see cref="Default"/>.
/// </summary>
public sealed record SentenceTransformerConfig
{
    public const string ModulesFileName = "modules.json";
    public const string SettingsFileName = "config_sentence_transformers.json";

    /// <summary>The Transformer module's settings file (its <c>max_seq_length</c>).</summary>
    internal const string TransformerSettingsFileName = "sentence_bert_config.json";

    /// <summary>
    /// Pooling modes in the order sentence-transformers concatenates them (cls, max, mean, mean_sqrt_len, weightedmean,
    /// lasttoken); the embedding has <c>Count × hidden_size</c> dimensions.
    /// </summary>
    public required IReadOnlyList<PoolingMode> PoolingModes { get; init; }

    /// <summary>
    /// Pooling's <c>include_prompt</c>: false leaves the prompt's tokens out of mean/max/last-token pooling (INSTRUCTOR,
    /// GRIT); true (the default) pools over them.
    /// </summary>
    public bool IncludePrompt { get; init; } = true;

    /// <summary>Whether modules.json ends in a Normalize module: embeddings are scaled to unit L2 length.</summary>
    public bool Normalize { get; init; }

    /// <summary>Named prompts (e.g. "query" → "Instruct: …\nQuery:"), prepended to the text as sentence-transformers does.</summary>
    public IReadOnlyDictionary<string, string> Prompts { get; init; } = new Dictionary<string, string>();

    /// <summary>The prompt used when a request names none (<c>default_prompt_name</c>); null = no prompt.</summary>
    public string? DefaultPromptName { get; init; }

    /// <summary>
    /// The Transformer module's <c>max_seq_length</c> (<c>sentence_bert_config.json</c>): texts are cut to this many tokens,
    /// as sentence-transformers' <c>encode</c> tokenizes with <c>truncation=True, max_length=max_seq_length</c>; null = no
    /// cut, so a text past the context length is an error.
    /// </summary>
    public int? MaxSeqLength { get; init; }

    /// <summary>Whether these settings were read from sentence-transformers files (false: <see cref="Default"/>).</summary>
    public bool FromSentenceTransformerFiles { get; init; }

    /// <summary>
    /// For a decoder with no sentence-transformers files: last-token pooling, then L2 normalisation — vLLM's default for a
    /// generative model served as an embedder (vllm-project/vllm@3b2aedb7, model_executor/models/adapters.py,
    /// <c>as_embedding_model</c>: "extracted from the normalized hidden state corresponding to the last token").
    /// </summary>
    public static SentenceTransformerConfig Default { get; } = new() { PoolingModes = [PoolingMode.LastToken], Normalize = true };

    /// <summary>The prompt text for <paramref name="promptName"/>, else the default prompt's, else null.</summary>
    /// <exception cref="ArgumentException">No prompt has that name.</exception>
    public string? PromptFor(string? promptName)
    {
        if (promptName is null) return DefaultPromptName is { } name && Prompts.TryGetValue(name, out var text) ? text : null;
        return Prompts.TryGetValue(promptName, out var prompt) ? prompt : throw new ArgumentException(
            $"prompt name '{promptName}' is not one of this model's prompts" +
            (Prompts.Count == 0 ? $" (it has none: {SettingsFileName} lists none)" : $": {string.Join(", ", Prompts.Keys.Select(k => $"'{k}'"))}"));
    }

    /// <summary>
    /// Reads <paramref name="directory"/>'s sentence-transformers files; <see cref="Default"/> when it has no modules.json
    /// (prompts from config_sentence_transformers.json still apply).
    /// </summary>
    /// <param name="hiddenSize">The model's hidden size, checked against the Pooling module's word_embedding_dimension.</param>
    /// <exception cref="InvalidDataException">
    /// A file is malformed (not JSON, a field of the wrong type, a Pooling folder without config.json) or names a module this
    /// embedder does not run (Dense, …); the message names the file and the field.
    /// </exception>
    public static SentenceTransformerConfig FromDirectory(string directory, int? hiddenSize = null)
    {
        var (prompts, defaultPrompt) = ReadPrompts(Path.Combine(directory, SettingsFileName));
        var modulesPath = Path.Combine(directory, ModulesFileName);
        if (!File.Exists(modulesPath)) return Default with { Prompts = prompts, DefaultPromptName = defaultPrompt };

        var modules = ReadJson(modulesPath) as JsonArray
            ?? throw new InvalidDataException($"{modulesPath}: expected a JSON array of modules");
        SentenceTransformerConfig? pooled = null;
        var normalize = false;
        int? maxSeqLength = null;
        for (var i = 0; i < modules.Count; i++)
        {
            var module = new ConfigReader(modules[i] as JsonObject ?? throw new InvalidDataException(
                $"{modulesPath}: module {i} must be a JSON object, found {modules[i]?.ToJsonString() ?? "null"}"), $"{modulesPath}: module {i}");
            var type = module.OptionalString("type") ?? throw new InvalidDataException($"{modulesPath}: module {i} has no 'type'");
            // "sentence_transformers.models.Pooling"; the last segment names the module in every release's layout.
            switch (type[(type.LastIndexOf('.') + 1)..])
            {
                case "Transformer":
                    if (pooled is not null) throw Unsupported(modulesPath, i, type, "a Transformer module after Pooling");
                    maxSeqLength = ReadMaxSeqLength(Path.Combine(directory, module.OptionalString("path") ?? "", TransformerSettingsFileName));
                    break;
                case "Pooling":
                    if (pooled is not null) throw Unsupported(modulesPath, i, type, "a second Pooling module");
                    var folder = module.OptionalString("path") ?? "";
                    var path = Path.Combine(directory, folder, "config.json");
                    if (!File.Exists(path))
                        throw new InvalidDataException($"{modulesPath}: module {i} ({type}) has path '{folder}', but {path} does not exist");
                    pooled = ReadPooling(path, hiddenSize);
                    break;
                case "Normalize":
                    if (pooled is null) throw Unsupported(modulesPath, i, type, "Normalize before Pooling");
                    normalize = true;
                    break;
                default:
                    throw Unsupported(modulesPath, i, type, "a module with its own computation");
            }
        }
        if (pooled is null) throw new InvalidDataException($"{modulesPath}: no sentence_transformers.models.Pooling module is listed");
        return pooled with
        {
            Normalize = normalize, MaxSeqLength = maxSeqLength, Prompts = prompts, DefaultPromptName = defaultPrompt, FromSentenceTransformerFiles = true,
        };
    }

    /// <summary>
    /// The Transformer module's <c>max_seq_length</c>, as sentence-transformers' <c>Transformer.load</c> reads it from
    /// sentence_bert_config.json (UKPLab/sentence-transformers@5975b020, sentence_transformers/models/Transformer.py); null
    /// when the file or the key is absent or null.
    /// </summary>
    private static int? ReadMaxSeqLength(string path)
    {
        if (!File.Exists(path)) return null;
        var json = new ConfigReader(ReadJson(path) as JsonObject ?? throw new InvalidDataException($"{path}: expected a JSON object"), path);
        return json.OptionalInt("max_seq_length") switch
        {
            null => null,
            >= 1 and var length => length,
            var bad => throw new InvalidDataException($"{path}: max_seq_length must be at least 1, found {bad}"),
        };
    }

    /// <summary>
    /// A Pooling module's config.json, with the constructor's defaults for missing keys (mean on, the others off,
    /// include_prompt on) and its <c>pooling_mode</c> string overriding the flags, as sentence-transformers'
    /// <c>Pooling(**config)</c> reads it (UKPLab/sentence-transformers@85ec6455, sentence_transformers/models/Pooling.py).
    /// </summary>
    public static SentenceTransformerConfig ReadPooling(string configPath, int? hiddenSize = null)
    {
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath}: the Pooling module's config.json is missing", configPath);
        var json = new ConfigReader(ReadJson(configPath) as JsonObject ?? throw new InvalidDataException($"{configPath}: expected a JSON object"), configPath);
        bool Flag(string key, bool fallback) => json.OptionalBool(key) ?? fallback;
        var flags = new Dictionary<PoolingMode, bool>
        {
            [PoolingMode.Cls] = Flag("pooling_mode_cls_token", false),
            [PoolingMode.Max] = Flag("pooling_mode_max_tokens", false),
            [PoolingMode.Mean] = Flag("pooling_mode_mean_tokens", true),
            [PoolingMode.MeanSqrtLength] = Flag("pooling_mode_mean_sqrt_len_tokens", false),
            [PoolingMode.WeightedMean] = Flag("pooling_mode_weightedmean_tokens", false),
            [PoolingMode.LastToken] = Flag("pooling_mode_lasttoken", false),
        };
        if (json.OptionalString("pooling_mode") is { } mode)
        {
            var chosen = ParsePoolingMode(mode) ?? throw new InvalidDataException(
                $"{configPath}: pooling_mode '{mode}' is not one of {string.Join(", ", PoolingModeNames.Keys.Order(StringComparer.Ordinal))}");
            foreach (var key in flags.Keys) flags[key] = key == chosen;
        }
        var modes = Enum.GetValues<PoolingMode>().Where(m => flags[m]).ToArray();   // enum order = concatenation order
        if (modes.Length == 0) throw new InvalidDataException($"{configPath}: no pooling mode is switched on");
        if (json.OptionalInt("word_embedding_dimension") is { } width && hiddenSize is { } hidden && width != hidden)
            throw new InvalidDataException($"{configPath}: word_embedding_dimension is {width} but the model's hidden size is {hidden}");
        return new SentenceTransformerConfig { PoolingModes = modes, IncludePrompt = Flag("include_prompt", true) };
    }

    /// <summary>The Pooling module's <c>pooling_mode</c> names and the config.json flag each switches on.</summary>
    internal static IReadOnlyDictionary<string, (PoolingMode Mode, string Flag)> PoolingModeNames { get; } = new Dictionary<string, (PoolingMode, string)>
    {
        ["cls"] = (PoolingMode.Cls, "pooling_mode_cls_token"),
        ["max"] = (PoolingMode.Max, "pooling_mode_max_tokens"),
        ["mean"] = (PoolingMode.Mean, "pooling_mode_mean_tokens"),
        ["mean_sqrt_len_tokens"] = (PoolingMode.MeanSqrtLength, "pooling_mode_mean_sqrt_len_tokens"),
        ["weightedmean"] = (PoolingMode.WeightedMean, "pooling_mode_weightedmean_tokens"),
        ["lasttoken"] = (PoolingMode.LastToken, "pooling_mode_lasttoken"),
    };

    /// <summary>A <c>pooling_mode</c> name (any case), or null when it names none.</summary>
    internal static PoolingMode? ParsePoolingMode(string name) =>
        PoolingModeNames.TryGetValue(name.Trim().ToLowerInvariant(), out var mode) ? mode.Mode : null;

    private static (Dictionary<string, string> Prompts, string? DefaultName) ReadPrompts(string path)
    {
        var prompts = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path)) return (prompts, null);
        var json = ReadJson(path) as JsonObject ?? throw new InvalidDataException($"{path}: expected a JSON object");
        if (json["prompts"] is JsonObject named)
            foreach (var (name, value) in named)
                prompts[name] = value is JsonValue v && v.TryGetValue<string>(out var text) ? text
                    : throw new InvalidDataException($"{path}: prompts.{name} must be a string");
        else if (json["prompts"] is { } other)
            throw new InvalidDataException($"{path}: 'prompts' must be an object of name → text, found {other.ToJsonString()}");
        string? defaultName = null;
        if (new ConfigReader(json, path).OptionalString("default_prompt_name") is { } chosen)
        {
            // sentence-transformers refuses a default that names no prompt when it loads the model.
            if (!prompts.ContainsKey(chosen)) throw new InvalidDataException($"{path}: default_prompt_name '{chosen}' is not among the prompts");
            defaultName = chosen;
        }
        return (prompts, defaultName);
    }

    private static JsonNode? ReadJson(string path)
    {
        // Python's json keeps the last of two equal keys and System.Text.Json's JsonObject fails on first access: refuse them here.
        try { return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
    }

    private static InvalidDataException Unsupported(string path, int index, string type, string what) =>
        new($"{path}: module {index} ({type}) is {what}, which SharpTune's embedder does not run; " +
            "it supports Transformer → Pooling → optional Normalize");
}
