using SharpTune.Embeddings;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// The skeleton of a batch of whole texts read by a head (a classifier's score, a reward, an embedding) rather than by
/// next-token targets: the texts right-padded to the longest into one (B, T) tensor, a no-target tensor, plain causal
/// attention (a real token never sees the padding after it, so no mask is needed) and where each text sits in its row.
/// The collators hand these tensors to the batch they build, which disposes them. A plain class, not a record: equality
/// and printing by value mean nothing for tensors.
/// </summary>
internal sealed class RightPaddedTexts(Tensor ids, Tensor noTargets, ForwardContext context, int tokens, RowSpan[] rows)
{
    public Tensor Ids { get; } = ids;
    public Tensor NoTargets { get; } = noTargets;
    public ForwardContext Context { get; } = context;
    public int Tokens { get; } = tokens;
    public RowSpan[] Rows { get; } = rows;

    /// <summary>The texts padded with <paramref name="padTokenId"/>; without one only a single text can be batched.</summary>
    public static RightPaddedTexts Of(IReadOnlyList<int[]> texts, int? padTokenId, Device device)
    {
        var ids = PaddedIds(texts, padTokenId, device);
        return new RightPaddedTexts(
            ids,
            full(ids.shape, BatchCollator.IgnoreIndex, ScalarType.Int64, device),
            ForwardContext.Causal(ids.shape[0], ids.shape[1], device),
            texts.Sum(t => t.Length),
            // From column 0, so each text's last real token sits at column Length - 1.
            texts.Select(t => new RowSpan(0, t.Length, 0)).ToArray());
    }

    /// <summary>(B, T) ids padded on the right with <paramref name="padTokenId"/>.</summary>
    public static Tensor PaddedIds(IReadOnlyList<int[]> texts, int? padTokenId, Device device)
    {
        var pad = padTokenId ?? (texts.Count == 1 ? 0
            : throw new InvalidOperationException("config.pad_token_id is not set, so rows cannot be batched (use a micro-batch of 1)"));
        var length = texts.Max(r => r.Length);
        var flat = new long[texts.Count * length];
        for (var i = 0; i < texts.Count; i++)
            for (var j = 0; j < length; j++)
                flat[i * length + j] = j < texts[i].Length ? texts[i][j] : pad;
        return tensor(flat, [texts.Count, length], ScalarType.Int64, device);
    }
}
