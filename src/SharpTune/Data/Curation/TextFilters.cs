namespace SharpTune.Data.Curation;

/// <summary>A quality rule on a row's training text. A failing row is rejected under <see cref="Reason"/>.</summary>
public interface ITextFilter
{
    /// <summary>The rejects key, e.g. <c>too_short</c>.</summary>
    string Reason { get; }

    /// <summary>Null when the text passes, else what was expected and what was found.</summary>
    string? Check(string text);
}

/// <summary>Minimum and maximum length, in characters and (optionally) tokens.</summary>
public sealed class LengthFilter(int minChars = 1, int maxChars = int.MaxValue, int minTokens = 0, int maxTokens = int.MaxValue,
    ITokenCounter? tokenCounter = null) : ITextFilter
{
    public string Reason => "length";

    public string? Check(string text)
    {
        int chars = text.Trim().Length;
        if (chars < minChars) return $"too short: {chars} characters, minimum {minChars}";
        if (chars > maxChars) return $"too long: {chars} characters, maximum {maxChars}";
        if (minTokens <= 0 && maxTokens == int.MaxValue) return null;
        var counter = tokenCounter ?? WordTokenCounter.Instance;
        int tokens = counter.Count(text);
        if (tokens < minTokens) return $"too short: {tokens} {counter.Unit}, minimum {minTokens}";
        if (tokens > maxTokens) return $"too long: {tokens} {counter.Unit}, maximum {maxTokens}";
        return null;
    }
}

/// <summary>
/// Rejects degenerate repetition: the fraction of word n-grams that repeat an earlier n-gram of the same text
/// (cf. the duplicate n-gram rules of Gopher, Rae et al. 2021). "thank you thank you thank you" has 3-gram
/// repetition 0.5. Texts with fewer than <paramref name="n"/> + 2 words are not judged.
/// </summary>
public sealed class RepetitionFilter(double maxRepeatedFraction = 0.3, int n = 3) : ITextFilter
{
    public string Reason => "repetition";

    public string? Check(string text)
    {
        double fraction = RepeatedNGramFraction(text, n);
        return fraction > maxRepeatedFraction ? $"{fraction:P0} of word {n}-grams are repeats, maximum {maxRepeatedFraction:P0}" : null;
    }

    /// <summary>The fraction of the text's word n-grams that already occurred earlier in it (0 for short texts).</summary>
    public static double RepeatedNGramFraction(string text, int n)
    {
        var words = TextNormalizer.Normalize(text).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length < n + 2) return 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int total = 0, repeated = 0;
        for (int i = 0; i + n <= words.Length; i++, total++)
            if (!seen.Add(string.Join(' ', words, i, n))) repeated++;
        return (double)repeated / total;
    }
}

/// <summary>
/// Rejects rows that are mostly not prose: the fraction of non-space characters that are neither letters, digits
/// nor common punctuation (markup debris, encodings, ASCII art).
/// </summary>
public sealed class SymbolRatioFilter(double maxSymbolFraction = 0.3) : ITextFilter
{
    private const string CommonPunctuation = ".,;:!?'\"()-–—…%/&’“”‘«»¿¡";

    public string Reason => "symbols";

    public string? Check(string text)
    {
        double fraction = SymbolFraction(text);
        return fraction > maxSymbolFraction ? $"{fraction:P0} of characters are symbols, maximum {maxSymbolFraction:P0}" : null;
    }

    public static double SymbolFraction(string text)
    {
        int counted = 0, symbols = 0;
        foreach (var c in text)
        {
            if (char.IsWhiteSpace(c)) continue;
            counted++;
            if (!char.IsLetterOrDigit(c) && !char.IsSurrogate(c) && !CommonPunctuation.Contains(c)) symbols++;
        }
        return counted == 0 ? 0 : (double)symbols / counted;
    }
}

/// <summary>
/// A language/charset heuristic: at least <paramref name="minFraction"/> of the letters must belong to the expected
/// script (e.g. Latin for English or French). Catches rows in the wrong language family and mojibake.
/// </summary>
public sealed class ScriptFilter(UnicodeScript expected, double minFraction = 0.8) : ITextFilter
{
    public string Reason => "script";

    public string? Check(string text)
    {
        var (fraction, letters) = UnicodeScripts.Fraction(text, expected);
        return letters > 0 && fraction < minFraction
            ? $"{fraction:P0} of letters are {expected}, minimum {minFraction:P0}"
            : null;
    }
}
