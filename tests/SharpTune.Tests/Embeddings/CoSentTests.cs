using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Embeddings;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.Tracking;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// sentence-transformers' CoSENTLoss (UKPLab/sentence-transformers@45a69d044cab558a526a1c5d90ae4b3c0588d1cc,
/// losses/CoSENTLoss.py) against its formula worked in doubles, its accumulation semantics, and <c>loss_type: cosent</c> runs.
/// </summary>
public sealed class CoSentTests
{
    public CoSentTests() => TorchRuntime.EnsureInitialised();

    [Fact]
    public void The_loss_equals_the_formula_worked_by_hand()
    {
        double[][] u = [[1, 0, 0.5], [0.2, 1, -0.3], [-0.4, 0.1, 1], [0.3, 0.3, 0.3]];
        double[][] v = [[0.9, 0.1, 0.4], [0, 1.2, -0.1], [0.3, -0.2, 0.8], [-1, 0.2, 0.1]];
        double[] labels = [0.1, 0.9, 0.5, 0.5];   // two equal scores: that pair is compared neither way
        using var loss = CoSentLoss.Compute(EmbeddingLossesByHand.Rows(u), EmbeddingLossesByHand.Rows(v), tensor(labels.Select(x => (float)x).ToArray()), 1);
        Assert.Equal(EmbeddingLossesByHand.CoSent(u, v, labels, 1), loss.item<float>(), 5);
        using var scaled = CoSentLoss.Compute(EmbeddingLossesByHand.Rows(u), EmbeddingLossesByHand.Rows(v), tensor(labels.Select(x => (float)x).ToArray()));
        Assert.Equal(EmbeddingLossesByHand.CoSent(u, v, labels, 20), scaled.item<float>(), 4);
        // Equal labels everywhere leave only the e^0 term: log 1 = 0.
        using var flat = CoSentLoss.Compute(EmbeddingLossesByHand.Rows(u), EmbeddingLossesByHand.Rows(v), ones(4));
        Assert.Equal(0, flat.item<float>(), 6);
    }

    [Fact]
    public void Accumulated_micro_batches_average_their_batch_losses()
    {
        using var model = TestModels.Create("llama");
        foreach (var p in model.parameters()) p.requires_grad = true;
        var objective = new CoSentObjective(SentenceTransformerConfig.Default, 20);
        List<ScoredPairItem> items = [new([1, 5, 17], [1, 60, 2, 9], 0.9f), new([1, 33], [1, 12, 4, 50], 0.1f), new([1, 21, 8], [1, 40], 0.5f), new([1, 7, 7, 30], [1, 90], 0.3f)];
        double Loss(params List<ScoredPairItem>[] split)
        {
            model.zero_grad();
            var totals = Trainer.AccumulateGradients(model, objective, split.Select(b => (TrainingBatch)ScoredPairCollator.Collate(b, model.Device)).ToArray());
            Assert.Equal(split.Length, totals.Units);   // one unit per micro-batch
            return totals.LossSum / totals.Units;
        }
        var first = Loss(items[..2]);
        var second = Loss(items[2..]);
        Assert.Equal((first + second) / 2, Loss(items[..2], items[2..]), 5);
        Assert.True(Math.Abs(Loss(items) - (first + second) / 2) > 1e-3);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_cosent_run_lowers_its_loss_and_names_a_bad_row()
    {
        using var temp = new TempDir();
        (string, string, double)[] rows =
        [
            ("Tom has a red ball.", "Tom has a red ball too.", 1.0), ("Lily saw a big dog.", "It began to rain.", 0.0),
            ("The cat sat on the mat.", "A cat sat on a mat.", 0.9), ("Ben ate a green apple.", "Milk is cold.", 0.1),
            ("Sue found a blue bird.", "Sue found a bird.", 0.8), ("The sun was hot today.", "He fell asleep.", 0.2),
        ];
        var data = temp.File("scored.jsonl", string.Join("\n", rows.Select(r =>
            new JsonObject { ["sentence1"] = r.Item1, ["sentence2"] = r.Item2, ["score"] = r.Item3 }.ToJsonString())) + "\n");
        var options = EmbeddingTrainingJobTests.Options(data, Path.Combine(temp.Path, "run")) with { LossType = "cosent", LearningRate = 2e-3, MaxSteps = 20, MicroBatchSize = 6 };
        var result = FineTuneJob.Run(options);
        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < 0.5 * losses[0], $"loss went {string.Join(" → ", losses.Select(l => l.ToString("F3")))}");
        Assert.True(File.Exists(Path.Combine(result.FinalDirectory, "modules.json")));

        // Validation logs EmbeddingSimilarityEvaluator's correlations of the held-out pairs, as computed here from the
        // saved adapter, at full width and (MatryoshkaLoss around CoSENT) at the embedder's truncation to 16 dimensions.
        var validated = FineTuneJob.Run(options with { Output = Path.Combine(temp.Path, "validated"), Validation = data, MaxSteps = 2, EvalEvery = 1, MatryoshkaDims = [64, 16] });
        var last = MetricsLog.ReadAll(Path.Combine(validated.Training.RunDirectory, "metrics.jsonl"))[^1];
        using (var loaded = LoadedModel.Load(TestAssets.Stories260K, validated.FinalDirectory))
        {
            var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, validated.FinalDirectory);
            var expected = SimilarityCorrelation.Evaluate(embedder, rows.Select(r => r.Item1).ToList(), rows.Select(r => r.Item2).ToList(), rows.Select(r => r.Item3).ToList());
            Assert.Equal(expected["spearman_cosine"], last["val_spearman_cosine"]!.GetValue<double>(), 5);
            Assert.Equal(expected["pearson_cosine"], last["val_pearson_cosine"]!.GetValue<double>(), 5);
            var cut = SimilarityCorrelation.Evaluate(embedder, rows.Select(r => r.Item1).ToList(), rows.Select(r => r.Item2).ToList(), rows.Select(r => r.Item3).ToList(),
                new EmbeddingRequestOptions { Dimensions = 16 });
            Assert.Equal(cut["spearman_cosine"], last["val_dim_16_spearman_cosine"]!.GetValue<double>(), 5);
            Assert.Equal(cut["pearson_cosine"], last["val_dim_16_pearson_cosine"]!.GetValue<double>(), 5);
            Assert.Null(last["val_dim_64_spearman_cosine"]);
        }

        var bad = temp.File("bad.jsonl", "{\"sentence1\":\"a\",\"sentence2\":\"b\",\"score\":0.5}\n{\"sentence1\":\"a\",\"sentence2\":\"b\",\"score\":\"high\"}\n");
        var error = Assert.Throws<DataFormatException>(() => FineTuneJob.Run(options with { Data = bad, Output = Path.Combine(temp.Path, "bad") }));
        Assert.Contains($"{bad}:2: field 'score'", error.Message);
        // MNRL rows given to CoSENT (and the reverse) are named by their missing column.
        var pairs = temp.File("pairs.jsonl", "{\"sentence1\":\"a\",\"sentence2\":\"b\",\"score\":1}\n");
        var hint = Assert.Throws<DataFormatException>(() => FineTuneJob.Run(options with { LossType = null, Data = pairs, Output = Path.Combine(temp.Path, "mnrl") }));
        Assert.Contains("loss_type cosent", hint.Message);
    }
}
