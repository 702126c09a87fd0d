using System.Text.Json.Nodes;
using SharpTune.Embeddings;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// The real `sharptune` executable: `train --task embedding --pooling …` writes an adapter that `embed --adapter` reads
/// with its pooling, and `embed evaluate` reports the retrieval metrics the library computes for it.
/// </summary>
public sealed class EmbeddingCliTests
{
    [SharedAssetFact("models/stories260K")]
    public void Cached_mnrl_and_the_no_duplicates_sampler_are_taken_from_the_command_line()
    {
        using var temp = new TempDir();
        var rows = new[] { ("Tom ran home.", "It began to rain."), ("Lily saw a dog.", "The tree was tall."), ("Ben ate cake.", "Birds sang."), ("Sue was sad.", "Milk is cold.") };
        var data = temp.File("pairs.jsonl", string.Join("\n", rows.Select(r => new JsonObject { ["anchor"] = r.Item1, ["positive"] = r.Item2 }.ToJsonString())) + "\n");
        var run = Path.Combine(temp.Path, "run");
        var (code, _, stderr) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", data, "--output", run, "--task", "embedding",
            "--loss-type", "cached-mnrl", "--mini-batch-size", "3", "--batch-sampler", "no-duplicates", "--max-steps", "2", "--batch-size", "4");
        Assert.True(code == 0, stderr);
        Assert.Contains("CachedMultipleNegativesRankingLoss, 3 texts per forward pass (--mini-batch-size) of up to 8 per micro-batch", stderr);
        Assert.Contains("batch sampler no_duplicates, epoch 1: 1 micro-batches of up to 4 rows, none repeating a text", stderr);
        var config = SharpTune.Training.TrainingConfigFile.Load(Path.Combine(run, "config.yaml"));
        Assert.Equal(3, config.MiniBatchSize);
        Assert.Equal("no_duplicates", SharpTune.Training.NoDuplicatesBatchSampler.Parse(config.BatchSampler));

