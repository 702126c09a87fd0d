using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>One entry of tokenizer.json's "added_tokens".</summary>
/// <param name="Normalized">Matched in the normalized text, against its content passed through the normalizer (as the
/// Rust library's added vocabulary does), rather than in the raw text.</param>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool SingleWord, bool Normalized = false);

/// <summary>A stretch of input: either an added token (matched whole, never split) or text for the model.</summary>
internal readonly record struct TextSegment(int Start, string? Text, int AddedTokenId);

/// <summary>
/// Finds added tokens in text, leftmost then longest, as Hugging Face's added vocabulary does. The tokenizer runs two of
/// these: one over the raw text for tokens with <c>normalized: false</c>, then one over each normalized stretch between
/// them for tokens with <c>normalized: true</c> (whose contents were normalized first).
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
            var special = json.Bool(obj, "special", false);
            // The Rust library's AddedToken::from(content, special) normalizes exactly the non-special tokens.
            result.Add(new AddedToken(id, json.String(obj, "content"), special,
                json.Bool(obj, "lstrip", false), json.Bool(obj, "rstrip", false), json.Bool(obj, "single_word", false),
                json.Bool(obj, "normalized", !special)));
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
        (start == 0 || !IsWordCharacter(Rune.GetRuneAt(text, PreviousRuneStart(text, start))))
        && (end == text.Length || !IsWordCharacter(Rune.GetRuneAt(text, end)));

    private static int PreviousRuneStart(string text, int index) =>
        index >= 2 && char.IsLowSurrogate(text[index - 1]) && char.IsHighSurrogate(text[index - 2]) ? index - 2 : index - 1;

    /// <summary>
    /// The Rust library's single-word check is the regex <c>\w</c> of its regex crate: alphabetic characters, marks,
    /// decimal digits, connector punctuation ("_") and the joiners U+200C/U+200D. Letter numbers (Ⅻ) and the circled
    /// or squared letters count as alphabetic; other numbers (½, ①) do not.
    /// </summary>
    internal static bool IsWordCharacter(Rune rune)
    {
        switch (Rune.GetUnicodeCategory(rune))
        {
            case UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber
                or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation:
                return true;
        }
        return rune.Value is 0x200C or 0x200D or (>= 0x24B6 and <= 0x24E9) or (>= 0x1F130 and <= 0x1F149)
            or (>= 0x1F150 and <= 0x1F169) or (>= 0x1F170 and <= 0x1F189);
    }
}
