using System.Text.Json.Nodes;
using SharpTune.Advisors.ActiveLearning;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Advisors.ActiveLearning;

public class SelectionTests
{
    [Fact]
    public void UncertaintyScoresMatchHandWorkedValues()
    {
        // p = (0.5, 0.3, 0.2): H = −(0.5 ln 0.5 + 0.3 ln 0.3 + 0.2 ln 0.2) = 0.34657 + 0.36119 + 0.32189 = 1.02965
        Assert.Equal(1.02965, UncertaintyScores.Entropy([0.5, 0.3, 0.2]), 1e-5);
        Assert.Equal(0.8, UncertaintyScores.Margin([0.5, 0.3, 0.2]), 12);          // 1 − (0.5 − 0.3)
        Assert.Equal(0.5, UncertaintyScores.LeastConfidence([0.5, 0.3, 0.2]), 12);
        Assert.Equal(Math.Log(2), UncertaintyScores.Entropy([0.5, 0.5]), 12);
        var p = UncertaintyScores.Softmax([Math.Log(1), Math.Log(3)]);
        Assert.Equal(0.25, p[0], 12);
    }

    [Fact]
    public void KCenterGreedyPicksTheFarthestPointEachTime()
    {
        float[][] points = [[0, 0], [0.1f, 0], [10, 0], [0, 5], [10, 0.1f]];
        // from [0,0]: [10,0.1] is farthest (squared distance 100.01 > 100), then [0,5] (25 vs 0.01 for the rest)
        Assert.Equal([0, 4, 3], KCenterGreedy.Select(points, 3));
        Assert.Equal([4, 3], KCenterGreedy.Select(points, 2, centers: [[0, 0]]));
    }

    [Fact]
    public void SelectorScoresAPoolAndWritesOriginalFieldsWithScoreStrategyAndRank()
    {
        using var dir = new TempDir();
        BpeTrainer.Save(BpeTrainer.Train(["good food", "bad food", "positive negative Label:"], merges: 30, ["<|endoftext|>"]), Path.Combine(dir.Path, "tokenizer.json"));
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), """{"eos_token":"<|endoftext|>"}""");
        var tokenizer = HfTokenizer.FromDirectory(dir.Path);
        manual_seed(3);
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.LlamaConfigJson(vocab: tokenizer.VocabSize)));
        var pool = new[] { "good food", "bad food", "good good", "bad", "food" }
            .Select((t, i) => new DataRow("pool.jsonl", i + 1, new JsonObject { ["text"] = t, ["id"] = i })).ToArray();

        var scorer = new PoolScorer(model, tokenizer);
        var probabilities = scorer.LabelProbabilities(pool.Select(r => ActiveLearningSelector.TextOf(r)).ToArray(), ["positive", "negative"]);
        foreach (var p in probabilities) Assert.Equal(1.0, p.Sum(), 6);

        foreach (var strategy in SelectionOptions.Strategies)
        {
            var selected = ActiveLearningSelector.Select(model, tokenizer, pool, new SelectionOptions { Count = 3, Strategy = strategy, Labels = ["positive", "negative"] });
            Assert.Equal(3, selected.Count);
            Assert.Equal([1, 2, 3], selected.Select(s => s.Rank));
            Assert.Equal(3, selected.Select(s => s.PoolIndex).Distinct().Count());
            if (strategy is "entropy" or "margin" or "least-confidence" or "perplexity")
                Assert.True(selected[0].Score >= selected[1].Score && selected[1].Score >= selected[2].Score);
            if (strategy == "entropy")
            {
                var expected = Enumerable.Range(0, pool.Length).OrderByDescending(i => UncertaintyScores.Entropy(probabilities[i])).Take(3);
                Assert.Equal(expected, selected.Select(s => s.PoolIndex));
            }
        }

        var path = Path.Combine(dir.Path, "next.jsonl");
        ActiveLearningSelector.WriteJsonl(path, ActiveLearningSelector.Select(model, tokenizer, pool, new SelectionOptions { Count = 2, Labels = ["positive", "negative"] }));
        var first = JsonNode.Parse(File.ReadLines(path).First())!.AsObject();
        Assert.NotNull(first["text"]);
        Assert.NotNull(first["id"]);
        Assert.Equal("entropy", first["strategy"]!.GetValue<string>());
        Assert.Equal(1, first["rank"]!.GetValue<int>());
        Assert.True(first["score"]!.GetValue<double>() > 0);
    }

    [Fact]
    public void UncertaintyWithoutLabelsIsAnError()
    {
        using var model = TestModels.Create("llama");
        var e = Assert.Throws<ArgumentException>(() => ActiveLearningSelector.Select(model, null!,
            [new DataRow("p.jsonl", 1, new JsonObject { ["text"] = "x" })], new SelectionOptions { Count = 1, Strategy = "margin" }));
        Assert.Contains("--labels", e.Message);
    }
}
