using System.Text.Json.Nodes;
using SharpTune.Cli.Commands;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// Multiple-choice scoring on the real stories260K model, base and with a LoRA adapter, through the library and
/// <c>sharptune eval</c>. Each choice's log-likelihood must equal the sum of the continuation tokens' log-probabilities
/// taken from one unbatched forward pass here, with the continuation's ids split as lm-evaluation-harness's
/// _encode_pair does (trailing context whitespace moved to the continuation; ids of encode(whole) after
/// len(encode(context))); acc and acc_norm follow lm-eval's process_results rule on those numbers.
/// </summary>
[Collection(EvaluationCollection.Name)]
public class MultipleChoiceEvaluationTests(EvaluationFixture fixture)
{
    private const string Rows = """
        {"context": "Once upon a time, there was a little girl named Lily. She loved to play with her", "choices": ["toys", "dog", "mom and dad"], "gold": 0}
        {"query": "Tom went to the park. He saw a big", "choices": ["tree", "ball", "red car"], "gold": [1, 2]}
        {"context": "The sun was hot. Lily wanted to drink some ", "choices": ["water", "juice"], "gold": "water"}
        """;

    [SharedAssetFact("models/stories260K")]
    public void EachChoiceScoresTheSumOfItsTokensLogProbabilities()
    {
        using var dir = new TempDir();
        var data = MultipleChoiceData.Read(dir.File("mc.jsonl", Rows + "\n"));
        using var loaded = LoadedModel.Load(TestAssets.Stories260K);
        // Batches of 2 mix requests of different lengths, so right padding is exercised.
        var result = new ModelEvaluator(loaded, new EvaluationOptions { Metrics = ["acc", "acc_norm", "exact_match"], BatchSize = 2 })
            .EvaluateMultipleChoice(data.Items);

        AssertMatchesIndependentForward(loaded.Model, loaded.RequireTokenizer(), data.Items, result.Records.Select(r => r.Choices!).ToArray());
        Assert.Equal("multiple_choice", result.Format);
        foreach (var metric in new[] { "acc", "acc_norm", "exact_match" })
        {
            var values = result.Records.Select(r => r.Scores[metric]).ToArray();
            Assert.Equal(values.Average(), result.Metrics[metric], 12);
            var mean = values.Average();   // lm-eval's mean_stderr: sample standard deviation over √n
            Assert.Equal(Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Length - 1)) / Math.Sqrt(values.Length), result.Metrics[metric + "_stderr"], 12);
        }
        foreach (var (record, item) in result.Records.Zip(data.Items))
        {
            var lls = record.Choices!.Select(c => c.LogLikelihood).ToArray();
            var best = Array.IndexOf(lls, lls.Max());
            var perChar = lls.Select((ll, k) => ll / item.Choices[k].Length).ToArray();   // ASCII choices: characters = UTF-16 units
            Assert.Equal(item.Gold.Contains(best) ? 1.0 : 0.0, record.Scores["acc"]);
            Assert.Equal(item.Gold.Contains(Array.IndexOf(perChar, perChar.Max())) ? 1.0 : 0.0, record.Scores["acc_norm"]);
            Assert.Equal(item.Gold.Any(g => record.Choices![g].IsGreedy) ? 1.0 : 0.0, record.Scores["exact_match"]);
            Assert.Equal(item.Choices[best], record.Output);
            Assert.Equal(item.Gold, record.Gold);
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void EvalComparesBaseAndAdapterOnMultipleChoiceData()
    {
        using var dir = new TempDir();
        var path = dir.File("mc.jsonl", Rows + "\n");
        var adapter = Path.Combine(fixture.CompletionRun, "final");
        var output = Path.Combine(dir.Path, "report");
        var exit = EvalCommand.Create().Parse(["--model", TestAssets.Stories260K, "--adapters", $"base=base,lora={adapter}", "--data", path,
            "--metrics", "acc,acc_norm", "--output", output]).Invoke();
        Assert.Equal(0, exit);
        var items = MultipleChoiceData.Read(path).Items;
        var byName = new Dictionary<string, ChoiceScore[][]>();
        foreach (var name in new[] { "base", "lora" })
        {
            var report = JsonNode.Parse(File.ReadAllText(Path.Combine(output, $"eval_compare_{name}.json")))!;
            Assert.Equal(["acc", "acc_norm", "acc_norm_stderr", "acc_stderr"], report["metrics"]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal));
            byName[name] = report["records"]!.AsArray().Select(r => r!["choices"]!.AsArray().Select(c => new ChoiceScore(c!["choice"]!.GetValue<string>(),
                c["log_likelihood"]!.GetValue<double>(), c["tokens"]!.GetValue<int>(), c["is_greedy"]!.GetValue<bool>())).ToArray()).ToArray();
        }
        using (var baseModel = LoadedModel.Load(TestAssets.Stories260K))
            AssertMatchesIndependentForward(baseModel.Model, baseModel.RequireTokenizer(), items, byName["base"]);
        using (var tuned = LoadedModel.Load(TestAssets.Stories260K, adapter))
            AssertMatchesIndependentForward(tuned.Model, tuned.RequireTokenizer(), items, byName["lora"]);
        Assert.NotEqual(byName["base"][0][0].LogLikelihood, byName["lora"][0][0].LogLikelihood, 3);   // the adapter was applied
        Assert.True(File.Exists(Path.Combine(output, "eval_compare.json")));
    }

    [SharedAssetFact("models/stories260K")]
    public void EvalDetectsMultipleChoiceRowsAndReportsAccWithStandardErrors()
    {
        using var dir = new TempDir();
        var path = dir.File("mc.jsonl", Rows + "\n");
        var output = Path.Combine(dir.Path, "report");
        Assert.Equal(0, EvalCommand.Create().Parse(["--model", TestAssets.Stories260K, "--data", path, "--output", output]).Invoke());
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "eval.json")))!;
        Assert.Equal("multiple_choice", report["format"]!.GetValue<string>());
        foreach (var key in new[] { "acc", "acc_stderr", "acc_norm", "acc_norm_stderr" }) Assert.NotNull(report["metrics"]![key]);
        Assert.Contains("no chat template", report["signatures"]!["multiple_choice"]!.GetValue<string>());
        Assert.Equal(3, report["records"]!.AsArray()[0]!["choices"]!.AsArray().Count);
        Assert.Contains("| acc_norm_stderr |", File.ReadAllText(Path.Combine(output, "eval.md")));
        // A metric that needs references is refused for multiple-choice data.
        Assert.Equal(1, EvalCommand.Create().Parse(["--model", TestAssets.Stories260K, "--data", path, "--metrics", "bleu", "--output", output]).Invoke());
    }

    [SharedAssetFact("models/stories260K")]
    public void AContextLongerThanTheModelWindowIsCutFromTheLeft()
    {
        using var loaded = LoadedModel.Load(TestAssets.Stories260K);
        var (model, tokenizer) = (loaded.Model, loaded.RequireTokenizer());
        var context = string.Concat(Enumerable.Repeat("Tom went to the park and saw a big dog. ", 60)) + "Then he saw a";
        var window = model.Config.ContextLength;
        var whole = tokenizer.Encode(context + " ball", addSpecialTokens: true).ToArray();
        var continuationLength = whole.Length - tokenizer.Encode(context, addSpecialTokens: true).Count;
        Assert.True(whole.Length > window, $"{whole.Length} tokens should overflow the {window}-token window");
        // Expected: the last `window` ids fed alone, the continuation's tokens summed (the documented cut).
        var kept = whole[^window..];
        double expected = 0;
        using (NewDisposeScope())
        using (no_grad())
        {
            model.eval();
            var logProbs = F.log_softmax(model.Forward(tensor(kept.Select(t => (long)t).ToArray()).unsqueeze(0))[0].to(ScalarType.Float64), -1);
            for (var t = kept.Length - continuationLength; t < kept.Length; t++) expected += logProbs[t - 1, kept[t]].item<double>();
        }
        var score = Assert.Single(new MultipleChoiceScorer(model, tokenizer).Score([(context, " ball")]));
        Assert.Equal(continuationLength, score.Tokens);
        Assert.Equal(expected, score.LogLikelihood, 1e-4);
    }

    /// <summary>A choice too long for the model's window is an error naming the question's file:line and the choice.</summary>
    [SharedAssetFact("models/stories260K")]
    public void AChoiceLongerThanTheWindowIsNamedByFileLineAndChoice()
    {
        using var dir = new TempDir();
        var longChoice = string.Concat(Enumerable.Repeat("and the big dog ran ", 200));
        var path = dir.File("mc.jsonl", Rows + "\n" + new JsonObject { ["context"] = "Lily saw", ["choices"] = new JsonArray("a cat", longChoice), ["gold"] = 0 }.ToJsonString() + "\n");
        var data = MultipleChoiceData.Read(path);
        using var loaded = LoadedModel.Load(TestAssets.Stories260K);
        var error = Assert.Throws<ArgumentException>(() => new MultipleChoiceScorer(loaded.Model, loaded.RequireTokenizer()).ScoreChoices(data.Items));
        Assert.StartsWith($"{path}:4: choice 1: a continuation of ", error.Message);
    }

    /// <summary>
    /// Scoring reports after every batch, counted in choices (3 + 3 + 2 here, two a batch), and stops between batches
    /// when cancelled, so a long benchmark shows it is moving and can be interrupted.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void ScoringReportsEachBatchAndStopsWhenCancelled()
    {
        using var dir = new TempDir();
        var data = MultipleChoiceData.Read(dir.File("mc.jsonl", Rows));
        using var loaded = LoadedModel.Load(TestAssets.Stories260K);
        var evaluator = new ModelEvaluator(loaded, new EvaluationOptions { BatchSize = 2 });
        var reports = new List<EvaluationProgress>();
        evaluator.EvaluateMultipleChoice(data.Items, progress: new ProgressRecorder(reports.Add));
        Assert.Equal([0, 2, 4, 6, 8], reports.Select(r => r.Done));
        Assert.All(reports, r => Assert.Equal(8, r.Total));

        using var cancellation = new CancellationTokenSource();
        var seen = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() => evaluator.EvaluateMultipleChoice(data.Items, cancellationToken: cancellation.Token,
            progress: new ProgressRecorder(r => { seen.Add(r.Done); if (r.Done == 4) cancellation.Cancel(); })));
        Assert.Equal([0, 2, 4], seen);
    }

    /// <summary>
    /// <c>sharptune eval</c> with its log redirected prints one progress line per tenth of the choices (8 here, one a
    /// batch, so every one), each with its rate and ETA, and then the metrics.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void TheCliLogsScoringProgressWithRateAndEta()
    {
        using var dir = new TempDir();
        var path = dir.File("mc.jsonl", Rows);
        var (code, stdout, stderr) = Serving.SharpTuneCli.Run("eval", "--model", TestAssets.Stories260K, "--data", path, "--batch-size", "1",
            "--output", Path.Combine(dir.Path, "report"));
        Assert.True(code == 0, stderr);
        var lines = stderr.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("scoring choices ", StringComparison.Ordinal)).ToArray();
        Assert.Equal("scoring choices 0/8", lines[0]);
        Assert.Equal(Enumerable.Range(0, 9).Select(i => $"scoring choices {i}/8"), lines.Select(l => l.Split("  ")[0]));
        Assert.All(lines.Skip(1), l => Assert.Matches(@"  [0-9.]+/s  ETA [0-9]+:[0-9]{2}$", l));
        Assert.Matches(@"ETA 0:00$", lines[^1]);
        Assert.Matches(@"(?m)^acc\s+[0-9.]+$", stdout);
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts them to the thread pool, out of order).</summary>
    private sealed class ProgressRecorder(Action<EvaluationProgress> report) : IProgress<EvaluationProgress>
    {
        public void Report(EvaluationProgress value) => report(value);
    }

    /// <summary>Every choice's score against one plain forward pass of context + " " + choice.</summary>
    private static void AssertMatchesIndependentForward(CausalLanguageModel model, HfTokenizer tokenizer, IReadOnlyList<MultipleChoiceItem> items, IReadOnlyList<IReadOnlyList<ChoiceScore>> scored)
    {
        model.eval();
        for (var i = 0; i < items.Count; i++)
            for (var k = 0; k < items[i].Choices.Count; k++)
            {
                var (context, continuation) = (items[i].Context, " " + items[i].Choices[k]);
                var trimmed = context.TrimEnd();
                (context, continuation) = (trimmed, context[trimmed.Length..] + continuation);
                var whole = tokenizer.Encode(context + continuation, addSpecialTokens: true).ToArray();
                var contextLength = tokenizer.Encode(context, addSpecialTokens: true).Count;
                double sum = 0;
                var greedy = true;
                using (NewDisposeScope())
                using (no_grad())
                {
                    var logProbs = F.log_softmax(model.Forward(tensor(whole.Select(t => (long)t).ToArray()).unsqueeze(0))[0].to(ScalarType.Float64), -1);   // (T, V)
                    for (var t = contextLength; t < whole.Length; t++)
                    {
                        sum += logProbs[t - 1, whole[t]].item<double>();
                        greedy &= logProbs[t - 1].argmax().item<long>() == whole[t];
                    }
                }
                var got = scored[i][k];
                Assert.Equal(items[i].Choices[k], got.Choice);
                Assert.Equal(whole.Length - contextLength, got.Tokens);
                Assert.Equal(sum, got.LogLikelihood, 1e-4);   // float32 model: batched with padding vs alone
                Assert.Equal(greedy, got.IsGreedy);
            }
    }
}
