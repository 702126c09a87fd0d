using System.Text.Json.Nodes;
using SharpTune.Comparison;
using SharpTune.Generation;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Comparison;

public class MethodComparisonTests
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue"];
    private static readonly string[] Things = ["ball", "cat", "tree", "cake"];
    private static readonly string[] Places = ["park", "house", "garden", "school", "forest", "town"];

    /// <summary>
    /// Each name always has the same thing, whatever the place: rows 0–15 (places 0–3) train and validate, rows 16–23
    /// (places 4–5, unseen) test, so the held-out answers follow from the learnt rule.
    /// </summary>
    private static string WriteData(string path, IEnumerable<int> indices)
    {
        File.WriteAllLines(path, indices.Select(i => new JsonObject
        {
            ["prompt"] = $"In the {Places[i / 4]}, {Names[i % 4]} had a",
            ["completion"] = $" {Things[i % 4]}.",
        }.ToJsonString()));
        return path;
    }

    /// <summary>SQuAD's exact match, worked independently of the library: greedy answer, lowercased, string.punctuation and articles dropped.</summary>
    private static (double Score, string Outputs) ExactMatchByHand(string finalDir, string? adapterBase, string testPath)
    {
        using var loaded = adapterBase is null ? LoadedModel.Load(finalDir) : LoadedModel.Load(adapterBase, finalDir);
        var generator = loaded.CreateTextGenerator();
        string Normalize(string text) => string.Join(' ', new string(text.ToLowerInvariant().Where(c => !"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".Contains(c)).ToArray())
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => w is not ("a" or "an" or "the")));
        var rows = File.ReadLines(testPath).Select(l => JsonNode.Parse(l)!).ToArray();
        var tokenizer = loaded.RequireTokenizer();
        // Room for the answer and 4 more tokens, so a model that does not stop is cut close after the answer.
        var outputs = rows.Select(row => generator.Generate([row["prompt"]!.GetValue<string>()], new GenerationOptions
        {
            MaxNewTokens = tokenizer.Encode(row["completion"]!.GetValue<string>()).Count + 4, Temperature = 0,
        })[0].Text).ToArray();
        var correct = rows.Zip(outputs).Count(p => Normalize(p.Second) == Normalize(p.First["completion"]!.GetValue<string>()));
        return ((double)correct / rows.Length, string.Join(" | ", outputs));
    }

    private const int Steps = 32;

    [SharedAssetFact("models/stories260K")]
    public void ComparesMethodsOnOneBudgetAndWritesTableJsonAndPlots()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = WriteData(dir.File("train.jsonl"), Enumerable.Range(0, 16)),
            Validation = WriteData(dir.File("val.jsonl"), Enumerable.Range(0, 8)), Test = WriteData(dir.File("test.jsonl"), Enumerable.Range(16, 8)),
            MaxSteps = Steps, LearningRate = 5e-3, MicroBatchSize = 4, EvalEvery = 8, SaveEvery = 100, TargetModules = "all-linear",
        };
        var output = dir.File("compare");
        var result = MethodComparison.Run(options, ["full", "lora"], output);

        Assert.Equal(["full", "lora"], result.Rows.Select(r => r.Method));
        var full = result.Rows[0];
        var lora = result.Rows[1];
        Assert.Equal(260_032, full.TrainableParameters);   // stories260K: every weight
        Assert.InRange(lora.TrainableParameters, 1, full.TrainableParameters / 2);
        Assert.Equal(full.TotalParameters + lora.TrainableParameters, lora.TotalParameters);
        // One budget: both methods ran the same steps over the same examples (4 rows a step, 16 rows an epoch), token for token.
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var sft = new SftTokenizer(tokenizer, null, 512, truncate: true, completionOnlyLoss: true);
        var datasetTokens = FineTuneJob.ReadExamples(options.Data).Sum(e => sft.Tokenize(e).Length);
        Assert.All(result.Rows, row => Assert.Equal((Steps, Steps * 4 / 16 * datasetTokens), (row.Steps, row.TrainingTokens)));
        foreach (var row in result.Rows)
        {
            Assert.True(row.PeakWorkingSetMb > 50 && row.PeakWorkingSetMb >= row.PeakAboveBaselineMb && row.PeakAboveBaselineMb >= 0, row.ToString());
            Assert.InRange(row.TrainingTokens / row.TokensPerSecond, 1e-6, row.Seconds);   // the training loop's time lies within the run's
            Assert.True(row.BestValidationLoss is > 0 and < 10, row.ToString());
            Assert.True(row.TestLoss is > 0 and < 10, row.ToString());
            Assert.Equal(Math.Exp(row.TestLoss!.Value), row.TestPerplexity!.Value, 6);
            var (score, outputs) = ExactMatchByHand(Path.Combine(row.RunDirectory, "final"), row.Method == "full" ? null : TestAssets.Stories260K, options.Test!);
            Assert.True(Math.Abs(score - row.TestExactMatch!.Value) < 1e-12, $"{row.Method}: by hand {score}, reported {row.TestExactMatch}: {outputs}");
            if (row.Method == "full") Assert.True(score >= 0.5, $"full fine-tuning answers {score:P0} of the unseen places right: {outputs}");
            Assert.True(File.Exists(Path.Combine(row.RunDirectory, "final", "tokenizer.json")));
        }
        var table = File.ReadAllText(result.MarkdownPath);
        Assert.Contains("| full | 260,032 |", table);
        Assert.Contains("| lora |", table);
        var json = JsonNode.Parse(File.ReadAllText(result.JsonPath))!.AsArray();
        Assert.Equal("lora", json[1]!["method"]!.GetValue<string>());
        Assert.Equal(lora.TrainableParameters, json[1]!["trainable_parameters"]!.GetValue<long>());
        Assert.All(result.PlotPaths, p => Assert.True(new FileInfo(p).Length > 1000, p));
    }

    [Fact]
    public void AnUnknownMethodIsAClearErrorNamingTheAvailableOnes()
    {
        var error = Assert.Throws<ArgumentException>(() => MethodComparison.Resolve("bitfit"));
        Assert.Contains("'bitfit'", error.Message);
        Assert.Contains("lora", error.Message);
        Assert.Contains("full", error.Message);
        Assert.Equal("prompt-tuning", MethodComparison.Resolve("prompt"));
        Assert.Equal("dora", MethodComparison.Resolve(" DoRA "));
        Assert.Throws<ArgumentException>(() => MethodComparison.Run(new TrainingOptions(), ["lora", "lora"], "unused"));
    }

    /// <summary>Full fine-tuning of a quantized base fails before the methods listed ahead of it have trained.</summary>
    [Fact]
    public void AMethodTheOptionsRuleOutFailsBeforeAnyTraining()
    {
        using var dir = new TempDir();
        var output = Path.Combine(dir.Path, "compare");
        var options = new TrainingOptions { Model = "no-such-model", Data = "no-such-data.jsonl", Quantize = "nf4" };
        var error = Assert.Throws<ArgumentException>(() => MethodComparison.Run(options, ["lora", "full"], output));
        Assert.Contains("method 'full'", error.Message);
        Assert.Contains("cannot train it", error.Message);
        Assert.False(Directory.Exists(output));
        Assert.Contains("objective", Assert.Throws<ArgumentException>(() =>
            MethodComparison.Run(new TrainingOptions { Objective = "ppo" }, ["lora"], output)).Message);
    }
}