        var (badCode, _, badError) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", data, "--output", Path.Combine(temp.Path, "bad"),
            "--task", "embedding", "--mini-batch-size", "3", "--max-steps", "1");
        Assert.NotEqual(0, badCode);
        Assert.Contains("goes with loss_type cached-mnrl", badError);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_trained_adapter_embeds_with_its_pooling_and_is_evaluated_into_a_report()
    {
        using var temp = new TempDir();
        var rows = new[] { ("Tom ran home.", "It began to rain."), ("Lily saw a dog.", "The tree was tall."), ("Ben ate cake.", "Birds sang."), ("Sue was sad.", "Milk is cold.") };
        var data = temp.File("pairs.jsonl", string.Join("\n", rows.Select(r => new JsonObject { ["anchor"] = r.Item1, ["positive"] = r.Item2 }.ToJsonString())) + "\n");
        var run = Path.Combine(temp.Path, "run");

        var (code, stdout, stderr) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", data, "--output", run, "--task", "embedding",
            "--pooling", "mean", "--normalize-embeddings", "false", "--similarity-scale", "10", "--max-steps", "3", "--batch-size", "4", "--lr", "0.01",
            "--matryoshka-dims", "64,32", "--matryoshka-weights", "1,0.5");
        Assert.True(code == 0, stderr);
        Assert.Contains("Mean pooling (--pooling)", stderr);
        var final = stdout.Trim().Split('\n')[^1].Trim();
        Assert.Equal(Path.Combine(run, "final"), final);
        var config = File.ReadAllText(Path.Combine(run, "config.yaml"));
        Assert.Contains("similarity_scale: 10", config);
        Assert.Contains("MatryoshkaLoss at 64 (weight 1), 32 (weight 0.5)", stderr);
        Assert.Equal([64, 32], SharpTune.Training.TrainingConfigFile.Load(Path.Combine(run, "config.yaml")).MatryoshkaDims);

        // `embed --adapter` pools as the adapter folder says (mean, not normalised), as the library does.
        var (embedCode, embedOut, embedError) = SharpTuneCli.Run("embed", "--model", TestAssets.Stories260K, "--adapter", final, "--text", "Tom ran home.");
        Assert.True(embedCode == 0, embedError);
        var vector = JsonNode.Parse(embedOut.Trim())!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
        using (var loaded = LoadedModel.Load(TestAssets.Stories260K, final))
        {
            var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, final);
            Assert.Equal([PoolingMode.Mean], embedder.Config.PoolingModes);
            TextEmbedderTests.AssertClose(embedder.Embed(["Tom ran home."]).Vectors[0], vector, "embed --adapter");
            Assert.NotEqual(1.0, Math.Sqrt(vector.Sum(x => (double)x * x)), 3);   // not normalised
            // --truncate-dim keeps the first N components (not re-normalised: this model does not normalise).
            var (cutCode, cutOut, cutError) = SharpTuneCli.Run("embed", "--model", TestAssets.Stories260K, "--adapter", final, "--text", "Tom ran home.", "--truncate-dim", "16");
            Assert.True(cutCode == 0, cutError);
            var cut = JsonNode.Parse(cutOut.Trim())!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
            TextEmbedderTests.AssertClose(vector[..16], cut, "embed --truncate-dim 16");
        }

        var report = Path.Combine(temp.Path, "report.json");
        var (evalCode, _, evalError) = SharpTuneCli.Run("embed", "evaluate", "--model", TestAssets.Stories260K, "--adapter", final, "--data", data, "--output", report);
        Assert.True(evalCode == 0, evalError);
        Assert.Contains("cosine_ndcg@10", evalError);
        var json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(4, json["queries"]!.GetValue<int>());
        Assert.Equal(4, json["corpus"]!.GetValue<int>());
        Assert.Equal("cosine_ndcg@10", json["primary_metric"]!.GetValue<string>());
        var expected = RetrievalReport.Evaluate(TestAssets.Stories260K, final, data).Metrics;
        Assert.Equal(15, expected.Count);
        foreach (var (name, value) in expected) Assert.Equal(value, json["metrics"]![name]!.GetValue<double>(), 6);

        // `embed evaluate --truncate-dim` scores the first N dimensions, as the evaluator's truncate_dim does.
        var (cutEvalCode, _, cutEvalError) = SharpTuneCli.Run("embed", "evaluate", "--model", TestAssets.Stories260K, "--adapter", final, "--data", data,
            "--output", report, "--truncate-dim", "32");
        Assert.True(cutEvalCode == 0, cutEvalError);
        Assert.Contains("first 32 dimensions", cutEvalError);
        var cutJson = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(32, cutJson["truncate_dim"]!.GetValue<int>());
        var cutOptions = new EmbeddingRequestOptions { Dimensions = 32 };
        var cutExpected = RetrievalReport.Evaluate(TestAssets.Stories260K, final, data, 16, cutOptions, cutOptions).Metrics;
        foreach (var (name, value) in cutExpected) Assert.Equal(value, cutJson["metrics"]![name]!.GetValue<double>(), 6);

        // `merge` folds the adapter into the base and keeps its pooling: the merged folder embeds as base + adapter.
        var merged = Path.Combine(temp.Path, "merged");
        var (mergeCode, _, mergeError) = SharpTuneCli.Run("merge", "--model", TestAssets.Stories260K, "--adapter", final, "--out", merged);
        Assert.True(mergeCode == 0, mergeError);
        using (var loaded = LoadedModel.Load(merged))
        {
            var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory);
            Assert.Equal([PoolingMode.Mean], embedder.Config.PoolingModes);
            Assert.False(embedder.Config.Normalize);
            TextEmbedderTests.AssertClose(vector, embedder.Embed(["Tom ran home."]).Vectors[0], "merged", 1e-4f);
        }

        var bad = temp.File("bad.jsonl", "{\"anchor\":\"a\",\"positive\":\"b\"}\n{\"anchor\":\"a\"}\n");
        var (badCode, _, badError) = SharpTuneCli.Run("embed", "evaluate", "--model", TestAssets.Stories260K, "--data", bad, "--output", report);
        Assert.Equal(1, badCode);
        Assert.Contains("bad.jsonl:2: field 'positive'", badError);
    }
}
