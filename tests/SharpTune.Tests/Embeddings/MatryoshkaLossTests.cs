using System.Text.Json.Nodes;
using SharpTune.Embeddings;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using SharpTune.Tests.Training;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// sentence-transformers' MatryoshkaLoss (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f,
/// losses/MatryoshkaLoss.py): the weighted sum, over the dimensions, of the inner loss on the embeddings cut to each
/// dimension and re-normalised, worked here in doubles for MNRL and CoSENT; the objectives' wiring against the embedder's
/// own truncation; the settings' checks; and a Matryoshka run that resumes exactly and logs each dimension's metrics.
/// </summary>
public sealed class MatryoshkaLossTests
{
    public MatryoshkaLossTests() => TorchRuntime.EnsureInitialised();

    private static double[][] Cut(double[][] rows, int dim) => rows.Select(r => r[..dim]).ToArray();

    private static readonly double[][] Anchors = [[1, 0, 0.5, -0.2], [0.2, 1, -0.3, 0.7], [-0.4, 0.1, 1, 0.3]];
    private static readonly double[][] Candidates = [[0.9, 0.1, 0.4, 0.5], [0, 1.2, -0.1, -0.6], [0.3, -0.2, 0.8, 0.1], [1, 0.2, 0.6, -1], [-1, 0.5, 0, 0.2]];

