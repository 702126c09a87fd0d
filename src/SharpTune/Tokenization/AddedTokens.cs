using System.Buffers;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>One entry of tokenizer.json's "added_tokens".</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool SingleWord);

/// <summary>A stretch of input: either an added token (matched whole, never split) or text for the model.</summary>
internal readonly record struct TextSegment(int Start, string? Text, int AddedTokenId);

/// <summary>
/// Finds added tokens in raw text before normalization, leftmost then longest, as Hugging Face's added vocabulary does.
/// All added tokens are matched on the raw text; Hugging Face matches "normalized" ones on normalized text, which differs
/// only for normalizers that rewrite the token's own characters (none of the supported families do).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;
    private readonly SearchValues<char> _firstChars;

    public AddedTokenMatcher(IReadOnlyList<AddedToken> tokens)
    {
        Tokens = tokens;
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    public IReadOnlyList<AddedToken> Tokens { get; }

    public static List<AddedToken> FromJson(JsonNode? node, JsonFields json)
    {
        var result = new List<AddedToken>();
        if (node is null) return result;
        var array = node as JsonArray ?? throw json.Error(node, "'added_tokens' must be an array");
        foreach (var item in array)
        {
            var obj = json.Object(item, "an added token");
            int id = json.Int(obj, "id", -1);
            if (id < 0) throw json.Error(obj, "added token needs a non-negative 'id'");
            result.Add(new AddedToken(id, json.String(obj, "content"), json.Bool(obj, "special", false),
                json.Bool(obj, "lstrip", false), json.Bool(obj, "rstrip", false), json.Bool(obj, "single_word", false)));
        }
        return result;
    }

    public List<TextSegment> Split(string text)
    {
        var segments = new List<TextSegment>();
        int textStart = 0, searchFrom = 0;
        while (searchFrom < text.Length)
        {
            int at = _byFirstChar.Count == 0 ? -1 : text.AsSpan(searchFrom).IndexOfAny(_firstChars);
            if (at < 0) break;
            at += searchFrom;
            var token = LongestAt(text, at);
            if (token is null) { searchFrom = at + 1; continue; }

            int start = at, end = at + token.Content.Length;
            if (token.LStrip) while (start > textStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (token.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > textStart) segments.Add(new TextSegment(textStart, text[textStart..start], -1));
            segments.Add(new TextSegment(start, null, token.Id));
            textStart = searchFrom = end;
        }
        if (textStart < text.Length) segments.Add(new TextSegment(textStart, text[textStart..], -1));
        return segments;
    }

    private AddedToken? LongestAt(string text, int at)
    {
        foreach (var token in _byFirstChar[text[at]])
        {
            if (string.CompareOrdinal(text, at, token.Content, 0, token.Content.Length) != 0) continue;
            if (token.SingleWord && !IsWordBoundary(text, at, at + token.Content.Length)) continue;
            return token;
        }
        return null;
    }

    private static bool IsWordBoundary(string text, int start, int end) =>
        (start == 0 || !char.IsLetterOrDigit(text[start - 1])) && (end == text.Length || !char.IsLetterOrDigit(text[end]));
}
