using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>`objective: orpo | simpo | kto` end to end on the real stories260K model with TRL's data formats.</summary>
public class PreferenceFamilyJobTests
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue", "Max", "Amy"];
    private static readonly string[] Things = ["ball", "cat", "tree", "cake"];

    private static string Prompt(int i) => $"Once upon a time, {Names[i % Names.Length]} had a {Things[i / Names.Length % Things.Length]}.";

    private static string WritePairs(string path, int count, int offset)
    {
        File.WriteAllLines(path, Enumerable.Range(offset, count).Select(i => new JsonObject
        {
            ["prompt"] = Prompt(i), ["chosen"] = $" {Names[i % Names.Length]} was very happy.", ["rejected"] = $" {Names[i % Names.Length]} was very sad.",
        }.ToJsonString()));
        return path;
    }

    /// <summary>KTO's unpaired format: each prompt once, with the happy ending (true) or the sad one (false).</summary>
    private static string WriteUnpaired(string path, int count, int offset)
    {
        File.WriteAllLines(path, Enumerable.Range(offset, count).Select(i => new JsonObject
        {
            ["prompt"] = Prompt(i),
            ["completion"] = i % 2 == 0 ? $" {Names[i % Names.Length]} was very happy." : $" {Names[i % Names.Length]} was very sad.",
            ["label"] = i % 2 == 0,
        }.ToJsonString()));
        return path;
    }

    private static TrainingOptions Options(TempDir dir, string objective, string train, string validation) => new()
    {
        Model = TestAssets.Stories260K, Data = train, Validation = validation, Output = dir.File("run"), Objective = objective,
        Method = "lora", TargetModules = "all-linear", MaxSteps = 10, LearningRate = 1e-2, LrSchedule = "constant", WarmupSteps = 0,
        MicroBatchSize = 4, EvalEvery = 5, SaveEvery = 5,
    };

    [SharedAssetTheory("models/stories260K")]
    [InlineData("orpo")]
    [InlineData("simpo")]
    public void PairedObjectivesLearnThePreference(string objective)
    {
        using var dir = new TempDir();
        var options = Options(dir, objective, WritePairs(dir.File("train.jsonl"), 24, 0), WritePairs(dir.File("val.jsonl"), 8, 24));
        var log = new List<string>();
        var result = FineTuneJob.Run(options, log: log.Add);
        Assert.Contains(log, line => line.StartsWith("dropout off", StringComparison.Ordinal));   // TRL's disable_dropout default
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        var evaluations = records.Where(r => r.ContainsKey("val_loss")).ToList();
        var margins = evaluations.Select(r => r["val_rewards/margins"]!.GetValue<double>()).ToList();
        Assert.True(margins[^1] > 0 && result.Training.BestValidationLoss < result.InitialValidationLoss,
            $"{objective}: validation margins {string.Join(", ", margins)}, loss {result.InitialValidationLoss} → {result.Training.BestValidationLoss}");
        string[] keys = objective == "orpo"
            ? ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "nll_loss", "log_odds_ratio", "log_odds_chosen"]
            : ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "nll_loss"];
        foreach (var key in keys) Assert.True(records[^1].ContainsKey(key), key);
        // The rewards are β × the length-averaged log-probs (no reference model).
        Assert.Equal(0.1 * records[^1]["logps/chosen"]!.GetValue<double>(), records[^1]["rewards/chosen"]!.GetValue<double>(), 6);
    }

    [SharedAssetFact("models/stories260K")]
    public void KtoLearnsFromUnpairedLabels()
    {
        using var dir = new TempDir();
        var options = Options(dir, "kto", WriteUnpaired(dir.File("train.jsonl"), 32, 0), WriteUnpaired(dir.File("val.jsonl"), 8, 32));
        var result = FineTuneJob.Run(options);
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        // LoRA starts as the reference: every reward and the KL estimate are 0, and each loss is 1 − σ(0) = 0.5.
        Assert.Equal(0.5, records[0]["loss"]!.GetValue<double>(), 5);
        Assert.Equal(0, records[0]["kl"]!.GetValue<double>(), 6);
        var last = records.Last(r => r.ContainsKey("val_loss"));
        Assert.True(last["val_rewards/margins"]!.GetValue<double>() > 0, last.ToJsonString());
        Assert.True(last["val_loss"]!.GetValue<double>() < 0.5, last.ToJsonString());
        Assert.True(result.Training.BestValidationLoss < result.InitialValidationLoss);
    }

    [SharedAssetFact("models/stories260K")]
    public void KtoRowsWithoutALabelAreAClearError()
    {
        using var dir = new TempDir();
        var data = dir.File("bad.jsonl");
        File.WriteAllLines(data, [new JsonObject { ["prompt"] = "a", ["completion"] = " b", ["label"] = true }.ToJsonString(),
            new JsonObject { ["prompt"] = "a", ["completion"] = " b" }.ToJsonString()]);
        var error = Assert.ThrowsAny<Exception>(() => FineTuneJob.Run(Options(dir, "kto", data, data)));
        Assert.Contains("bad.jsonl:2", error.Message);
        Assert.Contains("label", error.Message);
    }
}
