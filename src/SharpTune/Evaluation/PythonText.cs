using System.Globalization;
using System.Text;

namespace SharpTune.Evaluation;

/// <summary>
/// The few Python string semantics the reference metrics depend on, so that our ports split and strip text exactly
/// as <c>str.split()</c> / <c>str.rstrip()</c> do (Python also treats U+001C..U+001F as whitespace; .NET does not).
/// </summary>
internal static class PythonText
{
    public static bool IsWhitespace(char c) => char.IsWhiteSpace(c) || (c >= '\u001c' && c <= '\u001f');

    /// <summary>Python's <c>str.split()</c> with no argument: runs of whitespace separate, no empty pieces.</summary>
    public static List<string> SplitWhitespace(string text)
    {
        var pieces = new List<string>();
        int start = -1;
        for (int i = 0; i < text.Length; i++)
        {
            if (IsWhitespace(text[i]))
            {
                if (start >= 0) { pieces.Add(text[start..i]); start = -1; }
            }
            else if (start < 0) start = i;
        }
        if (start >= 0) pieces.Add(text[start..]);
        return pieces;
    }

    /// <summary>Python's <c>str.rstrip()</c>.</summary>
    public static string RStrip(string text)
    {
        int end = text.Length;
        while (end > 0 && IsWhitespace(text[end - 1])) end--;
        return text[..end];
    }

    /// <summary>
    /// Splits a string into Unicode scalar values (Python indexes strings by code point, .NET by UTF-16 unit), so a
    /// character n-gram over an emoji counts as Python counts it.
    /// </summary>
    public static string[] CodePoints(string text)
    {
        var points = new List<string>(text.Length);
        foreach (var rune in text.EnumerateRunes()) points.Add(rune.ToString());
        return points.ToArray();
    }

    /// <summary>
    /// Python's <c>str.lower()</c>. .NET's invariant lowercasing agrees with it on every single code point but one:
    /// Python applies the full mapping of U+0130 'İ' ("i" + combining dot U+0307, which .NET leaves unchanged), and
    /// lowercases 'Σ' to final 'ς' at the end of a word (Unicode's Final_Sigma context), where .NET always gives 'σ'.
    /// </summary>
    public static string Lower(string text)
    {
        if (text.Contains('\u03a3'))
        {
            // Each capital sigma is decided on the text as given, then lowercased like any other character.
            var sigmas = text.ToCharArray();
            for (int i = 0; i < text.Length; i++)
                if (text[i] == '\u03a3') sigmas[i] = IsFinalSigma(text, i) ? '\u03c2' : '\u03c3';
            text = new string(sigmas);
        }
        return Tokenization.LowercaseNormalizer.FullLowercase(text);
    }

    // CPython's handle_capital_sigma: \p{Cased} \p{Case_Ignorable}* Σ, not followed by \p{Case_Ignorable}* \p{Cased}.
    private static bool IsFinalSigma(string text, int index)
    {
        int j = index;
        Rune before = default;
        bool found = false;
        while (j > 0)
        {
            Rune.DecodeLastFromUtf16(text.AsSpan(0, j), out before, out int width);
            j -= width;
            if (!IsCaseIgnorable(before)) { found = true; break; }
        }
        if (!found || !IsCased(before)) return false;
        j = index + 1;
        while (j < text.Length)
        {
            Rune.DecodeFromUtf16(text.AsSpan(j), out var after, out int width);
            j += width;
            if (!IsCaseIgnorable(after)) return !IsCased(after);
        }
        return true;
    }

    // Unicode's Cased property for characters that are not Case_Ignorable: the cased letter categories plus the
    // Other_Lowercase/Other_Uppercase symbols (ordinal indicators, Roman numerals, circled and squared letters).
    // Checked against CPython 3.11 over every code point.
    private static bool IsCased(Rune c) =>
        Rune.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
        || c.Value is 0xAA or 0xBA or (>= 0x2160 and <= 0x217F) or (>= 0x24B6 and <= 0x24E9)
            or (>= 0x1F130 and <= 0x1F149) or (>= 0x1F150 and <= 0x1F169) or (>= 0x1F170 and <= 0x1F189);

    // Unicode's Case_Ignorable: marks, format characters, modifier letters and symbols, plus the word-internal
    // punctuation of Word_Break MidLetter/MidNumLet/Single_Quote. Checked against CPython 3.11 over every code point.
    private static bool IsCaseIgnorable(Rune c) =>
        Rune.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format
            or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol
        || c.Value is 0x27 or 0x2E or 0x3A or 0xB7 or 0x387 or 0x55F or 0x5F4 or 0x2018 or 0x2019 or 0x2024 or 0x2027
            or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A or 0x1171E;

    /// <summary>Python's string ordering: by code point (ordinal UTF-16 order puts U+10000.. before U+E000..U+FFFF).</summary>
    public static int CompareCodePoints(string? a, string? b)
    {
        if (a is null || b is null) return a is null ? (b is null ? 0 : -1) : 1;
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            Rune.DecodeFromUtf16(a.AsSpan(i), out var x, out int wa);
            Rune.DecodeFromUtf16(b.AsSpan(j), out var y, out int wb);
            // A lone surrogate decodes as U+FFFD; compare its code unit instead, as Python compares the surrogate.
            int cx = x == Rune.ReplacementChar && a[i] != '\ufffd' ? a[i] : x.Value;
            int cy = y == Rune.ReplacementChar && b[j] != '\ufffd' ? b[j] : y.Value;
            if (cx != cy) return cx.CompareTo(cy);
            i += wa; j += wb;
        }
        return (a.Length - i).CompareTo(b.Length - j) switch { 0 => 0, var c => c > 0 ? 1 : -1 };
    }

    /// <summary>Length in code points, as Python's <c>len</c> counts a string.</summary>
    public static int CodePointLength(string text)
    {
        int length = text.Length;
        for (int i = 0; i + 1 < text.Length; i++)
            if (char.IsSurrogatePair(text[i], text[i + 1])) { length--; i++; }
        return length;
    }

    /// <summary>The code points of a string, as Python indexes it (a lone surrogate stays its own code point).</summary>
    public static int[] CodePointValues(string text)
    {
        var values = new List<int>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                values.Add(char.ConvertToUtf32(text[i], text[i + 1]));
                i++;
            }
            else values.Add(text[i]);
        }
        return values.ToArray();
    }
}