    [Fact]
    public void Around_mnrl_the_loss_is_the_weighted_sum_of_mnrl_on_each_cut_worked_by_hand()
    {
        var settings = MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [2, 4, 3], MatryoshkaWeights = [0.5, 1, 2] })!;
        Assert.Equal([4, 3, 2], settings.Dims);   // largest first, each weight kept with its dimension
        Assert.Equal([1.0, 2, 0.5], settings.Weights);
        var embeddings = EmbeddingLossesByHand.Rows([.. Anchors, .. Candidates]);
        using var loss = MatryoshkaLoss.Compute(embeddings, settings.Dims, settings.Weights,
            e => MultipleNegativesRankingLoss.Compute(e.narrow(0, 0, 3), e.narrow(0, 3, 5)));
        var expected = 1 * EmbeddingLossesByHand.Mnrl(Anchors, Candidates, 20) + 2 * EmbeddingLossesByHand.Mnrl(Cut(Anchors, 3), Cut(Candidates, 3), 20) + 0.5 * EmbeddingLossesByHand.Mnrl(Cut(Anchors, 2), Cut(Candidates, 2), 20);
        Assert.Equal(expected, loss.item<float>(), 4);
        // Every cut counts: the full-width loss alone is another number.
        Assert.True(Math.Abs(expected - EmbeddingLossesByHand.Mnrl(Anchors, Candidates, 20)) > 0.1);

        // shrink: the first d components at unit length.
        using var shrunk = MatryoshkaLoss.Shrink(EmbeddingLossesByHand.Rows(Anchors), 2);
        var first = shrunk.data<float>().ToArray();
        var norm = Math.Sqrt(Anchors[0][0] * Anchors[0][0] + Anchors[0][1] * Anchors[0][1]);
        Assert.Equal(Anchors[0][0] / norm, first[0], 6);
        Assert.Equal(Anchors[0][1] / norm, first[1], 6);
        Assert.Throws<ArgumentOutOfRangeException>(() => MatryoshkaLoss.Shrink(EmbeddingLossesByHand.Rows(Anchors), 5));
    }

    [Fact]
    public void Around_cosent_the_loss_is_the_weighted_sum_of_cosent_on_each_cut_worked_by_hand()
    {
        double[][] u = [.. Anchors, [0.3, 0.3, 0.3, 0.3]];
        double[][] v = Candidates[..4];
        double[] labels = [0.1, 0.9, 0.5, 0.7];
        var embeddings = EmbeddingLossesByHand.Rows([.. u, .. v]);
        using var labelTensor = tensor(labels.Select(x => (float)x).ToArray());
        using var loss = MatryoshkaLoss.Compute(embeddings, [4, 2], [1, 0.25],
            e => CoSentLoss.Compute(e.narrow(0, 0, 4), e.narrow(0, 4, 4), labelTensor));
        var expected = EmbeddingLossesByHand.CoSent(u, v, labels, 20) + 0.25 * EmbeddingLossesByHand.CoSent(Cut(u, 2), Cut(v, 2), labels, 20);
        Assert.Equal(expected, loss.item<float>(), 3);
    }

    private static readonly SentenceTransformerConfig MeanPooling = new() { PoolingModes = [PoolingMode.Mean], Normalize = true };

    [Fact]
    public void The_objectives_cut_the_pooled_embeddings_as_the_embedder_truncates_them()
    {
        using var model = TestModels.Create("llama");   // 64-dimensional embeddings
        model.eval();
        var embedder = new TextEmbedder(model, null, MeanPooling);
        int[][] texts = [[1, 5, 17, 3], [1, 60, 2, 9, 9], [1, 33, 71], [1, 12, 4, 50, 8, 8], [1, 21], [1, 40, 41, 42]];
        List<EmbeddingItem> items = [new(texts[0], texts[1], [texts[4]]), new(texts[2], texts[3], []), new(texts[5], texts[0], [])];
        var settings = MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [64, 16, 8], MatryoshkaWeights = [1, 0.5, 2] })!;
        double[][] Embed(IEnumerable<int[]> ids, int dims) =>
            [.. embedder.EmbedTokenIds(ids.ToArray(), dims).Vectors.Select(v => v.Select(x => (double)x).ToArray())];
        int[][] candidates = [.. items.Select(i => i.Positive), .. items.SelectMany(i => i.Negatives)];
        var expected = settings.Dims.Zip(settings.Weights, (d, w) => w * EmbeddingLossesByHand.Mnrl(Embed(items.Select(i => i.Anchor), d), Embed(candidates, d), 20)).Sum();

        using var noGrad = no_grad();
        using (var batch = EmbeddingCollator.Collate(items, model.Device))
        {
            var output = new EmbeddingObjective(MeanPooling, 20, settings).Compute(model, batch);
            Assert.Equal(expected * 3, output.LossSum.item<float>(), 3);   // a sum over the anchors
        }

        List<ScoredPairItem> pairs = [new(texts[0], texts[1], 0.9f), new(texts[2], texts[3], 0.1f), new(texts[4], texts[5], 0.5f)];
        double[] labels = [0.9, 0.1, 0.5];
        var expectedCoSent = settings.Dims.Zip(settings.Weights,
            (d, w) => w * EmbeddingLossesByHand.CoSent(Embed(pairs.Select(p => p.First), d), Embed(pairs.Select(p => p.Second), d), labels, 20)).Sum();
        using (var batch = ScoredPairCollator.Collate(pairs, model.Device))
        {
            var output = new CoSentObjective(MeanPooling, 20, settings).Compute(model, batch);
            Assert.Equal(expectedCoSent, output.LossSum.item<float>(), 3);
        }
    }

    [Fact]
    public void Bf16_embeddings_are_cut_and_normalised_in_float32()
    {
        // sentence-transformers under autocast normalises each cut in float32. Pooling hands the objectives float32
        // already; a caller with bf16 embeddings must get the same: a cut normalised in bf16 would be rounded to 8
        // significant bits before the loss's own float32 normalisation, and the full-width term would drift from MNRL.
        manual_seed(3);
        using var embeddings = randn(7, 64).to(ScalarType.BFloat16);
        Tensor Scores(Tensor e) => MultipleNegativesRankingLoss.Scores(e.narrow(0, 0, 3), e.narrow(0, 3, 4), 20);
        var plain = MultipleNegativesRankingLoss.Compute(Scores(embeddings)).item<float>();
        var fullWidth = MatryoshkaLoss.Compute(embeddings, [64], [1], e => MultipleNegativesRankingLoss.Compute(Scores(e))).item<float>();
        Assert.True(Math.Abs(plain - fullWidth) <= 1e-6 * Math.Abs(plain), $"MNRL {plain} vs Matryoshka at full width {fullWidth}");
        using var cut = MatryoshkaLoss.Shrink(embeddings, 16);
        Assert.Equal(ScalarType.Float32, cut.dtype);
        using var expected = embeddings.narrow(1, 0, 16).to(ScalarType.Float32);
        Assert.True(cut.allclose(expected / expected.norm(1, keepdim: true, p: 2), rtol: 1e-6, atol: 1e-7));
    }

    [Fact]
    public void Bad_settings_are_refused_by_name()
    {
        static string Error(TrainingOptions options) => Assert.Throws<ArgumentException>(() => MatryoshkaSettings.From(options)).Message;
        Assert.Contains("one weight per dimension", Error(new TrainingOptions { MatryoshkaDims = [64, 32], MatryoshkaWeights = [1] }));
        Assert.Contains("positive, found 0", Error(new TrainingOptions { MatryoshkaDims = [64, 0] }));
        Assert.Contains("twice", Error(new TrainingOptions { MatryoshkaDims = [64, 64] }));
        Assert.Contains("at least one", Error(new TrainingOptions { MatryoshkaDims = [] }));
        Assert.Contains("not negative", Error(new TrainingOptions { MatryoshkaDims = [64], MatryoshkaWeights = [-1] }));
        Assert.Contains("needs matryoshka_dims", Error(new TrainingOptions { MatryoshkaWeights = [1] }));
        Assert.Contains("matryoshka_weights (--matryoshka-weights) are all 0", Error(new TrainingOptions { MatryoshkaDims = [64, 32], MatryoshkaWeights = [0, 0] }));
        Assert.Equal([0.0, 1], MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [64, 32], MatryoshkaWeights = [0, 1] })!.Weights);
        var settings = MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [128, 32] })!;
        Assert.Equal([1.0, 1], settings.Weights);
        Assert.Contains("wider than this model's 64", Assert.Throws<ArgumentException>(() => settings.CheckWidth(64)).Message);
        Assert.Null(MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [64, 8] })!.WidthWarning(64));
        Assert.Contains("leave out the full 64", MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [32, 8] })!.WidthWarning(64));
        var causal = Assert.Throws<ArgumentException>(() => EmbeddingSettings.Validate(new TrainingOptions { MatryoshkaDims = [8] }, TrainingTasks.CausalLm));
        Assert.Contains("task embedding only", causal.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_run_refuses_a_dimension_wider_than_the_models_embeddings_before_training()
    {
        using var temp = new TempDir();
        var data = temp.File("pairs.jsonl", string.Join("\n", Pairs.Select(p => new JsonObject { ["anchor"] = p.Anchor, ["positive"] = p.Positive }.ToJsonString())) + "\n");
        var options = EmbeddingTrainingJobTests.Options(data, Path.Combine(temp.Path, "run")) with { MaxSteps = 1, MatryoshkaDims = [128, 32] };
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options));
        Assert.Contains("matryoshka_dims (--matryoshka-dims) 128 is wider than this model's 64-dimensional embeddings", error.Message);
        Assert.False(Directory.Exists(Path.Combine(options.Output, "final")));
    }

    [Fact]
    public void The_yaml_config_reads_dimension_and_weight_lists()
    {
        using var temp = new TempDir();
        var path = temp.File("config.yaml", "task: embedding\nmatryoshka_dims: [64, 32, 16]\nmatryoshka_weights:\n  - 1\n  - 0.5\n  - 0.25\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal([64, 32, 16], options.MatryoshkaDims);
        Assert.Equal([1, 0.5, 0.25], options.MatryoshkaWeights);
        var reloaded = TrainingConfigFile.Load(temp.File("again.yaml", TrainingConfigFile.ToYaml(options)));
        Assert.Equal(options.MatryoshkaDims, reloaded.MatryoshkaDims);
        Assert.Equal(options.MatryoshkaWeights, reloaded.MatryoshkaWeights);
    }

    private static readonly (string Anchor, string Positive)[] Pairs =
    [
        ("Tom has a red ball.", "The tree was tall."), ("Lily saw a big dog.", "She liked to sing."),
        ("The cat sat on the mat.", "It began to rain."), ("Ben ate a green apple.", "He fell asleep."),
        ("Sue found a blue bird.", "They went home."), ("The sun was hot today.", "A door was open."),
    ];

    [SharedAssetFact("models/stories260K")]
    public void A_killed_matryoshka_run_resumes_to_the_same_losses_and_adapter_and_logs_each_dimensions_metrics()
    {
        using var temp = new TempDir();
        var data = temp.File("pairs.jsonl", string.Join("\n", Pairs.Select(p => new JsonObject { ["anchor"] = p.Anchor, ["positive"] = p.Positive }.ToJsonString())) + "\n");
        var options = EmbeddingTrainingJobTests.Options(data, Path.Combine(temp.Path, "uninterrupted")) with
        {
            MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 4, SaveEvery = 2, KeepCheckpoints = 5,
            MatryoshkaDims = [64, 32, 16], MatryoshkaWeights = [1, 1, 0.5], Validation = data, EvalEvery = 2,
        };
        var log = new List<string>();
        var uninterrupted = FineTuneJob.Run(options, log: log.Add);
        Assert.Contains(log, l => l.Contains("MatryoshkaLoss at 64 (weight 1), 32 (weight 1), 16 (weight 0.5)"));
        var killed = options with { Output = Path.Combine(temp.Path, "resumed") };
        KilledRun.StopAfterStep(killed, 3);
        var resumed = FineTuneJob.Run(killed, resume: true);

        KilledRun.AssertResumedAsUninterrupted(uninterrupted, resumed, steps: 4);

        // Validation logs InformationRetrievalEvaluator's metrics at full width and at each narrower dimension
        // (truncate_dim), as the saved adapter scores the pairs when the embedder cuts its vectors; the full width's
        // dim_64 would repeat the unprefixed metrics and is left out.
        var last = MetricsLog.ReadAll(Path.Combine(uninterrupted.Training.RunDirectory, "metrics.jsonl"))[^1];
        using var loaded = LoadedModel.Load(TestAssets.Stories260K, uninterrupted.FinalDirectory);
        var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, uninterrupted.FinalDirectory);
        var set = RetrievalSet.FromPairs(Pairs);
        foreach (var metric in new[] { "cosine_mrr@10", "cosine_ndcg@10", "cosine_accuracy@1" })
        {
            Assert.Equal(set.Evaluate(embedder)[metric], last[$"val_{metric}"]!.GetValue<double>(), 5);
            foreach (var d in new[] { 32, 16 })
            {
                var cut = new EmbeddingRequestOptions { Dimensions = d };
                Assert.Equal(set.Evaluate(embedder, null, cut, cut)[metric], last[$"val_dim_{d}_{metric}"]!.GetValue<double>(), 5);
            }
        }
        Assert.Null(last["val_dim_64_cosine_mrr@10"]);
    }
}
