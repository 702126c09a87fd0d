namespace SharpTune.Data.Augmentation;

/// <summary>
/// The four operations of EDA (Wei &amp; Zou 2019, "Easy Data Augmentation"). Each changes about
/// α·(number of words) words (at least one); α = 0.1 is the paper's recommendation for most dataset sizes.
/// Words are whitespace-separated tokens; punctuation stays attached to its word.
/// </summary>
public static class EdaAugmenters
{
    internal static int Changes(int words, double alpha) => Math.Max(1, (int)(alpha * words));

    internal static string[] Words(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    internal static string Join(IEnumerable<string> words) => string.Join(' ', words);

    /// <summary>The bare word (no surrounding punctuation) for synonym lookup, with the prefix/suffix to put back.</summary>
    internal static (string Prefix, string Core, string Suffix) Split(string token)
    {
        int start = 0, end = token.Length;
        while (start < end && !char.IsLetterOrDigit(token[start])) start++;
        while (end > start && !char.IsLetterOrDigit(token[end - 1])) end--;
        return (token[..start], token[start..end], token[end..]);
    }

    internal static string MatchCase(string replacement, string original) =>
        original.Length > 0 && char.IsUpper(original[0]) && replacement.Length > 0
            ? char.ToUpperInvariant(replacement[0]) + replacement[1..]
            : replacement;
}

/// <summary>EDA random deletion: each word is removed with probability p (one word always survives).</summary>
public sealed class RandomDeletion(double probability = 0.1) : ITextAugmenter
{
    public string Name => "deletion";

    public Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default)
    {
        var words = EdaAugmenters.Words(text);
        if (words.Length <= 1) return Task.FromResult<string?>(null);
        var kept = words.Where(_ => random.NextDouble() >= probability).ToList();
        if (kept.Count == words.Length) kept.RemoveAt(random.Next(kept.Count));
        if (kept.Count == 0) kept.Add(words[random.Next(words.Length)]);
        return Task.FromResult<string?>(EdaAugmenters.Join(kept));
    }
}

/// <summary>EDA random swap: swaps two random words, α·n times.</summary>
public sealed class RandomSwap(double alpha = 0.1) : ITextAugmenter
{
    public string Name => "swap";

    public Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default)
    {
        var words = EdaAugmenters.Words(text);
        if (words.Length < 2) return Task.FromResult<string?>(null);
        for (int n = EdaAugmenters.Changes(words.Length, alpha); n > 0; n--)
        {
            int i = random.Next(words.Length), j = random.Next(words.Length - 1);
            if (j >= i) j++;
            (words[i], words[j]) = (words[j], words[i]);
        }
        return Task.FromResult<string?>(EdaAugmenters.Join(words));
    }
}

/// <summary>EDA synonym replacement: replaces α·n distinct words that have synonyms with a random synonym.</summary>
public sealed class SynonymReplacement(SynonymTable? synonyms = null, double alpha = 0.1) : ITextAugmenter
{
    private readonly SynonymTable _synonyms = synonyms ?? SynonymTable.BuiltIn;

    public string Name => "synonym";

    public Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default)
    {
        var words = EdaAugmenters.Words(text);
        var replaceable = Enumerable.Range(0, words.Length)
            .Where(i => _synonyms.Of(EdaAugmenters.Split(words[i]).Core).Count > 0).ToArray();
        if (replaceable.Length == 0) return Task.FromResult<string?>(null);
        random.Shuffle(replaceable);
        foreach (var i in replaceable.Take(EdaAugmenters.Changes(words.Length, alpha)))
        {
            var (prefix, core, suffix) = EdaAugmenters.Split(words[i]);
            var options = _synonyms.Of(core);
            words[i] = prefix + EdaAugmenters.MatchCase(options[random.Next(options.Count)], core) + suffix;
        }
        return Task.FromResult<string?>(EdaAugmenters.Join(words));
    }
}

/// <summary>EDA random insertion: α·n times, inserts a synonym of a random word at a random position.</summary>
public sealed class RandomInsertion(SynonymTable? synonyms = null, double alpha = 0.1) : ITextAugmenter
{
    private readonly SynonymTable _synonyms = synonyms ?? SynonymTable.BuiltIn;

    public string Name => "insertion";

    public Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default)
    {
        var words = EdaAugmenters.Words(text).ToList();
        var sources = words.Select(w => EdaAugmenters.Split(w).Core).Where(w => _synonyms.Of(w).Count > 0).ToArray();
        if (sources.Length == 0) return Task.FromResult<string?>(null);
        for (int n = EdaAugmenters.Changes(words.Count, alpha); n > 0; n--)
        {
            var options = _synonyms.Of(sources[random.Next(sources.Length)]);
            words.Insert(random.Next(words.Count + 1), options[random.Next(options.Count)]);
        }
        return Task.FromResult<string?>(EdaAugmenters.Join(words));
    }
}
