using SharpTune.Embeddings;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>One embedding training row as token ids: the anchor, its positive and its hard negatives.</summary>
internal sealed record EmbeddingItem(int[] Anchor, int[] Positive, IReadOnlyList<int[]> Negatives);

/// <summary>
/// A micro-batch of embedding rows: every text of the batch in one right-padded (B, T) tensor — rows 0..P-1 the anchors,
/// P..2P-1 their positives, then every hard negative — so one forward pass embeds them all. The loss is divided by anchors.
/// </summary>
internal sealed class EmbeddingBatch : TrainingBatch
{
    /// <summary>Number of anchors P (the loss units).</summary>
    public required int Anchors { get; init; }

    /// <summary>Where each row's text sits (from column 0: right padding).</summary>
    public required IReadOnlyList<RowSpan> Rows { get; init; }
}

/// <summary>Turns tokenized embedding rows into right-padded micro-batches.</summary>
internal static class EmbeddingCollator
{
    /// <summary>
    /// Anchors, positives, then negatives, padded on the right with id 0: causal attention never lets a real token see
    /// the padding after it, and pooling reads only real tokens, so the pad id does not matter.
    /// </summary>
    public static EmbeddingBatch Collate(IReadOnlyList<EmbeddingItem> items, Device device)
    {
        if (items.Count == 0) throw new ArgumentException("an embedding batch needs at least one row", nameof(items));
        List<int[]> texts = [.. items.Select(i => i.Anchor), .. items.Select(i => i.Positive), .. items.SelectMany(i => i.Negatives)];
        var padded = RightPaddedTexts.Of(texts, 0, device);
        return new EmbeddingBatch
        {
            InputIds = padded.Ids,
            Targets = padded.NoTargets,
            Context = padded.Context,
            SupervisedTokens = items.Count,
            Tokens = padded.Tokens,
            LossUnits = items.Count,
            Anchors = items.Count,
            Rows = padded.Rows,
        };
    }
}

/// <summary>One scored pair as token ids: the two texts and their similarity score.</summary>
internal sealed record ScoredPairItem(int[] First, int[] Second, float Score);

/// <summary>
/// A micro-batch of scored pairs: rows 0..P-1 the first texts, P..2P-1 the second, in one right-padded tensor. CoSENT's
/// loss is one value per batch, so the batch is one loss unit: accumulated micro-batches are averaged, as transformers'
/// Trainer averages a batch-level loss over accumulation steps.
/// </summary>
internal sealed class ScoredPairBatch : TrainingBatch
{
    public required int Pairs { get; init; }

    public required IReadOnlyList<RowSpan> Rows { get; init; }

    /// <summary>(P) float32 similarity labels.</summary>
    public required Tensor Scores { get; init; }

    public override void Dispose()
    {
        base.Dispose();
        Scores.Dispose();
    }
}

/// <summary>Turns tokenized scored pairs into right-padded micro-batches.</summary>
internal static class ScoredPairCollator
{
    public static ScoredPairBatch Collate(IReadOnlyList<ScoredPairItem> items, Device device)
    {
        if (items.Count == 0) throw new ArgumentException("a scored-pair batch needs at least one pair", nameof(items));
        List<int[]> texts = [.. items.Select(i => i.First), .. items.Select(i => i.Second)];
        var padded = RightPaddedTexts.Of(texts, 0, device);
        return new ScoredPairBatch
        {
            InputIds = padded.Ids,
            Targets = padded.NoTargets,
            Context = padded.Context,
            SupervisedTokens = 1,
            Tokens = padded.Tokens,
            LossUnits = 1,
            Pairs = items.Count,
            Rows = padded.Rows,
            Scores = tensor(items.Select(i => i.Score).ToArray(), device: device),
        };
    }
}
