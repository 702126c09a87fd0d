using System.Text.RegularExpressions;

namespace SharpTune.Data;

/// <summary>Counts tokens for length statistics and filters; <see cref="Unit"/> names what is counted in reports.</summary>
public interface ITokenCounter
{
    /// <summary>What one count is, e.g. "tokens (gpt2)" or "words (approximate tokens)".</summary>
    string Unit { get; }

    int Count(string text);
}

/// <summary>
/// The default counter when no tokenizer is given: words and punctuation marks. BPE tokenizers produce roughly
/// 1.3 tokens per English word, so reports label these counts as approximate.
/// </summary>
public sealed partial class WordTokenCounter : ITokenCounter
{
    public static WordTokenCounter Instance { get; } = new();

    public string Unit => "words (approximate tokens)";

    public int Count(string text) => WordOrMark().Count(text);

    [GeneratedRegex(@"\w+|[^\w\s]")]
    private static partial Regex WordOrMark();
}

/// <summary>Wraps any counting function, e.g. <c>text =&gt; tokenizer.Encode(text).Count</c>.</summary>
public sealed class DelegateTokenCounter(string unit, Func<string, int> count) : ITokenCounter
{
    public string Unit => unit;

    public int Count(string text) => count(text);
}
