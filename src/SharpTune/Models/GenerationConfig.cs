using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>
/// A model folder's <c>generation_config.json</c>: the end-of-sequence ids generation stops on (Llama 3 lists both
/// <c>&lt;|eot_id|&gt;</c> and <c>&lt;|end_of_text|&gt;</c>) and the sampling defaults the model's authors chose, applied
/// wherever the user or the request sets none, as transformers' <c>generate</c> does.
/// </summary>
public sealed record GenerationConfig
{
    public const string FileName = "generation_config.json";

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public bool? DoSample { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    /// <summary>
    /// The file's <c>repetition_penalty</c>, which transformers' <c>generate</c> applies whether or not it samples (Qwen2's
    /// instruct models ship 1.05); null when the file sets none.
    /// </summary>
    public double? RepetitionPenalty { get; init; }

    /// <summary>No file: nothing changes.</summary>
    public static GenerationConfig None { get; } = new();

    /// <summary>Reads <c>generation_config.json</c> from <paramref name="modelDir"/>; <see cref="None"/> when absent.</summary>
    public static GenerationConfig Load(string modelDir)
    {
        var path = Path.Combine(modelDir, FileName);
        if (!File.Exists(path)) return None;
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
        var r = new ConfigReader(json, path);
        return new GenerationConfig
        {
            EosTokenIds = r.IntOrIntList("eos_token_id"),
            DoSample = r.OptionalBool("do_sample"),
            Temperature = r.OptionalDouble("temperature"),
            TopP = r.OptionalDouble("top_p"),
            TopK = r.OptionalInt("top_k"),
            RepetitionPenalty = r.OptionalDouble("repetition_penalty"),
        };
    }

    /// <summary>
    /// Sampling settings: the caller's where given, else this file's, else SharpTune's defaults (temperature 1, no top-p,
    /// no top-k). A file with do_sample false makes the default greedy (temperature 0); with do_sample true, an
    /// unset top_k is transformers' GenerationConfig default of 50.
    /// </summary>
    /// <param name="defaultTemperature">The caller's own default when neither it nor the file sets one.</param>
    public (double Temperature, double TopP, int TopK) Resolve(double? temperature, double? topP, int? topK, double defaultTemperature = 1.0)
    {
        var t = temperature ?? (DoSample == false ? 0.0 : Temperature ?? defaultTemperature);
        var p = topP ?? (DoSample == true ? TopP ?? 1.0 : 1.0);
        var k = topK ?? (DoSample == true ? TopK ?? 50 : 0);
        return (t, p, k);
    }
}
