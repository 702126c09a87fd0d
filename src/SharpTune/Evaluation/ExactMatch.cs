using System.Buffers;
using System.Text;

namespace SharpTune.Evaluation;

/// <summary>
/// Exact match, strict (ordinal string equality) or normalised as in the official SQuAD v1.1 evaluation script's
/// <c>normalize_answer</c>: lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace.
/// </summary>
public static class ExactMatch
{
    private const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    /// <summary>SQuAD's answer normalisation.</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string lowered = PythonText.Lower(text);
        string noPunctuation = string.Concat(lowered.Where(ch => !Punctuation.Contains(ch)));
        string noArticles = RemoveArticles(noPunctuation);
        return string.Join(' ', PythonText.SplitWhitespace(noArticles));
    }

    // re.sub(r'\b(a|an|the)\b', ' ', text) with Python's word characters (str.isalnum() or '_'). .NET's \b differs:
    // its \w includes combining marks and connector punctuation and leaves out numbers such as '²' and 'Ⅷ'.
    private static string RemoveArticles(string text)
    {
        var result = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            int length = ArticleAt(text, i);
            if (length > 0) { result.Append(' '); i += length; }
            else result.Append(text[i++]);
        }
        return result.ToString();
    }

    private static int ArticleAt(string text, int start)
    {
        if (start > 0 && Rune.DecodeLastFromUtf16(text.AsSpan(0, start), out var before, out _) == OperationStatus.Done
            && IsWordCharacter(before))
            return 0;
        foreach (var article in (ReadOnlySpan<string>)["a", "an", "the"])
        {
            int end = start + article.Length;
            if (end > text.Length || string.CompareOrdinal(text, start, article, 0, article.Length) != 0) continue;
            if (end == text.Length || Rune.DecodeFromUtf16(text.AsSpan(end), out var after, out _) != OperationStatus.Done
                || !IsWordCharacter(after))
                return article.Length;
        }
        return 0;
    }

    // Python's \w for str patterns: letters (isalpha), anything with a numeric value (isnumeric), and '_'.
    private static bool IsWordCharacter(Rune c) => Rune.IsLetter(c) || Rune.GetNumericValue(c) != -1 || c.Value == '_';

    /// <summary>True when the strings are identical.</summary>
    public static bool Strict(string prediction, string reference) => string.Equals(prediction, reference, StringComparison.Ordinal);

    /// <summary>True when the strings are identical after <see cref="Normalize"/>.</summary>
    public static bool Normalized(string prediction, string reference) => Normalize(prediction) == Normalize(reference);

    /// <summary>Fraction (0–1) of predictions that match any of their references.</summary>
    public static double Score(IReadOnlyList<string> predictions, IReadOnlyList<IReadOnlyList<string>> references, bool normalize = true)
    {
        ArgumentNullException.ThrowIfNull(predictions);
        ArgumentNullException.ThrowIfNull(references);
        if (predictions.Count != references.Count)
            throw new ArgumentException($"There are {predictions.Count} predictions but {references.Count} reference lists.", nameof(references));
        if (predictions.Count == 0) throw new ArgumentException("No predictions to score.", nameof(predictions));
        Func<string, string, bool> match = normalize ? Normalized : Strict;
        int hits = predictions.Where((p, i) => references[i].Any(r => match(p, r))).Count();
        return (double)hits / predictions.Count;
    }

    /// <summary>Fraction (0–1) of predictions that match their single reference.</summary>
    public static double Score(IReadOnlyList<string> predictions, IReadOnlyList<string> references, bool normalize = true)
    {
        ArgumentNullException.ThrowIfNull(references);
        return Score(predictions, references.Select(r => (IReadOnlyList<string>)[r]).ToList(), normalize);
    }
}
