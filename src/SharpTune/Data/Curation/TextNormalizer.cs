using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;

namespace SharpTune.Data.Curation;

/// <summary>
/// The canonical form texts are compared in: Unicode compatibility-folded (NFKC), lower-cased, whitespace collapsed
/// to single spaces and trimmed. Two rows are exact duplicates when their normalised texts hash alike.
/// </summary>
public static class TextNormalizer
{
    public static string Normalize(string text)
    {
        // string.Normalize is a no-op for non-ASCII text under InvariantGlobalization (how SharpTune builds), so the
        // compatibility characters that most often separate scraped duplicates (full-width forms, ligatures, odd
        // spaces) are folded by hand below as well; with ICU present, Normalize does full NFKC first.
        var folded = text.IsNormalized(NormalizationForm.FormKC) ? text : text.Normalize(NormalizationForm.FormKC);
        var sb = new StringBuilder(folded.Length);
        bool pendingSpace = false;
        foreach (var raw in folded)
        {
            if (char.IsWhiteSpace(raw) || raw == '\u200B')
            {
                pendingSpace = sb.Length > 0;
                continue;
            }
            if (pendingSpace) { sb.Append(' '); pendingSpace = false; }
            AppendFolded(sb, raw);
        }
        return sb.ToString();
    }

    /// <summary>A 128-bit hash of the normalised text (XxHash128), the key of exact deduplication.</summary>
    public static UInt128 ExactKey(string text) => KeyOfNormalized(Normalize(text));

    /// <summary><see cref="ExactKey"/> of a text already passed through <see cref="Normalize"/>.</summary>
    public static UInt128 KeyOfNormalized(string normalizedText) =>
        XxHash128.HashToUInt128(MemoryMarshal.AsBytes(normalizedText.AsSpan()));

    private static void AppendFolded(StringBuilder sb, char c)
    {
        switch (c)
        {
            case >= '\uFF01' and <= '\uFF5E':
                sb.Append(char.ToLowerInvariant((char)(c - 0xFEE0)));
                return;
            case '\uFB00': sb.Append("ff"); return;
            case '\uFB01': sb.Append("fi"); return;
            case '\uFB02': sb.Append("fl"); return;
            case '\uFB03': sb.Append("ffi"); return;
            case '\uFB04': sb.Append("ffl"); return;
            case '\uFB05' or '\uFB06': sb.Append("st"); return;
            case '\u2024': sb.Append('.'); return;
            case '\u2026': sb.Append("..."); return;
            default:
                sb.Append(char.ToLowerInvariant(c));
                return;
        }
    }
}
