using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization;

/// <summary>
/// Regex matches as Oniguruma (the engine of Hugging Face tokenizers) finds them, over code points. .NET's engine reads
/// UTF-16 units, so a character outside the Basic Multilingual Plane — an emoji, a mathematical letter 𝐀, a CJK
/// extension ideograph 𠀀 — is two surrogates, which <c>\p{L}</c>, <c>\p{S}</c> or <c>\p{N}</c> never match and which
/// a one-character quantifier counts twice. Text with such characters is matched through a stand-in string: each one
/// replaced by a single BMP character of the same general category (chosen outside the ranges tokenizer patterns name),
/// and the matches mapped back. Text without them is matched as it is.
/// </summary>
internal static class CodePointMatches
{
    /// <summary>The (start, length) in UTF-16 units of <paramref name="text"/> of each match of <paramref name="regex"/>.</summary>
    public static IEnumerable<(int Start, int Length)> Find(Regex regex, string text)
    {
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            for (var m = regex.Match(text); m.Success; m = m.NextMatch()) yield return (m.Index, m.Length);
            yield break;
        }
        var (standIn, original) = StandIn(text);
        for (var m = regex.Match(standIn); m.Success; m = m.NextMatch())
        {
            var start = original[m.Index];
            yield return (start, original[m.Index + m.Length] - start);
        }
    }

    /// <summary>
    /// The stand-in text and, for each of its positions (and its end), the position in <paramref name="text"/>. A lone
    /// surrogate is kept as it is (it has no category of its own in either engine).
    /// </summary>
    private static (string StandIn, int[] Original) StandIn(string text)
    {
        var builder = new StringBuilder(text.Length);
        var original = new List<int>(text.Length + 1);
        for (var i = 0; i < text.Length;)
        {
            original.Add(i);
            if (Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out var consumed) == OperationStatus.Done && rune.Value > 0xFFFF)
                builder.Append(Representative(Rune.GetUnicodeCategory(rune)));
            else
                builder.Append(text[i]);
            i += consumed > 0 ? consumed : 1;
        }
        original.Add(text.Length);
        return (builder.ToString(), original.ToArray());
    }

    /// <summary>A BMP character of <paramref name="category"/> that no tokenizer pattern names as a literal or range end.</summary>
    internal static char Representative(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\uA7A0',
        UnicodeCategory.LowercaseLetter => '\uA7A1',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\uA67F',
        UnicodeCategory.OtherLetter => '\uA500',
        UnicodeCategory.NonSpacingMark => '\u1DC0',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u0488',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u2460',
        UnicodeCategory.SpaceSeparator => '\u2000',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0001',
        UnicodeCategory.Format => '\uFFF9',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2E3A',
        UnicodeCategory.OpenPunctuation => '\u2E22',
        UnicodeCategory.ClosePunctuation => '\u2E23',
        UnicodeCategory.InitialQuotePunctuation => '\u2E1C',
        UnicodeCategory.FinalQuotePunctuation => '\u2E1D',
        UnicodeCategory.OtherPunctuation => '\u2E2E',
        UnicodeCategory.MathSymbol => '\u2A00',
        UnicodeCategory.CurrencySymbol => '\u20BF',
        UnicodeCategory.ModifierSymbol => '\uA720',
        UnicodeCategory.OtherSymbol => '\u2100',
        _ => '\u0378',   // unassigned
    };
}
