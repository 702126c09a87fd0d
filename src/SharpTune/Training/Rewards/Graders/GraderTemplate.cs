using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Training.Rewards.Graders;

/// <summary>
/// OpenAI grader templates: <c>{{sample.output_text}}</c> (the completion), <c>{{sample.output_json.a.b}}</c> (a field of
/// the completion parsed as JSON), <c>{{item.a.b}}</c> (a field of the data row). Anything else is kept as written.
/// </summary>
public static partial class GraderTemplate
{
    /// <summary>The template with every reference replaced by its value (strings as they are, other JSON as JSON text).</summary>
    public static string Render(string template, RewardSample sample) =>
        Reference().Replace(template, m => Resolve(m.Groups[1].Value, sample) ?? "");

    /// <summary>Throws naming <paramref name="field"/> when a reference is neither sample.* nor item.*.</summary>
    public static void Check(string template, string field)
    {
        foreach (Match m in Reference().Matches(template))
        {
            var path = m.Groups[1].Value;
            if (!path.StartsWith("item.", StringComparison.Ordinal) && path != "sample.output_text" &&
                !path.StartsWith("sample.output_json", StringComparison.Ordinal))
                throw new ArgumentException($"{field}: unknown reference '{{{{{path}}}}}' (use {{{{sample.output_text}}}}, {{{{sample.output_json.…}}}} or {{{{item.FIELD}}}})");
        }
    }

    private static string? Resolve(string path, RewardSample sample)
    {
        if (path == "sample.output_text") return sample.Completion;
        JsonNode? node;
        string[] parts;
        if (path.StartsWith("item.", StringComparison.Ordinal))
        {
            node = sample.Fields;
            parts = path["item.".Length..].Split('.');
        }
        else if (path.StartsWith("sample.output_json", StringComparison.Ordinal))
        {
            try { node = JsonNode.Parse(sample.Completion); }
            catch (JsonException) { return null; }
            parts = path.Length > "sample.output_json".Length ? path["sample.output_json.".Length..].Split('.') : [];
        }
        else return null;
        foreach (var part in parts)
            node = node is JsonObject o ? o[part] : node is JsonArray a && int.TryParse(part, out var i) && i < a.Count ? a[i] : null;
        return node switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => node.ToJsonString(),
        };
    }

    [GeneratedRegex(@"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")]
    private static partial Regex Reference();
}
