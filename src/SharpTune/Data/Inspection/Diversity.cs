using System.Text.RegularExpressions;

namespace SharpTune.Data.Inspection;

/// <summary>
/// Lexical diversity over a whole dataset: distinct-n (Li et al. 2016) = distinct word n-grams / total word n-grams,
/// and the type-token ratio (= distinct-1 over lower-cased words). Low values flag templated or repetitive data.
/// </summary>
public sealed partial record Diversity(double Distinct1, double Distinct2, double TypeTokenRatio, long Words)
{
    public static Diversity Of(IEnumerable<string> texts)
    {
        var unigrams = new HashSet<string>(StringComparer.Ordinal);
        var bigrams = new HashSet<(string, string)>();
        long words = 0, pairs = 0;
        foreach (var text in texts)
        {
            string? previous = null;
            foreach (Match m in Word().Matches(text))
            {
                var word = m.Value.ToLowerInvariant();
                words++;
                unigrams.Add(word);
                if (previous is not null) { pairs++; bigrams.Add((previous, word)); }
                previous = word;
            }
        }
        double d1 = words == 0 ? 0 : (double)unigrams.Count / words;
        return new Diversity(d1, pairs == 0 ? 0 : (double)bigrams.Count / pairs, d1, words);
    }

    [GeneratedRegex(@"\w+")]
    internal static partial Regex Word();
}
