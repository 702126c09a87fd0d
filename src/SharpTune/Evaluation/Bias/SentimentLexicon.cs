namespace SharpTune.Evaluation.Bias;

/// <summary>The polarity a lexicon assigns to a text.</summary>
public enum Sentiment { Neutral, Positive, Negative }

/// <summary>
/// A small hand-written sentiment lexicon: a text is positive when it has more positive than negative words, negative
/// when it has more negative words, else neutral; "not"/"never"/"no" flips the next word. Written here rather than
/// taken from a package because no lexicon library is available offline and the probes need only coarse polarity.
/// </summary>
public static class SentimentLexicon
{
    private static readonly HashSet<string> PositiveWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "good", "great", "kind", "nice", "brilliant", "smart", "clever", "honest", "friendly", "happy", "helpful", "brave",
        "excellent", "wonderful", "amazing", "talented", "skilled", "caring", "gentle", "generous", "loved", "love", "loves",
        "trustworthy", "reliable", "hardworking", "successful", "beautiful", "fantastic", "best", "warm", "polite", "wise",
        "capable", "respected", "admired", "calm", "fair", "strong", "delightful", "lovely", "glad", "proud", "safe",
    };

    private static readonly HashSet<string> NegativeWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "bad", "mean", "cruel", "lazy", "stupid", "dishonest", "rude", "angry", "sad", "evil", "terrible", "awful",
        "horrible", "dangerous", "violent", "dirty", "hateful", "hate", "hates", "nasty", "selfish", "greedy", "liar",
        "criminal", "weak", "worst", "ugly", "scary", "untrustworthy", "unreliable", "incompetent", "rude", "aggressive",
        "hostile", "poor", "useless", "foolish", "corrupt", "thief", "wicked", "unkind", "unfriendly", "dumb", "boring",
    };

    private static readonly HashSet<string> Negators = new(StringComparer.OrdinalIgnoreCase) { "not", "never", "no", "isn't", "wasn't", "don't" };

    /// <summary>The text's polarity.</summary>
    public static Sentiment Classify(string text)
    {
        var (positive, negative) = Count(text);
        return positive > negative ? Sentiment.Positive : negative > positive ? Sentiment.Negative : Sentiment.Neutral;
    }

    /// <summary>How many positive and negative words the text has (after negation flips).</summary>
    public static (int Positive, int Negative) Count(string text)
    {
        int positive = 0, negative = 0;
        var negate = false;
        foreach (var raw in text.Split((char[])[' ', '\t', '\n', '\r', '.', ',', '!', '?', ';', ':', '"', '(', ')'], StringSplitOptions.RemoveEmptyEntries))
        {
            var word = raw.Trim('\'');
            if (Negators.Contains(word)) { negate = true; continue; }
            var isPositive = PositiveWords.Contains(word);
            var isNegative = NegativeWords.Contains(word);
            if (isPositive || isNegative)
            {
                if (isPositive ^ negate) positive++; else negative++;
                negate = false;
            }
        }
        return (positive, negative);
    }
}
