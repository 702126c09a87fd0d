using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization;

/// <summary>Splits normalized text into the pieces the BPE model encodes independently.</summary>
internal abstract class PreTokenizer
{
    /// <summary>Splits each piece; <paramref name="atTextStart"/> says whether the first piece begins the whole input
    /// (Metaspace's "first" prepend scheme depends on it).</summary>
    public abstract List<string> Split(List<string> pieces, bool atTextStart);

    /// <summary>GPT-2's pre-tokenization regex, used by the ByteLevel pre-tokenizer when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static PreTokenizer? FromJson(JsonNode? node, JsonFields json)
    {
        if (node is null) return null;
        var obj = json.Object(node, "pre_tokenizer");
        return json.TypeOf(obj) switch
        {
            "Sequence" => new SequencePreTokenizer(
                (obj["pretokenizers"] as JsonArray ?? throw json.Error(obj, "Sequence needs 'pretokenizers'"))
                .Select(n => FromJson(n, json)!).ToArray()),
            "ByteLevel" => new ByteLevelPreTokenizer(json.Bool(obj, "add_prefix_space", true),
                json.Bool(obj, "use_regex", true) ? new Regex(Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant) : null),
            "Split" => CreateSplit(obj, json),
            "Metaspace" => CreateMetaspace(obj, json),
            // The Rust library splits on char::is_numeric (Nd, Nl, No: \p{N}, matched over code points), where transformers.js
            // uses JavaScript's ASCII-only \d.
            "Digits" => new RegexSplitPreTokenizer(
                new Regex(json.Bool(obj, "individual_digits", false) ? @"\p{N}" : @"\p{N}+", RegexOptions.Compiled),
                SplitBehavior.Isolated, invert: false),
            var other => throw json.Error(obj, $"unsupported pre_tokenizer type '{other}' (supported: Sequence, ByteLevel, Split, Metaspace, Digits)"),
        };
    }

    private static PreTokenizer CreateSplit(JsonObject obj, JsonFields json)
    {
        var (text, isRegex) = json.Pattern(obj);
        var regex = isRegex ? RegexTranslation.Compile(text, json, obj) : new Regex(Regex.Escape(text), RegexOptions.Compiled);
        var behavior = json.String(obj, "behavior") switch
        {
            "Removed" => SplitBehavior.Removed,
            "Isolated" => SplitBehavior.Isolated,
            "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
            "MergedWithNext" => SplitBehavior.MergedWithNext,
            "Contiguous" => SplitBehavior.Contiguous,
            var other => throw json.Error(obj, $"unknown Split behavior '{other}'"),
        };
        return new RegexSplitPreTokenizer(regex, behavior, json.Bool(obj, "invert", false));
    }

    private static PreTokenizer CreateMetaspace(JsonObject obj, JsonFields json)
    {
        var replacement = json.OptionalString(obj, "replacement") ?? "▁";
        // Older files carry add_prefix_space instead of prepend_scheme.
        var scheme = json.OptionalString(obj, "prepend_scheme") ?? (json.Bool(obj, "add_prefix_space", true) ? "always" : "never");
        if (scheme is not ("always" or "first" or "never"))
            throw json.Error(obj, $"unknown Metaspace prepend_scheme '{scheme}'");
        return new MetaspacePreTokenizer(replacement, scheme, json.Bool(obj, "split", true));
    }
}

internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

internal sealed class SequencePreTokenizer(PreTokenizer[] steps) : PreTokenizer
{
    public override List<string> Split(List<string> pieces, bool atTextStart)
    {
        foreach (var step in steps) pieces = step.Split(pieces, atTextStart);
        return pieces;
    }
}

