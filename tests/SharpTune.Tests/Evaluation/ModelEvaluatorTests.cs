using System.Text.Json.Nodes;
using SharpTune.Cli.Commands;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.Tests.Support;
using SharpTune.Tracking;

namespace SharpTune.Tests.Evaluation;

[Collection(EvaluationCollection.Name)]
public class ModelEvaluatorTests(EvaluationFixture fixture)
{
    [SharedAssetFact("models/stories260K")]
    public void LogLikelihoodLabelScoringPicksTheTrainedLabels()
    {
        var data = EvaluationData.Read(fixture.ClassificationTestData);
        using var loaded = LoadedModel.Load(TestAssets.Stories260K, Path.Combine(fixture.ClassificationRun, "final"));
        var result = new ModelEvaluator(loaded, new EvaluationOptions { Metrics = ["accuracy", "perplexity"] }).Evaluate(data.Examples);
        Assert.True(result.Metrics["accuracy"] >= 0.9, $"accuracy {result.Metrics["accuracy"]}");
        Assert.Equal(["bad", "good"], result.Classification!.Labels);
        Assert.Equal(data.Examples.Count, result.Classification.ConfusionMatrix.Sum(r => r.Sum()));
        Assert.All(result.Records, r => Assert.Equal(r.Output, r.LabelLogLikelihoods!.MaxBy(p => p.Value).Key));

        loaded.Adapter!.Enabled = false;   // the base model has not learnt the task: it must do worse
        var before = new ModelEvaluator(loaded, new EvaluationOptions { Metrics = ["accuracy", "perplexity"] }).Evaluate(data.Examples);
        Assert.True(before.Metrics["perplexity"] > result.Metrics["perplexity"] * 2, $"{before.Metrics["perplexity"]} vs {result.Metrics["perplexity"]}");
    }

    [SharedAssetFact("models/stories260K")]
    public void EvalCommandWritesAReportWithSaneNumbersIntoTheRunFolder()
    {
        var adapter = Path.Combine(fixture.CompletionRun, "final");
        var exit = EvalCommand.Create().Parse(["--model", TestAssets.Stories260K, "--adapter", adapter, "--data", fixture.CompletionTestData, "--max-tokens", "16"]).Invoke();
        Assert.Equal(0, exit);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture.CompletionRun, "eval.json")))!;
        var metrics = report["metrics"]!;
        Assert.InRange(metrics["perplexity"]!.GetValue<double>(), 1.0, 3.0);
        // A 24-step LoRA writes the right sentence but has not learnt to stop, so exact match stays low.
        Assert.InRange(metrics["exact_match"]!.GetValue<double>(), 0, 1);
        Assert.InRange(metrics["bleu"]!.GetValue<double>(), 40, 100);
        Assert.InRange(metrics["chrf"]!.GetValue<double>(), 70, 100);
        Assert.InRange(metrics["rougeL"]!.GetValue<double>(), 0.7, 1.0);
        Assert.StartsWith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp", report["signatures"]!["bleu"]!.GetValue<string>());
        var records = report["records"]!.AsArray();
        Assert.Equal(4, records.Count);
        Assert.Equal(" ball. Tom loved the ball.", records[0]!["reference"]!.GetValue<string>());
        Assert.NotNull(records[0]!["scores"]!["exact_match"]);
        Assert.True(File.Exists(Path.Combine(fixture.CompletionRun, "eval.html")));
        Assert.Contains("| exact_match |", File.ReadAllText(Path.Combine(fixture.CompletionRun, "eval.md")));
    }

    [SharedAssetFact("models/stories260K")]
    public void SideBySideReportShowsDeltasFromTheBaseAndBrowsableDiffs()
    {
        using var output = new TempDir();
        var data = EvaluationData.Read(fixture.CompletionTestData);
        var comparison = EvaluationJob.Compare(TestAssets.Stories260K,
            [EvaluationCandidate.Parse("base"), EvaluationCandidate.Parse(Path.Combine(fixture.CompletionRun, "final"))], data,
            new EvaluationOptions { Metrics = ["perplexity", "exact_match", "bleu"], MaxNewTokens = 16 });
        Assert.Equal(["base", "completion/final"], comparison.Names);
        var exact = comparison.Metrics.Single(m => m.Metric == "bleu");
        Assert.Equal(exact.Values[1] - exact.Values[0], exact.DeltasFromFirst[1], 9);
        Assert.True(exact.DeltasFromFirst[1] >= 20, $"BLEU {exact.Values[0]} → {exact.Values[1]}");
        Assert.True(comparison.Metrics.Single(m => m.Metric == "perplexity").DeltasFromFirst[1] < 0);
        Assert.Equal(4, comparison.ChangedExamples);

        ComparisonReportWriter.Write(comparison, output.Path);
        var html = File.ReadAllText(output.File("eval_compare.html"));
        Assert.Contains("<select id=\"filter\"", html);
        Assert.Contains("class=\"changed\"", html);
        Assert.Contains(System.Net.WebUtility.HtmlEncode(comparison.Examples[0].Outputs[1]!), html);
        var json = JsonNode.Parse(File.ReadAllText(output.File("eval_compare.json")))!;
        Assert.Equal(exact.DeltasFromFirst[1], json["metrics"]!.AsArray().Single(m => m!["metric"]!.GetValue<string>() == "bleu")!["deltas_from_first"]![1]!.GetValue<double>(), 9);
        Assert.True(File.Exists(output.File("eval_compare_base.json")));
    }

    [SharedAssetFact("models/stories260K")]
    public void TheTrainerHookLogsEvaluationMetricsIntoMetricsJsonl()
    {
        var records = MetricsLog.ReadAll(Path.Combine(fixture.CompletionRun, "metrics.jsonl"));
        var evaluated = records.Where(r => r["val_loss"] is not null).ToArray();
        Assert.Equal([12, 24], evaluated.Select(r => r["step"]!.GetValue<int>()));
        Assert.All(evaluated, r =>
        {
            Assert.InRange(r["val_exact_match"]!.GetValue<double>(), 0, 1);
            Assert.InRange(r["val_rouge1"]!.GetValue<double>(), 0, 1);
        });
        Assert.True(evaluated[^1]["val_rougeL"]!.GetValue<double>() > 0.2, evaluated[^1].ToJsonString());
        Assert.Null(records.First(r => r["val_loss"] is null)["val_exact_match"]);
    }

    [Fact]
    public void UnknownOrInapplicableMetricsAreClearErrors()
    {
        Assert.Contains("unknown metric 'blue'", Assert.Throws<ArgumentException>(() => EvaluationMetrics.Parse("perplexity,blue")).Message);
        Assert.Equal(["perplexity", "exact_match"], EvaluationMetrics.Parse("perplexity, Exact-Match"));
        Assert.Equal(new EvaluationCandidate("a", "x/y"), EvaluationCandidate.Parse("a=x/y"));
        Assert.Equal("run1/final", EvaluationCandidate.Parse("/tmp/runs/run1/final").Name);
        Assert.Equal(Path.GetFullPath("/tmp/runs/run1"), EvaluationJob.DefaultOutputDirectory("/tmp/runs/run1/final"));
    }
}

[CollectionDefinition(Name)]
public sealed class EvaluationCollection : ICollectionFixture<EvaluationFixture>
{
    public const string Name = "evaluation fine-tunes";
}
