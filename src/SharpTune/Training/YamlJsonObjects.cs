using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace SharpTune.Training;

/// <summary>
/// Lets a config key that <see cref="TrainingOptions"/> holds as JSON text (<c>chat_template_kwargs</c>) be written as a
/// YAML mapping: the mapping is turned into that JSON with YAML 1.2 core-schema scalars (true/false, null, integers and
/// floats when unquoted; everything else a string), so <c>enable_thinking: false</c> is a boolean, not the string "false".
/// </summary>
internal static partial class YamlJsonObjects
{
    /// <summary><paramref name="yaml"/> with each of <paramref name="keys"/> whose value is a mapping rewritten as JSON text;
    /// the text itself when none is (so error positions in it stay exact).</summary>
    public static string Rewrite(string yaml, params string[] keys)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (Exception e) when (e is YamlException or ArgumentException) { return yaml; }   // the deserializer reports it with its position
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root) return yaml;
        var changed = false;
        foreach (var key in keys)
            if (root.Children.TryGetValue(new YamlScalarNode(key), out var value) && value is YamlMappingNode mapping)
            {
                root.Children[new YamlScalarNode(key)] = new YamlScalarNode(ToJson(mapping)!.ToJsonString()) { Style = ScalarStyle.DoubleQuoted };
                changed = true;
            }
        if (!changed) return yaml;
        var text = new StringWriter();
        stream.Save(text, assignAnchors: false);
        return text.ToString();
    }

    private static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(p => KeyValuePair.Create(((YamlScalarNode)p.Key).Value ?? "", ToJson(p.Value)))),
        YamlSequenceNode s => new JsonArray(s.Children.Select(ToJson).ToArray()),
        YamlScalarNode { Style: ScalarStyle.Plain } plain => PlainScalar(plain.Value ?? ""),
        YamlScalarNode scalar => JsonValue.Create(scalar.Value ?? ""),
        _ => null,
    };

    private static JsonNode? PlainScalar(string value)
    {
        if (NullPattern().IsMatch(value)) return null;
        if (TruePattern().IsMatch(value)) return JsonValue.Create(true);
        if (FalsePattern().IsMatch(value)) return JsonValue.Create(false);
        if (IntPattern().IsMatch(value) && long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
            return JsonValue.Create(integer);
        if (FloatPattern().IsMatch(value) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
            return JsonValue.Create(number);
        return JsonValue.Create(value);
    }

    [GeneratedRegex("^(null|Null|NULL|~|)$")] private static partial Regex NullPattern();
    [GeneratedRegex("^(true|True|TRUE)$")] private static partial Regex TruePattern();
    [GeneratedRegex("^(false|False|FALSE)$")] private static partial Regex FalsePattern();
    [GeneratedRegex("^[-+]?[0-9]+$")] private static partial Regex IntPattern();
    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")] private static partial Regex FloatPattern();
}
