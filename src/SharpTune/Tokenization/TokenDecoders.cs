using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization;

/// <summary>Hugging Face's decoder chain: each step rewrites the list of token strings; the result is joined.</summary>
internal abstract class TokenDecoder
{
    public abstract List<string> Decode(List<string> tokens);

    /// <summary>
    /// As <see cref="Decode"/> for tokens in the middle of a sequence: rules that only touch the start or end of the
    /// whole text (Strip, Metaspace's dropped first space) are left out, so one token's text is what it adds there.
    /// </summary>
    public virtual List<string> DecodeMidSequence(List<string> tokens) => Decode(tokens);

    /// <summary>True when this decoder (or one in its sequence) satisfies <paramref name="test"/>.</summary>
    public virtual bool Contains(Func<TokenDecoder, bool> test) => test(this);

    public static TokenDecoder? FromJson(JsonNode? node, JsonFields json)
    {
        if (node is null) return null;
        var obj = json.Object(node, "decoder");
        return json.TypeOf(obj) switch
        {
            "Sequence" => new SequenceDecoder(
                (obj["decoders"] as JsonArray ?? throw json.Error(obj, "Sequence needs 'decoders'"))
                .Select(n => FromJson(n, json)!).ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Replace" => CreateReplace(obj, json),
            "Strip" => new StripDecoder(json.String(obj, "content"), json.Int(obj, "start", 0), json.Int(obj, "stop", 0)),
            "Metaspace" => new MetaspaceDecoder(json.OptionalString(obj, "replacement") ?? "▁",
                (json.OptionalString(obj, "prepend_scheme") ?? (json.Bool(obj, "add_prefix_space", true) ? "always" : "never")) != "never"),
            var other => throw json.Error(obj, $"unsupported decoder type '{other}' (supported: Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace)"),
        };
    }

    private static TokenDecoder CreateReplace(JsonObject obj, JsonFields json)
    {
        var (pattern, isRegex) = json.Pattern(obj);
        var content = json.String(obj, "content");
        if (!isRegex) return new ReplaceDecoder(t => t.Replace(pattern, content, StringComparison.Ordinal));
        var regex = RegexTranslation.Compile(pattern, json, obj);
        return new ReplaceDecoder(t => regex.Replace(t, content.Replace("$", "$$")));
    }
}

internal sealed class SequenceDecoder(TokenDecoder[] steps) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens)
    {
        foreach (var step in steps) tokens = step.Decode(tokens);
        return tokens;
    }

    public override List<string> DecodeMidSequence(List<string> tokens)
    {
        foreach (var step in steps) tokens = step.DecodeMidSequence(tokens);
        return tokens;
    }

    public override bool Contains(Func<TokenDecoder, bool> test) => test(this) || steps.Any(s => s.Contains(test));
}

/// <summary>Maps byte-level characters back to bytes and decodes UTF-8, invalid sequences becoming U+FFFD.</summary>
internal sealed class ByteLevelDecoder : TokenDecoder
{
    public override List<string> Decode(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var token in tokens) ByteLevelAlphabet.AppendBytes(token, bytes);
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

/// <summary>Runs of &lt;0xNN&gt; tokens become their UTF-8 text; an invalid run becomes one U+FFFD per byte.</summary>
internal sealed class ByteFallbackDecoder : TokenDecoder
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    public override List<string> Decode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var pending = new List<byte>();
        void Flush()
        {
            if (pending.Count == 0) return;
            try { result.Add(StrictUtf8.GetString(pending.ToArray())); }
            catch (DecoderFallbackException) { result.Add(new string('\uFFFD', pending.Count)); }
            pending.Clear();
        }
        foreach (var token in tokens)
        {
            if (TryParseByteToken(token, out var b)) { pending.Add(b); continue; }
            Flush();
            result.Add(token);
        }
        Flush();
        return result;
    }

    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out value);
    }
}

internal sealed class FuseDecoder : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => [string.Concat(tokens)];
}

internal sealed class ReplaceDecoder(Func<string, string> replace) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select(replace).ToList();
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing copies of a character from each token.</summary>
internal sealed class StripDecoder(string content, int start, int stop) : TokenDecoder
{
    private readonly char _char = content.Length == 1 ? content[0] : throw new TokenizerFormatException("tokenizer.json", "Strip decoder content must be one character");

    public override List<string> Decode(List<string> tokens) => tokens.Select(t =>
    {
        int from = 0, to = t.Length;
        for (int i = 0; i < start && from < to && t[from] == _char; i++) from++;
        for (int i = 0; i < stop && to > from && t[to - 1] == _char; i++) to--;
        return t[from..to];
    }).ToList();

    public override List<string> DecodeMidSequence(List<string> tokens) => tokens;
}

/// <summary>
/// '▁' back to spaces. Where the pre-tokenizer prepends a '▁', the Rust library drops every '▁' of the first token
/// rather than only the prepended one (a first token "▁▁▁" decodes to nothing, not to two spaces).
/// </summary>
internal sealed class MetaspaceDecoder(string replacement, bool dropFirstSpace) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select((t, i) =>
        t.Replace(replacement, i == 0 && dropFirstSpace ? "" : " ", StringComparison.Ordinal)).ToList();

    public override List<string> DecodeMidSequence(List<string> tokens) =>
        tokens.Select(t => t.Replace(replacement, " ", StringComparison.Ordinal)).ToList();
}
