namespace SharpTune.Data.Curation;

/// <summary>Writing systems the script heuristic knows.</summary>
public enum UnicodeScript { Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic, Devanagari, Thai, Hangul, Kana, Han, Other }

/// <summary>
/// Classifies letters by Unicode block. .NET exposes no Unicode Script property, and the main blocks of these scripts
/// are enough for a charset heuristic, so the ranges are listed here.
/// </summary>
public static class UnicodeScripts
{
    public static UnicodeScript Of(int codePoint) => codePoint switch
    {
        <= 0x024F or (>= 0x1E00 and <= 0x1EFF) or (>= 0x2C60 and <= 0x2C7F) or (>= 0xA720 and <= 0xA7FF) or (>= 0xFF21 and <= 0xFF5A) => UnicodeScript.Latin,
        >= 0x0370 and <= 0x03FF or >= 0x1F00 and <= 0x1FFF => UnicodeScript.Greek,
        >= 0x0400 and <= 0x052F or >= 0x2DE0 and <= 0x2DFF or >= 0xA640 and <= 0xA69F => UnicodeScript.Cyrillic,
        >= 0x0530 and <= 0x058F => UnicodeScript.Armenian,
        >= 0x0590 and <= 0x05FF => UnicodeScript.Hebrew,
        >= 0x0600 and <= 0x06FF or >= 0x0750 and <= 0x077F or >= 0xFB50 and <= 0xFDFF or >= 0xFE70 and <= 0xFEFF => UnicodeScript.Arabic,
        >= 0x0900 and <= 0x097F => UnicodeScript.Devanagari,
        >= 0x0E00 and <= 0x0E7F => UnicodeScript.Thai,
        >= 0x1100 and <= 0x11FF or >= 0x3130 and <= 0x318F or >= 0xAC00 and <= 0xD7AF => UnicodeScript.Hangul,
        >= 0x3040 and <= 0x30FF or >= 0x31F0 and <= 0x31FF => UnicodeScript.Kana,
        >= 0x3400 and <= 0x4DBF or >= 0x4E00 and <= 0x9FFF or >= 0xF900 and <= 0xFAFF or >= 0x20000 and <= 0x2FA1F => UnicodeScript.Han,
        _ => UnicodeScript.Other,
    };

    /// <summary>The fraction of letters in <paramref name="text"/> from <paramref name="script"/>, and the letter count.</summary>
    public static (double Fraction, int Letters) Fraction(string text, UnicodeScript script)
    {
        int letters = 0, matching = 0;
        foreach (var rune in text.EnumerateRunes())
        {
            if (!System.Text.Rune.IsLetter(rune)) continue;
            letters++;
            if (Of(rune.Value) == script) matching++;
        }
        return (letters == 0 ? 0 : (double)matching / letters, letters);
    }
}
