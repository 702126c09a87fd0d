using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// The logit steps shared by the library's <see cref="TokenSampler"/> and the server's batch sampler: OpenAI's output
/// penalties as vLLM computes them, and the top-k and top-p cuts written as transformers' <c>TopKLogitsWarper</c> /
/// <c>TopPLogitsWarper</c> and vLLM's <c>apply_top_k_top_p</c> compute them (the two agree), so the tokens kept at a
/// boundary are theirs.
/// </summary>
internal static class LogitFilters
{
    /// <summary>
    /// OpenAI's frequency and presence penalties as vLLM's <c>apply_penalties</c> computes them on fp32 logits (B, V):
    /// logits − frequency·count − presence·[count &gt; 0], with <paramref name="counts"/> (B, V) how often each row has
    /// generated each token (the prompt does not count). The penalties are scalars or one per row (B, 1).
    /// </summary>
    public static Tensor OutputPenalties(Tensor logits, Tensor counts, Tensor frequency, Tensor presence) =>
        logits - frequency * counts - presence * (counts > 0).to(ScalarType.Float32);

    /// <summary>
    /// Nucleus cut on fp32 logits (B, V): sorted ascending, a token is dropped while the probability of it and every token
    /// below it is at most <paramref name="dropUpTo"/> (1 − top_p), and the most likely token always stays. So a token is
    /// kept exactly when the tokens above it hold less than top_p; tokens that tie at the boundary are split in sort order.
    /// <paramref name="dropUpTo"/> is a scalar tensor or one value per row (−∞ keeps the whole row).
    /// </summary>
    public static Tensor TopP(Tensor logits, Tensor dropUpTo) => TopKTopP(logits, null, dropUpTo);

    /// <summary>
    /// Top-k then top-p in one ascending sort of the logits, as vLLM's <c>apply_top_k_top_p</c>: a row keeps the values
    /// not below its sorted value at <paramref name="kthFromBottom"/> (B, 1) (V − k; 0 keeps every value), then the nucleus
    /// of <see cref="TopP"/>. The same tokens as top-k followed by <see cref="TopP"/>, except that tokens tying at the
    /// top-p boundary are split in the order of this one sort (libtorch's sort is not stable), which is vLLM's.
    /// </summary>
    public static Tensor TopKTopP(Tensor logits, Tensor? kthFromBottom, Tensor dropUpTo)
    {
        var (sorted, indices) = logits.sort(-1, descending: false);
        if (kthFromBottom is not null)
            sorted = sorted.masked_fill(sorted < sorted.gather(1, kthFromBottom), double.NegativeInfinity);
        var cumulative = sorted.softmax(-1).cumsum(-1);
        var remove = cumulative <= dropUpTo;
        remove.narrow(1, remove.size(1) - 1, 1).fill_(false);                                   // min_tokens_to_keep = 1
        sorted = sorted.masked_fill(remove, double.NegativeInfinity);
        return sorted.scatter(1, indices, sorted);
    }
}
