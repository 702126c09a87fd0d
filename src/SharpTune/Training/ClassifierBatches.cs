using SharpTune.Classification;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// A micro-batch of texts for a sequence-classification head: ids right-padded with the head's pad id (its pooling reads
/// each row's last non-pad token) and one target per row. The loss is divided by rows, not tokens.
/// </summary>
public sealed class ClassificationBatch : TrainingBatch
{
    /// <summary>(B) int64 class ids, float32 targets for regression, or (B, num_labels) float32 0/1 for multi-label.</summary>
    public required Tensor Labels { get; init; }

    public override void Dispose()
    {
        base.Dispose();
        Labels.Dispose();
    }
}

/// <summary>
/// A micro-batch of preference pairs for a reward head: rows 0..P-1 are the chosen texts, rows P..2P-1 the rejected
/// ones, so one forward pass scores both. The loss is divided by pairs.
/// </summary>
public sealed class RewardPairBatch : TrainingBatch
{
    /// <summary>Number of pairs P.</summary>
    public required int Pairs { get; init; }

    /// <summary>(P) TRL's per-pair margins, or null when the data has none.</summary>
    public Tensor? Margins { get; init; }

    public override void Dispose()
    {
        base.Dispose();
        Margins?.Dispose();
    }
}

/// <summary>Turns tokenized classification rows and reward pairs into right-padded micro-batches.</summary>
public static class ClassifierCollator
{
    /// <summary>
    /// Rows padded on the right with <paramref name="padTokenId"/>; one loss unit per row. Rows carrying a
    /// <see cref="ClassificationItem.LabelVector"/> (multi-label) get their multi-hot vectors as labels.
    /// </summary>
    public static ClassificationBatch Classification(IReadOnlyList<ClassificationItem> items, int? padTokenId, bool regression, Device device)
    {
        if (items.Count == 0) throw new ArgumentException("a classification batch needs at least one row", nameof(items));
        var texts = RightPaddedTexts.Of(items.Select(i => i.Ids).ToList(), padTokenId, device);
        return new ClassificationBatch
        {
            InputIds = texts.Ids,
            Targets = texts.NoTargets,
            Context = texts.Context,
            SupervisedTokens = items.Count,
            Tokens = texts.Tokens,
            LossUnits = items.Count,
            Labels = items[0].LabelVector is { Length: var labels }
                ? tensor(items.SelectMany(i => i.LabelVector ?? throw new ArgumentException($"{i.Location}: a multi-label batch needs every row's label list")).ToArray(),
                    [items.Count, labels], device: device)
                : regression
                    ? tensor(items.Select(i => i.Target).ToArray(), device: device)
                    : tensor(items.Select(i => i.ClassId).ToArray(), device: device),
        };
    }

    /// <summary>Chosen then rejected texts padded on the right with <paramref name="padTokenId"/>; one loss unit per pair.</summary>
    public static RewardPairBatch Reward(IReadOnlyList<RewardPair> pairs, int? padTokenId, Device device)
    {
        if (pairs.Count == 0) throw new ArgumentException("a reward batch needs at least one pair", nameof(pairs));
        var texts = RightPaddedTexts.Of([.. pairs.Select(p => p.Chosen), .. pairs.Select(p => p.Rejected)], padTokenId, device);
        return new RewardPairBatch
        {
            InputIds = texts.Ids,
            Targets = texts.NoTargets,
            Context = texts.Context,
            SupervisedTokens = pairs.Count,
            Tokens = texts.Tokens,
            LossUnits = pairs.Count,
            Pairs = pairs.Count,
            // Margins are all-or-none within a split (checked when the data is tokenized).
            Margins = pairs[0].Margin is null ? null : tensor(pairs.Select(p => p.Margin ?? 0f).ToArray(), device: device),
        };
    }
}
