using System.Text.RegularExpressions;

namespace SharpTune.Evaluation;

/// <summary>
/// Exact match, strict (ordinal string equality) or normalised as in the official SQuAD v1.1 evaluation script's
/// <c>normalize_answer</c>: lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace.
/// </summary>
public static partial class ExactMatch
{
    private const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    [GeneratedRegex(@"\b(a|an|the)\b")]
    private static partial Regex Articles();

    /// <summary>SQuAD's answer normalisation.</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string lowered = text.ToLowerInvariant();
        string noPunctuation = string.Concat(lowered.Where(ch => !Punctuation.Contains(ch)));
        string noArticles = Articles().Replace(noPunctuation, " ");
        return string.Join(' ', PythonText.SplitWhitespace(noArticles));
    }

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
