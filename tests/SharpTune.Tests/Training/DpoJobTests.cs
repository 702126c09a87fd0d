using System.Text.Json.Nodes;
using SharpTune.Peft;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>`objective: dpo` end to end on the real stories260K model, from both preference file formats.</summary>
public class DpoJobTests
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue", "Max", "Amy"];
    private static readonly string[] Things = ["ball", "cat", "tree", "cake"];

    /// <summary>The rule: the preferred ending is happy, the other sad.</summary>
    private static IEnumerable<(string Prompt, string Chosen, string Rejected)> Pairs(int count, int offset) =>
        Enumerable.Range(offset, count).Select(i => (
            $"Once upon a time, {Names[i % Names.Length]} had a {Things[i / Names.Length % Things.Length]}.",
            $" {Names[i % Names.Length]} was very happy.",
            $" {Names[i % Names.Length]} was very sad."));

    private static string WritePlain(string path, int count, int offset)
    {
        File.WriteAllLines(path, Pairs(count, offset).Select(p =>
            new JsonObject { ["prompt"] = p.Prompt, ["chosen"] = p.Chosen, ["rejected"] = p.Rejected }.ToJsonString()));
        return path;
    }

    private static string WriteOpenAi(string path, int count, int offset, bool completionSpelling)
    {
        static JsonArray Answer(string text) => [new JsonObject { ["role"] = "assistant", ["content"] = text }];
        File.WriteAllLines(path, Pairs(count, offset).Select(p => new JsonObject
        {
            ["input"] = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = p.Prompt }) },
            [completionSpelling ? "preferred_completion" : "preferred_output"] = Answer(p.Chosen),
            [completionSpelling ? "non_preferred_completion" : "non_preferred_output"] = Answer(p.Rejected),
        }.ToJsonString()));
        return path;
    }

    [SharedAssetFact("models/stories260K")]
    public void DpoOnAnNf4BaseUsesTheQuantizedBaseWithAdaptersOffAsReference()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = WritePlain(dir.File("train.jsonl"), 24, 0), Validation = WritePlain(dir.File("val.jsonl"), 8, 24),
            Output = Path.Combine(dir.Path, "run"), Objective = "dpo", Method = "lora", Beta = 0.2, MaxSteps = 10, LearningRate = 1e-2,
            LrSchedule = "constant", WarmupSteps = 0, MicroBatchSize = 4, EvalEvery = 5, SaveEvery = 5, TargetModules = "all-linear",
            Quantize = "nf4", ComputeDtype = "f32",
        };
        var result = FineTuneJob.Run(options);
        // Policy = reference before training: both are the same NF4 base (adapter disabled for the reference).
        Assert.Equal(Math.Log(2), result.InitialValidationLoss!.Value, 5);
        Assert.True(result.Training.BestValidationLoss < Math.Log(2), $"best validation DPO loss {result.Training.BestValidationLoss}");
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("plain", "lora")]
    [InlineData("openai", "dora")]
    [InlineData("openai-completion", "full")]
    public void DpoTrainsFromEitherPreferenceFormat(string format, string method)
    {
        using var dir = new TempDir();
        var (train, validation, test) = format switch
        {
            "plain" => (WritePlain(dir.File("train.jsonl"), 24, 0), WritePlain(dir.File("val.jsonl"), 8, 24), WritePlain(dir.File("test.jsonl"), 8, 32)),
            _ => (WriteOpenAi(dir.File("train.jsonl"), 24, 0, format.EndsWith("completion")),
                WriteOpenAi(dir.File("val.jsonl"), 8, 24, format.EndsWith("completion")),
                WriteOpenAi(dir.File("test.jsonl"), 8, 32, format.EndsWith("completion"))),
        };
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = train, Validation = validation, Test = test, Output = Path.Combine(dir.Path, "run"),
            Objective = "dpo", Method = method, Beta = 0.2, MaxSteps = 10, LearningRate = method == "full" ? 2e-3 : 1e-2,
            LrSchedule = "constant", WarmupSteps = 0, MicroBatchSize = 4, EvalEvery = 5, SaveEvery = 5, TargetModules = "all-linear",
            // OpenAI data is chat: render it with a template (stories260K has none of its own).
            ChatTemplate = format == "plain" ? null : "chatml",
            PrecomputeRefLogProbs = method == "full",
        };
        var result = FineTuneJob.Run(options);
        Assert.Equal(Math.Log(2), result.InitialValidationLoss!.Value, 5);
        Assert.True(result.Training.BestValidationLoss < Math.Log(2), $"best validation DPO loss {result.Training.BestValidationLoss}");
        Assert.Equal(24, result.TrainData.Kept);
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        Assert.Equal(Math.Log(2), records[0]["loss"]!.GetValue<double>(), 5);
        Assert.True(records[^1]["val_rewards/accuracies"]!.GetValue<double>() >= 0.75, records[^1].ToJsonString());
        Assert.True(result.TestAccuracy >= 0.75, $"test preference accuracy {result.TestAccuracy}");
        Assert.True(result.TestMetrics!["rewards/margins"] > 0);
        Assert.True(File.Exists(Path.Combine(result.FinalDirectory, method == "full" ? "model.safetensors" : AdapterFiles.ConfigFileName)));
    }

    [SharedAssetFact("models/stories260K")]
    public void SupervisedDataIsAClearErrorForDpo()
    {
        using var dir = new TempDir();
        var data = dir.File("sft.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 4).Select(i => new JsonObject { ["prompt"] = "a", ["completion"] = " b" }.ToJsonString()));
        var options = new TrainingOptions { Model = TestAssets.Stories260K, Data = data, Output = dir.File("run"), Objective = "dpo", MaxSteps = 1 };
        var error = Assert.Throws<InvalidDataException>(() => FineTuneJob.Run(options));
        Assert.Contains("preference", error.Message);
        Assert.Contains("objective", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options with { Objective = "ppo" })).Message);
    }
}
