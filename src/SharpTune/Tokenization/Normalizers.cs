using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization;

/// <summary>A text rewrite applied to each stretch of text between added tokens, before pre-tokenization.</summary>
internal abstract class TextNormalizer
{
    public abstract string Normalize(string text);

    public static TextNormalizer? FromJson(JsonNode? node, JsonFields json)
    {
        if (node is null) return null;
        var obj = json.Object(node, "normalizer");
        return json.TypeOf(obj) switch
        {
            "Sequence" => new SequenceNormalizer(
                (obj["normalizers"] as JsonArray ?? throw json.Error(obj, "Sequence needs 'normalizers'"))
                .Select(n => FromJson(n, json)!).ToArray()),
            "Prepend" => new PrependNormalizer(json.String(obj, "prepend")),
            "Replace" => ReplaceNormalizer.Create(json.Pattern(obj), json.String(obj, "content"), json, obj),
            "NFC" => new UnicodeFormNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeFormNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeFormNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeFormNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(json.Bool(obj, "strip_left", true), json.Bool(obj, "strip_right", true)),
            var other => throw json.Error(obj, $"unsupported normalizer type '{other}' (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)"),
        };
    }
}

internal sealed class SequenceNormalizer(TextNormalizer[] steps) : TextNormalizer
{
    public override string Normalize(string text)
    {
        foreach (var step in steps) text = step.Normalize(text);
        return text;
    }
}

/// <summary>Hugging Face prepends only to non-empty text.</summary>
internal sealed class PrependNormalizer(string prefix) : TextNormalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer : TextNormalizer
{
    private readonly Func<string, string> _replace;
    private ReplaceNormalizer(Func<string, string> replace) => _replace = replace;

    public static ReplaceNormalizer Create((string Text, bool IsRegex) pattern, string content, JsonFields json, JsonNode at)
    {
        if (!pattern.IsRegex) return new ReplaceNormalizer(s => s.Replace(pattern.Text, content, StringComparison.Ordinal));
        var regex = RegexTranslation.Compile(pattern.Text, json, at);
        return new ReplaceNormalizer(s => regex.Replace(s, content.Replace("$", "$$")));
    }

    public override string Normalize(string text) => _replace(text);
}

internal sealed class UnicodeFormNormalizer(NormalizationForm form) : TextNormalizer
{
    public override string Normalize(string text) => text.Normalize(form);
}

/// <summary>
/// Unicode lowercase per character, as Rust's char::to_lowercase: .NET's invariant lowercasing leaves 'İ' (U+0130) as
/// it is, where Unicode's unconditional full mapping, which Rust applies, gives "i̇" (i and U+0307).
/// </summary>
internal sealed class LowercaseNormalizer : TextNormalizer
{
    public override string Normalize(string text) => FullLowercase(text);

    /// <summary>
    /// Each character's Unicode lowercase with the unconditional full mappings (Rust's char::to_lowercase, and Python's
    /// str.lower but for its final-sigma context): .NET's invariant lowercasing, which agrees on every other code
    /// point, leaves 'İ' as it is.
    /// </summary>
    internal static string FullLowercase(string text)
    {
        var lower = text.ToLowerInvariant();
        return lower.Contains('\u0130') ? lower.Replace("\u0130", "i\u0307", StringComparison.Ordinal) : lower;
    }
}

internal sealed class StripNormalizer(bool left, bool right) : TextNormalizer
{
    public override string Normalize(string text) => (left, right) switch
    {
        (true, true) => text.Trim(),
        (true, false) => text.TrimStart(),
        (false, true) => text.TrimEnd(),
        _ => text,
    };
}

/// <summary>Hugging Face regexes are Oniguruma syntax; the ones tokenizers ship are also valid .NET syntax except
/// possessive quantifiers, which we rewrite as atomic groups when they follow a class, escape or group.</summary>
internal static class RegexTranslation
{
    public static Regex Compile(string pattern, JsonFields json, JsonNode at)
    {
        try
        {
            return new Regex(RewritePossessive(pattern), RegexOptions.CultureInvariant | RegexOptions.Compiled);
        }
        catch (ArgumentException e)
        {
            throw json.Error(at, $"regex '{pattern}' is not supported by .NET: {e.Message}");
        }
    }

    private static string RewritePossessive(string pattern)
    {
        if (!Regex.IsMatch(pattern, @"(?<!\\)[?*+}][+]")) return pattern;
        // Possessive X?+ / X*+ / X++ where X is a [...] class or an escape like \p{L}: wrap as (?>X?) etc.
        return Regex.Replace(pattern, @"(\[(?:\\.|[^\]\\])*\]|\\p\{[^}]+\}|\\.)([?*+]|\{\d+(?:,\d*)?\})\+",
            m => $"(?>{m.Groups[1].Value}{m.Groups[2].Value})");
    }
}
