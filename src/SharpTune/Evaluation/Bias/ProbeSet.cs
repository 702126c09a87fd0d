using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Evaluation.Bias;

/// <summary>
/// One counterfactual probe: a template with one demographic slot (<c>{name}</c>, <c>{pronoun}</c>…) filled with every
/// filler of every group of that slot. Each filled prompt is continued greedily (sentiment and refusal rates); when
/// <see cref="Continuation"/> is set, the log-likelihood of that same continuation is compared across groups; when
/// <see cref="Options"/> is set, the probability of each option (e.g. " good" / " bad") is compared across groups.
/// </summary>
public sealed record Probe
{
    /// <summary>A unique id shown in reports.</summary>
    public string Id { get; init; } = "";
    /// <summary>The slot name; the template must contain it in braces.</summary>
    public string Slot { get; init; } = "";
    /// <summary>The prompt text, e.g. "{name} is a".</summary>
    public string Template { get; init; } = "";
    /// <summary>A continuation whose mean log-probability per token is compared across groups (optional).</summary>
    public string? Continuation { get; init; }
    /// <summary>Label → answer text scored after the prompt; the normalised probability of each label is compared (optional).</summary>
    public IReadOnlyDictionary<string, string>? Options { get; init; }
}

/// <summary>
/// A probe file: slots (slot → group → fillers) and the probes over them. The built-in set is embedded JSON in this
/// same format; see docs/evaluation.md.
/// </summary>
public sealed record ProbeSet
{
    /// <summary>Slot → group → fillers, e.g. "name" → "female" → ["Emily", …].</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, IReadOnlyList<string>>> Slots { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, IReadOnlyList<string>>>();
    /// <summary>The probes.</summary>
    public IReadOnlyList<Probe> Probes { get; init; } = [];

    private static readonly JsonSerializerOptions ReadOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>The probes written for SharpTune (names, pronouns, nationalities, religions, ages).</summary>
    public static ProbeSet BuiltIn()
    {
        using var stream = typeof(ProbeSet).Assembly.GetManifestResourceStream("SharpTune.Evaluation.Bias.builtin-probes.json")
            ?? throw new InvalidOperationException("the built-in probe set is missing from the assembly");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), "builtin-probes.json");
    }

    /// <summary>"builtin" or a probe file path.</summary>
    public static ProbeSet Load(string builtinOrPath) =>
        builtinOrPath == "builtin" ? BuiltIn()
        : File.Exists(builtinOrPath) ? Parse(File.ReadAllText(builtinOrPath), builtinOrPath)
        : throw new FileNotFoundException($"probe file not found: {builtinOrPath} (use 'builtin' for the built-in probes)", builtinOrPath);

    /// <summary>Parses and validates a probe file's text; errors name the source, the probe and the field.</summary>
    public static ProbeSet Parse(string json, string source)
    {
        ProbeSet set;
        try { set = JsonSerializer.Deserialize<ProbeSet>(json, ReadOptions) ?? throw new InvalidDataException($"{source}: empty probe file"); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: {e.Message}", e); }
        set.Validate(source);
        return set;
    }

    private void Validate(string source)
    {
        if (Probes.Count == 0) throw new InvalidDataException($"{source}: 'probes' is empty");
        foreach (var (slot, groups) in Slots)
        {
            if (groups.Count < 2) throw new InvalidDataException($"{source}: slot '{slot}' needs at least two groups to compare, found {groups.Count}");
            if (groups.FirstOrDefault(g => g.Value.Count == 0) is { Key: { } empty })
                throw new InvalidDataException($"{source}: slot '{slot}', group '{empty}' has no fillers");
        }
        var ids = new HashSet<string>();
        for (var i = 0; i < Probes.Count; i++)
        {
            var p = Probes[i];
            var where = $"{source}: probes[{i}]";
            if (string.IsNullOrWhiteSpace(p.Id)) throw new InvalidDataException($"{where}.id is missing");
            if (!ids.Add(p.Id)) throw new InvalidDataException($"{where}.id '{p.Id}' is used twice");
            if (!Slots.ContainsKey(p.Slot))
                throw new InvalidDataException($"{where}.slot '{p.Slot}' is not defined; slots: {string.Join(", ", Slots.Keys)}");
            if (!p.Template.Contains("{" + p.Slot + "}"))
                throw new InvalidDataException($"{where}.template '{p.Template}' does not contain {{{p.Slot}}}");
            if (p.Options is { Count: 1 }) throw new InvalidDataException($"{where}.options needs at least two options");
        }
    }
}
