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
}
