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
        var result = new ModelEvaluator(loaded, new EvaluationOptions { Metrics = ["accuracy", "perplexity", "exact_match"] }).Evaluate(data.Examples);
        Assert.True(result.Metrics["accuracy"] >= 0.9, $"accuracy {result.Metrics["accuracy"]}");
        // The predicted label is the whole answer: exact match is the share of records whose output is the gold label.
        var gold = data.Examples.Cast<SharpTune.Data.ClassificationExample>().Select(e => e.ClassLabel).ToArray();
        Assert.All(result.Records, r => Assert.Equal(r.Output == gold[r.Index] ? 1.0 : 0.0, r.Scores["exact_match"]));
        Assert.Equal(result.Records.Count(r => r.Output == gold[r.Index]) / (double)gold.Length, result.Metrics["exact_match"], 12);
        Assert.Equal(result.Metrics["accuracy"], result.Metrics["exact_match"], 12);
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
        // A 24-step LoRA writes the right sentence but has not learnt to stop (exact match is checked on a model that
        // stops, in LogLikelihoodLabelScoringPicksTheTrainedLabels); here each record's 0/1 must follow SQuAD's rule.
        var scored = report["records"]!.AsArray().Select(r => (Output: r!["output"]!.GetValue<string>(), Reference: r["reference"]!.GetValue<string>(),
            Score: r["scores"]!["exact_match"]!.GetValue<double>())).ToArray();
        Assert.All(scored, r => Assert.Equal(SquadNormalize(r.Output) == SquadNormalize(r.Reference) ? 1.0 : 0.0, r.Score));
        Assert.Equal(scored.Average(r => r.Score), metrics["exact_match"]!.GetValue<double>(), 12);
        Assert.InRange(metrics["bleu"]!.GetValue<double>(), 40, 100);
        Assert.InRange(metrics["chrf"]!.GetValue<double>(), 70, 100);
        Assert.InRange(metrics["rougeL"]!.GetValue<double>(), 0.7, 1.0);
        Assert.StartsWith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp", report["signatures"]!["bleu"]!.GetValue<string>());
        var records = report["records"]!.AsArray();
        Assert.Equal(4, records.Count);
        Assert.Equal(" ball. Tom loved the ball.", records[0]!["reference"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(fixture.CompletionRun, "eval.html")));
        Assert.Contains("| exact_match |", File.ReadAllText(Path.Combine(fixture.CompletionRun, "eval.md")));
    }

    /// <summary>SQuAD v1.1's normalize_answer, written out independently: lowercase, no punctuation, no articles, single spaces.</summary>
    private static string SquadNormalize(string text)
    {
        var noPunctuation = new string(text.ToLowerInvariant().Where(c => !"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".Contains(c)).ToArray());
        var words = noPunctuation.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Where(w => w is not ("a" or "an" or "the"));
        return string.Join(' ', words);
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
        Assert.All(evaluated, r => Assert.Contains(r["val_exact_match"]!.GetValue<double>(), new[] { 0, 0.25, 0.5, 0.75, 1 }));   // 4 sampled examples
        // By step 24 the LoRA writes the sentence, then runs on to the hook's token limit, which halves precision: the
        // F-measure sits near 0.3.
        Assert.True(evaluated[^1]["val_rouge1"]!.GetValue<double>() >= 0.25, evaluated[^1].ToJsonString());
        Assert.True(evaluated[^1]["val_rougeL"]!.GetValue<double>() >= 0.25, evaluated[^1].ToJsonString());
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

public class GenerationMetricsTests
{
    [Fact]
    public void PerExampleBleuIsSentenceBleuWithEffectiveOrder_CorpusBleuKeepsDefaults()
    {
        // sacreBLEU 2.6.0: sacrebleu.sentence_bleu('the cat sat', ['the cat sat']).score -> 100.00000000000004 and
        // sentence_bleu('a dog ran home fast', ['a dog ran home']).score -> 66.87403049764218 (its default
        // use_effective_order=True; BLEU().sentence_score gives 0.0 for the first, having no 4-grams);
        // BLEU().corpus_score(['the cat sat', 'a dog ran home fast'], [['the cat sat', 'a dog ran home']]) -> 72.31269021297696
        var scores = new[] { new Dictionary<string, double>(), new Dictionary<string, double>() };
        var corpus = new Dictionary<string, double>();
        ModelEvaluator.AddGenerationMetrics([EvaluationMetrics.Bleu], ["the cat sat", "a dog ran home"],
            [" the cat sat", "a dog ran home fast"], rougeStemmer: false, scores, corpus, new Dictionary<string, string>());
        Assert.Equal(100.00000000000004, scores[0][EvaluationMetrics.Bleu], 1e-9);
        Assert.Equal(66.87403049764218, scores[1][EvaluationMetrics.Bleu], 1e-9);
        Assert.Equal(72.31269021297696, corpus[EvaluationMetrics.Bleu], 1e-9);
    }
}
