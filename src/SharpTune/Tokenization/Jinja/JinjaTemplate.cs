namespace SharpTune.Tokenization.Jinja;

/// <summary>
/// A compiled template in the Jinja subset Hugging Face chat templates use. Written here because no served .NET package
/// renders Jinja: Fluid is Liquid, which has no '+' on strings, no elif, no loop.first, no not/and-or
/// expressions, no raise_exception or namespace(), so real chat templates do not parse there.
/// Rendering follows transformers' settings: trim_blocks and lstrip_blocks on.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Node> _nodes;

    private JinjaTemplate(List<Node> nodes) => _nodes = nodes;

    /// <exception cref="JinjaException">The template uses syntax outside the supported subset.</exception>
    public static JinjaTemplate Parse(string source) => new(JinjaParser.Parse(source));

    /// <summary>Renders with the given variables (strings, numbers, bools, lists and string-keyed dictionaries).</summary>
    /// <exception cref="JinjaRaisedException">The template called raise_exception.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        var globals = variables.ToDictionary(p => p.Key, p => JinjaValues.FromClr(p.Value));
        return new JinjaRenderer(globals).Render(_nodes);
    }

    /// <summary>
    /// Renders and reports which output each of <paramref name="trackedItems"/> produced: a stretch belongs to item k when
    /// it was written while k was the innermost tracked item a for loop was iterating over (by reference, so a loop over
    /// a slice or a reversed copy of the list still finds its items). Items must be values passed in
    /// <paramref name="variables"/> as they are (lists and dictionaries are passed by reference).
    /// </summary>
    internal (string Text, IReadOnlyList<OwnedRange> Ranges) RenderTracked(IReadOnlyDictionary<string, object?> variables, IReadOnlyList<object> trackedItems)
    {
        var globals = variables.ToDictionary(p => p.Key, p => JinjaValues.FromClr(p.Value));
        var tracked = new Dictionary<object, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < trackedItems.Count; i++) tracked.TryAdd(trackedItems[i], i);
        var renderer = new JinjaRenderer(globals, tracked);
        var text = renderer.Render(_nodes);
        return (text, renderer.OwnedRanges);
    }
}

/// <summary>Output characters [Start, End) written while tracked item <see cref="Item"/> was being iterated.</summary>
internal readonly record struct OwnedRange(int Item, int Start, int End);
