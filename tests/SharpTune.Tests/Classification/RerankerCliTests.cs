using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Classification;

/// <summary><c>sharptune rerank</c> and <c>rerank evaluate</c> print what the library's Reranker and RerankingEvaluator give.</summary>
public sealed class RerankerCliTests
{
    private static readonly string[] Documents = ["The cat went to the park.", "Once upon a time there was a dog.", "The sun was hot."];

    [SharedAssetFact("models/stories260K")]
    public void Rerank_prints_the_ranking_and_evaluate_writes_the_evaluators_metrics()
    {
        using var temp = new TempDir();
        var model = RerankerScoringTests.SaveReranker(temp, null);
        var (code, stdout, stderr) = SharpTuneCli.Run(["rerank", "--model", model, "--query", "Where is the cat?", .. Documents.SelectMany(d => new[] { "--document", d }), "--top-k", "2"]);
        Assert.True(code == 0, stderr);
        using var reranker = Reranker.Load(model);
        var expected = reranker.Rank("Where is the cat?", Documents, topK: 2);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(expected.Select(r => r.Index), lines.Select(l => l["index"]!.GetValue<int>()));
        Assert.Equal(expected.Select(r => r.Score), lines.Select(l => l["score"]!.GetValue<float>()));
        Assert.Equal(expected.Select(r => r.Document), lines.Select(l => l["document"]!.GetValue<string>()));

        using var data = new TempDir();
        var rows = data.File("rows.jsonl", """
            {"query":"Where is the cat?","positive":"The cat went to the park.","negative":["Once upon a time there was a dog.","The sun was hot."]}
            {"query":"Who was there?","document":"Once upon a time there was a dog.","label":1}
            {"query":"Who was there?","document":"The sun was hot.","label":0}
            """);
        var report = Path.Combine(data.Path, "report.json");
        var (evalCode, _, evalError) = SharpTuneCli.Run("rerank", "evaluate", "--model", model, "--data", rows, "--output", report, "--at-k", "2");
        Assert.True(evalCode == 0, evalError);
        var json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(2, json["queries"]!.GetValue<int>());
        Assert.Equal("ndcg@2", json["primary_metric"]!.GetValue<string>());
        var samples = RerankingEvaluator.FromExamples(FineTuneJobRows(rows));
        foreach (var (name, value) in RerankingEvaluator.Evaluate(reranker, samples, atK: 2))
            Assert.Equal(value, json["metrics"]![name]!.GetValue<double>(), 9);
        Assert.Contains("mrr@2", evalError);

        // --dtype loads the reranker in that dtype, as rerank does; an unknown one is refused.
        var (bf16Code, _, bf16Error) = SharpTuneCli.Run("rerank", "evaluate", "--model", model, "--data", rows, "--output", report, "--at-k", "2", "--dtype", "bfloat16");
        Assert.True(bf16Code == 0, bf16Error);
        using (var bf16 = Reranker.Load(model, dtype: TorchSharp.torch.ScalarType.BFloat16))
            foreach (var (name, value) in RerankingEvaluator.Evaluate(bf16, samples, atK: 2))
                Assert.Equal(value, JsonNode.Parse(File.ReadAllText(report))!["metrics"]![name]!.GetValue<double>(), 9);
        var (badCode, _, badError) = SharpTuneCli.Run("rerank", "evaluate", "--model", model, "--data", rows, "--output", report, "--dtype", "float7");
        Assert.Equal(1, badCode);
        Assert.Contains("float7", badError);
    }

    [SharedAssetFact("models/stories260K")]
    public void Train_task_reranking_takes_pos_weight_and_its_adapter_ranks_from_the_cli()
    {
        using var temp = new TempDir();
        var data = temp.File("rows.jsonl", """
            {"query":"Where is the cat?","positive":"The cat is in the park.","negative":["The dog is in the park."]}
            {"query":"Where is the dog?","document":"The dog is in the box.","label":1}
            {"query":"Where is the dog?","document":"The cat is in the box.","label":0}
            """);
        var validation = temp.File("validation.jsonl", """
            {"query":"Where is the cat?","positive":"The cat is at school.","negative":["The dog is at school."]}
            """);
        var run = Path.Combine(temp.Path, "run");
        var (code, stdout, stderr) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", data, "--validation", validation,
            "--output", run, "--task", "reranking", "--pos-weight", "2", "--max-steps", "2", "--batch-size", "2");
        Assert.True(code == 0, stderr);
        var final = stdout.Trim().Split('\n')[^1].Trim();
        Assert.Contains("pos_weight: 2", File.ReadAllText(Path.Combine(run, "config.yaml")));
        Assert.Equal(CrossEncoderActivation.Sigmoid, SequenceClassification.ReadLabels(final).CrossEncoderActivation);

        var (rankCode, rankOut, rankError) = SharpTuneCli.Run("rerank", "--model", TestAssets.Stories260K, "--adapter", final,
            "--query", "Where is the cat?", "--document", "The dog is here.", "--document", "The cat is here.");
        Assert.True(rankCode == 0, rankError);
        using var reranker = Reranker.Load(TestAssets.Stories260K, final);
        var expected = reranker.Rank("Where is the cat?", ["The dog is here.", "The cat is here."]);
        Assert.Equal(expected.Select(r => r.Index), rankOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!["index"]!.GetValue<int>()));
    }

    [SharedAssetFact("models/stories260K")]
    public void Eval_on_a_reranker_points_to_rerank_evaluate()
    {
        using var temp = new TempDir();
        var model = RerankerScoringTests.SaveReranker(temp, CrossEncoderActivation.Sigmoid);   // as reranking training saves it
        using var data = new TempDir();
        var rows = data.File("rows.jsonl", """{"query":"Where is the cat?","document":"The cat sat.","label":1}""" + "\n");
        var (code, _, stderr) = SharpTuneCli.Run("eval", "--model", model, "--data", rows, "--output", Path.Combine(data.Path, "report"));
        Assert.NotEqual(0, code);
        Assert.Contains("sharptune rerank evaluate", stderr);
    }

    private static IEnumerable<RerankingExample> FineTuneJobRows(string path) =>
        FineTuneJob.ReadExamples(path, map: RerankingExample.FromRow).Cast<RerankingExample>();
}
