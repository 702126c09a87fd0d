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
/// up with remaining rows even though they repeat a text: for each place, the earliest row that repeats the fewest of the
/// batch's texts so far, so the rows forced in avoid repeating each other's texts where they can. That happens only when
/// the duplicates cannot be avoided — near an epoch's end, when the rows left share texts — and <see cref="Batches"/>
/// reports how many rows each batch took in so.
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
    /// every row exactly once, from <paramref name="order"/> (the epoch's permutation); and for each batch, how many of its
    /// rows were forced in although they share a text with it (0 for a batch free of duplicates).
    /// </summary>
    public static (IReadOnlyList<int[]> Batches, IReadOnlyList<int> Forced) Batches(IReadOnlyList<IReadOnlyCollection<string>> texts,
        IReadOnlyList<int> order, int batchSize)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be at least 1");
        var remaining = new LinkedList<int>(order);
        var batches = new List<int[]>();
        var forced = new List<int>();
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
            var forcedHere = 0;
            while (batch.Count < batchSize && remaining.Count > 0)   // nothing left fits: fill up, repeating as few texts as possible
            {
                var chosen = FewestRepeats(remaining, texts, seen);
                batch.Add(chosen.Value);
                seen.UnionWith(texts[chosen.Value]);
                remaining.Remove(chosen);
                forcedHere++;
            }
            batches.Add([.. batch]);
            forced.Add(forcedHere);
        }
        return (batches, forced);
    }

    /// <summary>
    /// The earliest remaining row that repeats the fewest of <paramref name="seen"/>'s texts. Every remaining row repeats
    /// at least one (none fitted the batch), so the first that repeats exactly one ends the search.
    /// </summary>
    private static LinkedListNode<int> FewestRepeats(LinkedList<int> remaining, IReadOnlyList<IReadOnlyCollection<string>> texts, HashSet<string> seen)
    {
        LinkedListNode<int>? best = null;
        var fewest = int.MaxValue;
        for (var node = remaining.First; node is not null; node = node.Next)
        {
            var repeats = texts[node.Value].Distinct(StringComparer.Ordinal).Count(seen.Contains);
            if (repeats < fewest) (best, fewest) = (node, repeats);
            if (fewest <= 1) break;
        }
        return best!;
    }

    /// <summary>
    /// The log line for epoch <paramref name="epoch"/> (0-based) arranged into <paramref name="batches"/>: a warning
    /// giving the rows forced into a micro-batch that shares a text with them, as a count and a share of the epoch's rows.
    /// </summary>
    public static string Describe(IReadOnlyList<int[]> batches, IReadOnlyList<int> forced, int batchSize, int epoch)
    {
        var head = $"batch sampler no_duplicates, epoch {epoch + 1}: {batches.Count} micro-batches of up to {batchSize} rows";
        var rows = forced.Sum();
        if (rows == 0) return head + ", none repeating a text";
        var total = batches.Sum(b => b.Length);
        return $"warning: {head}; {rows} of the {total} rows ({(100.0 * rows / total).ToString("F1", System.Globalization.CultureInfo.InvariantCulture)}%), in {forced.Count(f => f > 0)} micro-batches at the " +
            "epoch's end, had to join a micro-batch that shares a text with them (the rows left shared texts): with in-batch negatives each such text is scored as a negative of itself";
    }

    /// <summary>The epoch's row order: <see cref="Batches"/> one after another, which the trainer cuts back into the same batches.</summary>
    public static int[] EpochOrder(IReadOnlyList<IReadOnlyCollection<string>> texts, IReadOnlyList<int> order, int batchSize) =>
        [.. Batches(texts, order, batchSize).Batches.SelectMany(b => b)];
}
