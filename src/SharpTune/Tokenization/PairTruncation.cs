namespace SharpTune.Tokenization;

/// <summary>
/// How long each text of a pair stays when the pair must fit a length: the <c>longest_first</c> strategy as the Rust
/// tokenizers library computes it (huggingface/tokenizers@011340b341394a275bd40741ed81be3eb450c9e9,
/// tokenizers/src/utils/truncation.rs, <c>truncate_encodings</c>), which transformers' fast tokenizers and so
/// sentence-transformers' CrossEncoder use. Its budget is the maximum length less the tokens the pair template adds
/// (tokenizer.rs, <c>post_process</c>); tokens are removed from the right.
/// </summary>
/// <remarks>
/// The effect is removing tokens one at a time from the longer text; where both are cut, an odd budget's spare token
/// goes to the text that was longer (the second on a tie), as the Rust arithmetic says.
/// </remarks>
internal static class PairTruncation
{
    /// <returns>The lengths the first and second texts keep.</returns>
    public static (int First, int Second) LongestFirst(int first, int second, int maxLength)
    {
        if (first + second <= maxLength) return (first, second);
        if (maxLength == 0) return (0, 0);
        // With n1 the shorter: keep it and cut the longer to the rest; if that is still too long, halve the budget.
        var swap = first > second;
        int n1 = swap ? second : first, n2;
        n2 = n1 > maxLength ? n1 : Math.Max(n1, maxLength - n1);
        if (n1 + n2 > maxLength)
        {
            n1 = maxLength / 2;
            n2 = n1 + maxLength % 2;
        }
        if (swap) (n1, n2) = (n2, n1);
        return (Math.Min(first, n1), Math.Min(second, n2));   // Encoding::truncate to more than its length keeps it whole
    }
}
