using System.Text.Json;
using Json.Schema;

namespace SharpTune.Training.Rewards;

/// <summary>
/// <c>json-schema</c>: 1 when the completion (trimmed, a surrounding ```json fence removed) parses as JSON and validates
/// against the schema (JSON Schema 2020-12 by default, through JsonSchema.Net); 0.5 when it parses but does not validate;
/// 0 when it is not JSON. Without a schema, any JSON scores 1.
/// </summary>
public sealed class JsonSchemaReward : PerSampleReward
{
    private readonly JsonSchema? schema;

    /// <param name="schemaText">The schema's JSON text, or null to reward any valid JSON.</param>
    /// <param name="source">Where the schema came from, for error messages.</param>
    public JsonSchemaReward(string? schemaText, string source = "the schema")
    {
        if (schemaText is null) return;
        try { schema = JsonSchema.FromText(schemaText); }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{source}: not a valid JSON Schema: {e.Message}", e);
        }
    }

    public override string Name => "json-schema";

    public override double? Score(RewardSample sample)
    {
        JsonDocument document;
        try { document = JsonDocument.Parse(Unfence(sample.Completion)); }
        catch (JsonException) { return 0.0; }
        using (document)
        {
            if (schema is null) return 1.0;
            return schema.Evaluate(document.RootElement).IsValid ? 1.0 : 0.5;
        }
    }

    private static string Unfence(string text)
    {
        var t = text.Trim();
        if (!t.StartsWith("```", StringComparison.Ordinal)) return t;
        var firstLine = t.IndexOf('\n');
        var end = t.LastIndexOf("```", StringComparison.Ordinal);
        return firstLine < 0 || end <= firstLine ? t : t[(firstLine + 1)..end].Trim();
    }
}
