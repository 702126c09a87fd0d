using System.Text.Json.Nodes;
using SharpTune.Comparison;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Comparison;

public class MethodComparisonTests
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue"];
    private static readonly string[] Things = ["ball", "cat", "tree", "cake"];

    private static string WriteData(string path, IEnumerable<int> indices)
    {
        File.WriteAllLines(path, indices.Select(i => new JsonObject
        {
            ["prompt"] = $"Once upon a time, {Names[i % 4]} had a",
            ["completion"] = $" {Things[i / 4 % 4]}.",
        }.ToJsonString()));
        return path;
    }

    [SharedAssetFact("models/stories260K")]
    public void ComparesMethodsOnOneBudgetAndWritesTableJsonAndPlots()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = WriteData(dir.File("train.jsonl"), Enumerable.Range(0, 16)),
            Validation = WriteData(dir.File("val.jsonl"), Enumerable.Range(0, 8)), Test = WriteData(dir.File("test.jsonl"), Enumerable.Range(8, 8)),
            MaxSteps = 8, LearningRate = 5e-3, MicroBatchSize = 4, EvalEvery = 4, SaveEvery = 100, TargetModules = "all-linear",
        };
        var output = dir.File("compare");
        var result = MethodComparison.Run(options, ["full", "lora"], output);

        Assert.Equal(["full", "lora"], result.Rows.Select(r => r.Method));
        var full = result.Rows[0];
        var lora = result.Rows[1];
        Assert.Equal(260_032, full.TrainableParameters);   // stories260K: every weight
        Assert.InRange(lora.TrainableParameters, 1, full.TrainableParameters / 2);
        Assert.Equal(full.TotalParameters + lora.TrainableParameters, lora.TotalParameters);
        // One budget: both methods ran the same 8 steps over the same 32 examples (16 rows, twice), token for token.
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var sft = new SftTokenizer(tokenizer, null, 512, truncate: true, completionOnlyLoss: true);
        var datasetTokens = FineTuneJob.ReadExamples(options.Data).Sum(e => sft.Tokenize(e).Length);
        Assert.All(result.Rows, row => Assert.Equal((8, 2L * datasetTokens), (row.Steps, row.TrainingTokens)));
        foreach (var row in result.Rows)
        {
            Assert.True(row.PeakWorkingSetMb > 50 && row.PeakWorkingSetMb >= row.PeakAboveBaselineMb && row.PeakAboveBaselineMb >= 0, row.ToString());
            Assert.InRange(row.TrainingTokens / row.TokensPerSecond, 1e-6, row.Seconds);   // the training loop's time lies within the run's
            Assert.True(row.BestValidationLoss is > 0 and < 10, row.ToString());
            Assert.True(row.TestLoss is > 0 and < 10, row.ToString());
            Assert.Equal(Math.Exp(row.TestLoss!.Value), row.TestPerplexity!.Value, 6);
            Assert.InRange(row.TestExactMatch!.Value, 0, 1);
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
}
