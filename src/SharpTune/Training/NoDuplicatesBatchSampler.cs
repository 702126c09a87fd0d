namespace SharpTune.Training;

/// <summary>
/// sentence-transformers' <c>BatchSamplers.NO_DUPLICATES</c> (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f,
/// sentence_transformers/sampler.py, <c>NoDuplicatesBatchSampler.__iter__</c>): an epoch's rows in a seeded random order,
/// taken greedily into batches so that no text appears twice in a batch, across every column (an anchor that is another
/// row's positive counts) — with in-batch negatives a repeated text would be scored as its own negative. The rows are
/// walked in the epoch's order; a row sharing a text with the batch waits for a later batch.
/// <para>
/// One difference keeps the trainer's schedule (⌈rows / batch⌉ micro-batches of the full size, so steps, learning rate
/// and exact resume stay pure functions of the step): where sentence-transformers, finding no row left that fits, yields
/// a short batch and starts another (so its epoch can have more batches than its length says), here the batch is filled
/// up with the earliest remaining rows even though they repeat a text. That happens only when the duplicates cannot be
/// avoided — near an epoch's end, when the rows left share texts — and <see cref="Batches"/> reports which batches.
/// </para>
/// </summary>
internal static class NoDuplicatesBatchSampler
{
    /// <summary>The names <c>batch_sampler</c> takes: the default (a plain seeded permutation) and this sampler.</summary>
    public const string Default = "batch_sampler", NoDuplicates = "no_duplicates";

    /// <summary><c>batch_sampler</c> (--batch-sampler) as one of <see cref="Default"/> and <see cref="NoDuplicates"/>; dashes read as underscores.</summary>
    public static string Parse(string? name)
    {
        var value = (name ?? Default).Trim().ToLowerInvariant().Replace('-', '_');
        return value is Default or NoDuplicates ? value
            : throw new ArgumentException($"batch_sampler (--batch-sampler) must be {Default} or {NoDuplicates} (no-duplicates), found '{name}'");
    }

    /// <summary>
    /// The epoch's batches of <paramref name="batchSize"/> row indices (the last one short when the size does not divide),
    /// every row exactly once, from <paramref name="order"/> (the epoch's permutation); and whether each batch repeats a text.
    /// </summary>
    public static (IReadOnlyList<int[]> Batches, IReadOnlyList<bool> Repeats) Batches(IReadOnlyList<IReadOnlyCollection<string>> texts,
        IReadOnlyList<int> order, int batchSize)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be at least 1");
        var remaining = new LinkedList<int>(order);
        var batches = new List<int[]>();
        var repeats = new List<bool>();
        while (remaining.Count > 0)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var batch = new List<int>(batchSize);
            for (var node = remaining.First; node is not null && batch.Count < batchSize;)
            {
                var next = node.Next;
                var rowTexts = texts[node.Value];
                if (!rowTexts.Any(seen.Contains))
                {
                    batch.Add(node.Value);
                    seen.UnionWith(rowTexts);
                    remaining.Remove(node);
                }
                node = next;
            }
            var repeated = false;
            while (batch.Count < batchSize && remaining.First is { } first)   // nothing left fits: fill up in order
            {
                batch.Add(first.Value);
                remaining.RemoveFirst();
                repeated = true;
            }
            batches.Add([.. batch]);
            repeats.Add(repeated);
        }
        return (batches, repeats);
    }

    /// <summary>The epoch's row order: <see cref="Batches"/> one after another, which the trainer cuts back into the same batches.</summary>
    public static int[] EpochOrder(IReadOnlyList<IReadOnlyCollection<string>> texts, IReadOnlyList<int> order, int batchSize) =>
        [.. Batches(texts, order, batchSize).Batches.SelectMany(b => b)];
}