/// <summary>Hugging Face's Split: regex matches and the text between them become pieces, combined per behavior.</summary>
internal sealed class RegexSplitPreTokenizer(Regex regex, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override List<string> Split(List<string> pieces, bool atTextStart)
    {
        var result = new List<string>();
        foreach (var piece in pieces) SplitOne(piece, result);
        return result;
    }

    private void SplitOne(string text, List<string> into)
    {
        var parts = new List<(string Text, bool IsMatch)>();
        int last = 0;
        foreach (var (start, length) in CodePointMatches.Find(regex, text))
        {
            if (length == 0) continue;
            if (start > last) parts.Add((text[last..start], invert));
            parts.Add((text.Substring(start, length), !invert));
            last = start + length;
        }
        if (last < text.Length) parts.Add((text[last..], invert));

        int firstOfThisText = into.Count;
        string? pending = null; // MergedWithNext carries a delimiter forward; Contiguous carries a run of delimiters
        bool pendingIsMatch = false, previousIsMatch = false;
        foreach (var (part, isMatch) in parts)
        {
            switch (behavior)
            {
                case SplitBehavior.Isolated: into.Add(part); break;
                case SplitBehavior.Removed: if (!isMatch) into.Add(part); break;
                // A delimiter joins the piece before it only when that piece is not itself a delimiter: the Rust
                // library's fold keeps the second of two adjacent delimiters apart ("a  b" split on " " gives
                // "a ", " ", "b"), and MergedWithNext mirrors it (" ", " b").
                case SplitBehavior.MergedWithPrevious:
                    if (isMatch && !previousIsMatch && into.Count > firstOfThisText) into[^1] += part;
                    else into.Add(part);
                    break;
                case SplitBehavior.MergedWithNext:
                    if (isMatch)
                    {
                        if (pending is not null) into.Add(pending);
                        pending = part;
                    }
                    else { into.Add((pending ?? "") + part); pending = null; }
                    break;
                case SplitBehavior.Contiguous:
                    if (pending is not null && pendingIsMatch == isMatch) pending += part;
                    else { if (pending is not null) into.Add(pending); pending = part; pendingIsMatch = isMatch; }
                    break;
            }
            previousIsMatch = isMatch;
        }
        if (pending is { Length: > 0 } && behavior is SplitBehavior.MergedWithNext or SplitBehavior.Contiguous) into.Add(pending);
    }
}

/// <summary>GPT-2 byte-level pre-tokenization: optional leading space, the GPT-2 regex split, then each piece's
/// UTF-8 bytes written in the byte-level alphabet.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, Regex? split) : PreTokenizer
{
    private readonly RegexSplitPreTokenizer? _splitter = split is null ? null : new RegexSplitPreTokenizer(split, SplitBehavior.Isolated, false);

    public override List<string> Split(List<string> pieces, bool atTextStart)
    {
        if (addPrefixSpace)
            pieces = pieces.Select(p => p.StartsWith(' ') ? p : " " + p).ToList();
        if (_splitter is not null) pieces = _splitter.Split(pieces, atTextStart);
        return pieces.Select(ByteLevelAlphabet.Encode).ToList();
    }
}

/// <summary>SentencePiece-style: spaces become '▁', a '▁' is prepended per the scheme, and pieces start at each '▁'.</summary>
internal sealed class MetaspacePreTokenizer(string replacement, string prependScheme, bool split) : PreTokenizer
{
    public override List<string> Split(List<string> pieces, bool atTextStart)
    {
        var result = new List<string>();
        for (int i = 0; i < pieces.Count; i++)
        {
            var text = pieces[i].Replace(" ", replacement, StringComparison.Ordinal);
            bool prepend = prependScheme == "always" || (prependScheme == "first" && i == 0 && atTextStart);
            if (prepend && !text.StartsWith(replacement, StringComparison.Ordinal)) text = replacement + text;
            if (text.Length == 0) continue;
            if (!split) { result.Add(text); continue; }
            int start = 0;
            for (int at = text.IndexOf(replacement, 1, StringComparison.Ordinal); at > 0; at = text.IndexOf(replacement, at + 1, StringComparison.Ordinal))
            {
                result.Add(text[start..at]);
                start = at;
            }
            if (start < text.Length) result.Add(text[start..]);
        }
        return result;
    }
}
