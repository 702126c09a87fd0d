using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace SharpTune.Advisors.License;

/// <summary>A scalar field of a model card's YAML front matter, with the line it is on (1-based, in README.md).</summary>
public sealed record FrontMatterField(string Name, string Value, int Line);

/// <summary>Reads the YAML block between the leading <c>---</c> lines of a Hugging Face model card (README.md).</summary>
public static class ModelCardFrontMatter
{
    /// <summary>
    /// The top-level scalar fields of the front matter (lists become comma-joined values), or an empty list when the
    /// card has no front matter. Malformed YAML is an exception naming the file and line.
    /// </summary>
    public static IReadOnlyList<FrontMatterField> Read(string readmePath)
    {
        var lines = File.ReadAllLines(readmePath);
        if (lines.Length == 0 || lines[0].Trim() != "---") return [];
        var end = Array.FindIndex(lines, 1, l => l.Trim() is "---" or "...");
        if (end < 0)
            throw new InvalidDataException($"{readmePath}: the YAML front matter opened on line 1 is never closed by a '---' line.");

        var yaml = string.Join('\n', lines[1..end]);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            // +1 for the opening '---' line, which is not part of the parsed text.
            throw new InvalidDataException(
                $"{readmePath}: invalid YAML front matter near line {e.Start.Line + 1}: {e.Message}", e);
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root) return [];

        var fields = new List<FrontMatterField>();
        foreach (var (keyNode, valueNode) in root.Children)
        {
            if (keyNode is not YamlScalarNode { Value: { } key }) continue;
            var value = valueNode switch
            {
                YamlScalarNode s => s.Value ?? "",
                YamlSequenceNode seq => string.Join(", ", seq.Children.OfType<YamlScalarNode>().Select(c => c.Value)),
                _ => null,
            };
            if (value is not null) fields.Add(new FrontMatterField(key, value, (int)keyNode.Start.Line + 1));
        }
        return fields;
    }
}
