using SharpTune.Data.Curation;

namespace SharpTune.Data.Splitting;

/// <summary>
/// Splits a dataset into train/validation/test. Near-duplicate clusters (MinHash + LSH) move as one unit, so no
/// near-duplicate pair straddles two splits; with stratification each label is split on its own. Units are shuffled
/// with the seed, placed largest first, each into the split furthest below its target (targets by largest remainder),
/// so with singleton clusters every split holds each class's proportion to within one example. A cluster whose
/// members carry different labels is stratified under its first member's label.
/// </summary>
public static class DatasetSplitter
{
    private const int Splits = 3;

    public static SplitResult Split(IReadOnlyList<DataRow> rows, SplitOptions? options = null)
    {
        options ??= new SplitOptions();
        options.Validate();
        var format = options.Format ?? (rows.Count == 0 ? DatasetFormat.Text : DatasetFormatDetector.Detect(rows));
        var examples = rows.Select(r => TrainingExampleMapper.Map(r, format)).ToList();
        var texts = examples.Select(e => e.TrainingText).ToList();
        int[] clusterOf = options.NearDuplicateThreshold is { } threshold
            ? NearDuplicateClusters.Assign(texts, threshold, options.MinHash)
            : ExactClusters(texts);

        var units = clusterOf.Select((cluster, i) => (cluster, i)).GroupBy(p => p.cluster)
            .Select(g => g.Select(p => p.i).ToArray()).ToList();
        var strata = options.Stratify
            ? units.GroupBy(u => examples[u[0]].Label ?? throw new InvalidOperationException(
                $"{rows[u[0]].Location}: stratified split needs a label, but the dataset's format is {format}"))
                .OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => g.ToList()).ToList()
            : [units];

        var assigned = new List<int>[Splits] { [], [], [] };
        double[] fractions = [options.Train, options.Validation, options.Test];
        var random = new Random(options.Seed);
        foreach (var stratum in strata)
        {
            var shuffled = stratum.ToArray();
            random.Shuffle(shuffled);
            var ordered = shuffled.OrderByDescending(u => u.Length).ToList();
            int[] target = Targets(ordered.Sum(u => u.Length), fractions);
            var count = new int[Splits];
            foreach (var unit in ordered)
            {
                int best = 0;
                for (int s = 1; s < Splits; s++)
                    if (target[s] - count[s] > target[best] - count[best]) best = s;
                count[best] += unit.Length;
                assigned[best].AddRange(unit);
            }
        }
        // Rows keep their original order within each split.
        return new SplitResult(format,
            assigned[0].Order().Select(i => rows[i]).ToList(),
            assigned[1].Order().Select(i => rows[i]).ToList(),
            assigned[2].Order().Select(i => rows[i]).ToList());
    }

    /// <summary>Whole-row targets summing to <paramref name="n"/>: floors of n·fraction, leftovers to the largest remainders.</summary>
    public static int[] Targets(int n, IReadOnlyList<double> fractions)
    {
        var target = fractions.Select(f => (int)Math.Floor(n * f)).ToArray();
        int left = n - target.Sum();
        foreach (var s in Enumerable.Range(0, fractions.Count).OrderByDescending(s => n * fractions[s] - target[s]).ThenBy(s => s).Take(left))
            target[s]++;
        return target;
    }

    private static int[] ExactClusters(List<string> texts)
    {
        var first = new Dictionary<UInt128, int>();
        return texts.Select((t, i) =>
        {
            var key = TextNormalizer.ExactKey(t);
            return first.TryAdd(key, i) ? i : first[key];
        }).ToArray();
    }
}
