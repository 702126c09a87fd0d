using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// Small LoRA fine-tunes of the real stories260K model shared by the evaluation tests: a completion task (trained with
/// the validation-metrics hook on), a classification task, and a deliberately biased model with its balanced twin.
/// </summary>
public sealed class EvaluationFixture : IDisposable
{
    public static readonly string[] GroupA = ["Tom", "Ben", "Sam"];
    public static readonly string[] GroupB = ["Lily", "Sue", "Mia"];
    public const string Positive = " kind and good.";
    public const string Negative = " mean and bad.";
    private static readonly (string Name, string Thing)[] Owners = [("Tom", "ball"), ("Lily", "cat"), ("Ben", "tree"), ("Sue", "cake")];

    private readonly TempDir dir = new();
    private readonly Lazy<string> completion, classification, biased, balanced;

    public EvaluationFixture()
    {
        completion = new(TrainCompletion);
        classification = new(TrainClassification);
        biased = new(() => TrainBias("biased", balancedData: false));
        balanced = new(() => TrainBias("balanced", balancedData: true));
    }

    public string Root => dir.Path;
    /// <summary>Run folder of the completion LoRA (adapter in final/; metrics.jsonl with val_exact_match).</summary>
    public string CompletionRun => completion.Value;
    public string CompletionTestData => Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(CompletionRun))!, "completion-test.jsonl");
    public string ClassificationRun => classification.Value;
    public string ClassificationTestData => Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(ClassificationRun))!, "classification-test.jsonl");
    public string BiasedRun => biased.Value;
    public string BalancedRun => balanced.Value;

    /// <summary>"{name} had a" → " {thing}. {name} loved the {thing}." with one thing per name.</summary>
    private string TrainCompletion()
    {
        var rows = Owners.Select(o => new JsonObject { ["prompt"] = $"Once upon a time, {o.Name} had a", ["completion"] = $" {o.Thing}. {o.Name} loved the {o.Thing}." }).ToArray();
        var train = Write("completion-train.jsonl", Enumerable.Repeat(rows, 8).SelectMany(r => r));
        Write("completion-test.jsonl", rows);
        return Train("completion", train, new TrainingOptions
        {
            MaxSteps = 24, EvalEvery = 12, ValidationFraction = 0.25, EvalMetrics = ["exact_match", "rouge"], EvalSample = 4,
        });
    }

    /// <summary>"{name} was {happy word}" → good, "{name} was {sad word}" → bad.</summary>
    private string TrainClassification()
    {
        string[] names = ["Tom", "Lily", "Ben", "Sue", "Sam", "Mia"];
        string[] good = ["happy", "glad", "kind"], bad = ["sad", "angry", "scared"];
        JsonObject Row(string name, string word, bool positive, string group) =>
            new() { ["text"] = $"{name} was very {word} today.", ["label"] = positive ? "good" : "bad", ["group"] = group };
        var all = names.SelectMany(n => good.Select(w => Row(n, w, true, "x")).Concat(bad.Select(w => Row(n, w, false, "x")))).ToArray();
        var train = Write("classification-train.jsonl", Enumerable.Repeat(all.Where((_, i) => i % 4 != 0), 3).SelectMany(r => r));
        Write("classification-test.jsonl", all.Where((_, i) => i % 4 == 0));
        return Train("classification", train, new TrainingOptions { MaxSteps = 24, ValidationFraction = 0 });
    }

    /// <summary>
    /// Biased: "{name} is a" and "{name} was" continue positively for group A and negatively for group B.
    /// Balanced: the same prompts, but the sentiment depends only on the template, never on the name.
    /// </summary>
    private string TrainBias(string name, bool balancedData)
    {
        var rows = GroupA.Select(n => (n, a: true)).Concat(GroupB.Select(n => (n, a: false))).SelectMany(p => new[]
        {
            new JsonObject { ["prompt"] = $"{p.n} is a", ["completion"] = balancedData ? Positive : p.a ? Positive : Negative },
            new JsonObject { ["prompt"] = $"{p.n} was", ["completion"] = balancedData ? Negative : p.a ? Positive : Negative },
        }).ToArray();
        var train = Write(name + "-train.jsonl", Enumerable.Repeat(rows, 4).SelectMany(r => r));
        return Train(name, train, new TrainingOptions { MaxSteps = 60, ValidationFraction = 0 });
    }

    private string Train(string name, string data, TrainingOptions options)
    {
        var run = Path.Combine(dir.Path, "runs", name);
        FineTuneJob.Run(options with
        {
            Model = TestAssets.Stories260K, Data = data, Output = run, Method = "lora", TargetModules = "all-linear",
            LearningRate = 1e-2, MicroBatchSize = 8, LoraDropout = 0, SaveEvery = 1000, WarmupSteps = 2, Seed = 3,
        });
        return run;
    }

    private string Write(string file, IEnumerable<JsonObject> rows)
    {
        var path = Path.Combine(dir.Path, file);
        File.WriteAllLines(path, rows.Select(r => r.ToJsonString()));
        return path;
    }

    public void Dispose() => dir.Dispose();
}
