using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Data.Curation;
using SharpTune.Data.Splitting;

namespace SharpTune.Tests.Data;

public class SplitTests
{
    private static readonly string[] Vocabulary =
        "river mountain cloud engine violin harbor garden lantern pepper copper marble falcon tunnel quartz meadow orbit canyon"
            .Split(' ');

    private static List<DataRow> Classification(int seed)
    {
        var rng = new Random(seed);
        string Sentence(int i) => $"item {i} " + string.Join(' ', Enumerable.Range(0, 10).Select(_ => Vocabulary[rng.Next(Vocabulary.Length)] + rng.Next(100)));
        var rows = new List<DataRow>();
        var counts = new Dictionary<string, int> { ["pos"] = 53, ["neg"] = 31, ["neutral"] = 17 };
        int line = 0;
        foreach (var (label, count) in counts)
            for (int i = 0; i < count; i++)
                rows.Add(new DataRow("c.jsonl", ++line, new JsonObject { ["text"] = Sentence(line), ["label"] = label }));
        // Planted near-duplicates: a copy of every tenth row with one character changed.
        foreach (var source in rows.Where((_, i) => i % 10 == 0).ToList())
            rows.Add(new DataRow("c.jsonl", ++line, new JsonObject
            {
                ["text"] = source.Fields["text"]!.GetValue<string>() + "!",
                ["label"] = source.Fields["label"]!.GetValue<string>(),
            }));
        return rows;
    }

    [Fact]
    public void Targets_use_largest_remainder()
    {
        Assert.Equal([8, 1, 1], DatasetSplitter.Targets(10, [0.8, 0.1, 0.1]));
        Assert.Equal([13, 2, 2], DatasetSplitter.Targets(17, [0.8, 0.1, 0.1])); // 13.6, 1.7, 1.7: the two .7 remainders win
        Assert.Equal(17, DatasetSplitter.Targets(17, [0.7, 0.2, 0.1]).Sum());
    }

    [Fact]
    public void Stratified_split_keeps_label_proportions_within_one_example_per_class()
    {
        var rows = Classification(1);
        var split = DatasetSplitter.Split(rows, new SplitOptions { Stratify = true, NearDuplicateThreshold = null, Seed = 5 });
        Assert.Equal(rows.Count, split.Train.Count + split.Validation.Count + split.Test.Count);
        var byLabel = rows.GroupBy(r => r.Fields["label"]!.GetValue<string>()).ToDictionary(g => g.Key, g => g.Count());
        foreach (var (part, fraction) in new[] { (split.Train, 0.8), (split.Validation, 0.1), (split.Test, 0.1) })
        foreach (var (label, total) in byLabel)
        {
            int actual = part.Count(r => r.Fields["label"]!.GetValue<string>() == label);
            Assert.True(Math.Abs(actual - total * fraction) < 1.0 + 1e-9, $"{label}: {actual} vs {total * fraction}");
        }
    }

    [Fact]
    public void No_near_duplicate_pair_crosses_splits_and_seed_reproduces()
    {
        var rows = Classification(2);
        var options = new SplitOptions { Stratify = true, Seed = 9 };
        var split = DatasetSplitter.Split(rows, options);
        var splitOf = new Dictionary<DataRow, int>(ReferenceEqualityComparer.Instance);
        foreach (var (part, id) in new[] { (split.Train, 0), (split.Validation, 1), (split.Test, 2) })
            foreach (var row in part) splitOf[row] = id;
        var texts = rows.Select(r => r.Fields["text"]!.GetValue<string>()).ToList();
        var hasher = new MinHasher();
        int pairs = 0;
        // Check every pair exactly (small data), independently of the LSH index the splitter used.
        for (int i = 0; i < rows.Count; i++)
        for (int j = i + 1; j < rows.Count; j++)
            if (hasher.ExactJaccard(texts[i], texts[j]) >= 0.8)
            {
                pairs++;
                Assert.Equal(splitOf[rows[i]], splitOf[rows[j]]);
            }
        Assert.True(pairs >= 10, $"expected the planted near-duplicates, found {pairs}");
        var again = DatasetSplitter.Split(rows, options);
        Assert.Equal(split.Test.Select(r => r.LineNumber), again.Test.Select(r => r.LineNumber));
    }

    [Fact]
    public void Fractions_must_sum_to_one()
    {
        var e = Assert.Throws<ArgumentException>(() => DatasetSplitter.Split([], new SplitOptions { Train = 0.9, Validation = 0.2 }));
        Assert.Contains("sum to 1", e.Message);
    }
}
