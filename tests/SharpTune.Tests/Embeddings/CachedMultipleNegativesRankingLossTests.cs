using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// sentence-transformers' CachedMultipleNegativesRankingLoss (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f,
/// losses/CachedMultipleNegativesRankingLoss.py) is MultipleNegativesRankingLoss computed with less memory: its loss and
/// every parameter's gradient must equal plain MNRL's on the same micro-batch, with or without MatryoshkaLoss around it,
/// and with dropout its second pass must draw the first pass's masks.
/// </summary>
public sealed class CachedMultipleNegativesRankingLossTests
{
    public CachedMultipleNegativesRankingLossTests() => TorchRuntime.EnsureInitialised();

    private static readonly int[][] Texts = [[1, 5, 17, 3], [1, 60, 2, 9, 9], [1, 33, 71], [1, 12, 4, 50, 8, 8], [1, 21], [1, 40, 41, 42], [1, 7, 7, 30], [1, 90, 3]];

    // 4 anchors, 4 positives, 3 hard negatives: 11 texts, so pieces of 3 leave a short last one.
    private static List<EmbeddingItem> Items() =>
    [
        new(Texts[0], Texts[1], [Texts[6]]),
        new(Texts[2], Texts[3], [Texts[7], Texts[1]]),
        new(Texts[4], Texts[5], []),
        new(Texts[6], Texts[0], []),
    ];

    private static readonly SentenceTransformerConfig MeanPooling = new() { PoolingModes = [PoolingMode.Mean], Normalize = true };

    private static (double Loss, double Correct, Dictionary<string, float[]> Gradients) Step(CausalLanguageModel model, ITrainingObjective objective,
        IReadOnlyList<(string Name, Parameter Parameter)> trainable, params List<EmbeddingItem>[] split)
    {
        model.zero_grad();
        var totals = Trainer.AccumulateGradients(model, objective, split.Select(b => (TrainingBatch)EmbeddingCollator.Collate(b, model.Device)).ToArray());
        // The output head takes no part in an embedding, so it has no gradient.
        return (totals.LossSum / totals.Units, totals.Correct, trainable.Where(t => t.Parameter.grad is not null)
            .ToDictionary(t => t.Name, t => t.Parameter.grad!.data<float>().ToArray()));
    }

    private static void AssertSameGradients(Dictionary<string, float[]> expected, Dictionary<string, float[]> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.Contains(expected.Keys, k => k.Contains("layers.0.self_attn"));
        var scale = expected.Values.Max(g => g.Max(Math.Abs));
        Assert.True(scale > 0);
        foreach (var (name, values) in expected)
            for (var i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - actual[name][i]) <= 1e-4 * scale, $"{name}[{i}]: {values[i]} vs {actual[name][i]}");
    }

    [Theory]
    [InlineData(3, false)]
    [InlineData(1, false)]
    [InlineData(64, false)]
    [InlineData(4, true)]
    public void The_loss_and_every_gradient_equal_plain_mnrl_on_the_same_micro_batches(int miniBatchSize, bool withMatryoshka)
    {
        using var model = TestModels.Create("llama");   // full fine-tuning; the test model has no dropout
        foreach (var p in model.parameters()) p.requires_grad = true;
        var trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        var matryoshka = withMatryoshka ? MatryoshkaSettings.From(new TrainingOptions { MatryoshkaDims = [64, 16], MatryoshkaWeights = [1, 0.5] }) : null;
        var items = Items();
        // Two micro-batches accumulated: each is its own MNRL batch in both, and the step divides by all anchors.
        var plain = Step(model, new EmbeddingObjective(MeanPooling, 20, matryoshka), trainable, items[..3], items[3..]);
        var cached = Step(model, new CachedEmbeddingObjective(MeanPooling, 20, miniBatchSize, matryoshka), trainable, items[..3], items[3..]);

        Assert.Equal(plain.Loss, cached.Loss, 5);
        Assert.Equal(plain.Correct, cached.Correct);
        AssertSameGradients(plain.Gradients, cached.Gradients);

        // Evaluation (no gradients) gives the same loss too.
        using var noGrad = no_grad();
        using var batch = EmbeddingCollator.Collate(items, model.Device);
        var expected = new EmbeddingObjective(MeanPooling, 20, matryoshka).Compute(model, batch).LossSum.item<float>();
        Assert.Equal(expected, new CachedEmbeddingObjective(MeanPooling, 20, miniBatchSize, matryoshka).Compute(model, batch).LossSum.item<float>(), 4);
    }

    [Fact]
    public void With_dropout_the_second_pass_replays_each_pieces_masks()
    {
        using var model = TestModels.Create("llama");
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0.5, PeftTaskType = LoraConfig.FeatureExtractionTaskType });
        adapter.Inject(model);
        using (no_grad())
            foreach (var (_, p) in adapter.TrainableParameters.Where(t => t.Name.Contains("lora_B")))
                p.copy_(randn(p.shape) * 0.1);
        model.train();
        var trainable = adapter.TrainableParameters;
        var items = Items();
        const int pieceSize = 3;

        manual_seed(11);
        var cached = Step(model, new CachedEmbeddingObjective(MeanPooling, 20, pieceSize), trainable, items);

        // The reference draws the same masks — each piece of 3 texts embedded with gradients under the piece's seed — and
        // differentiates MNRL on them directly, in one graph.
        model.zero_grad();
        manual_seed(11);
        var firstSeed = CachedEmbeddingObjective.FirstPieceSeed();
        using var batch = EmbeddingCollator.Collate(items, model.Device);
        var pieces = new List<Tensor>();
        for (var start = 0; start < batch.Rows.Count; start += pieceSize)
        {
            manual_seed(firstSeed + start / pieceSize);
            var count = Math.Min(pieceSize, batch.Rows.Count - start);
            var spans = batch.Rows.Skip(start).Take(count).ToArray();
            var length = spans.Max(s => s.Length);
            pieces.Add(TextEmbedder.Encode(model, batch.InputIds.narrow(0, start, count).narrow(1, 0, length),
                ForwardContext.Causal(count, length, model.Device), spans, MeanPooling));
        }
        var loss = MultipleNegativesRankingLoss.Compute(cat(pieces).narrow(0, 0, 4), cat(pieces).narrow(0, 4, batch.Rows.Count - 4));
        loss.backward();
        Assert.Equal(loss.item<float>(), cached.Loss, 5);
        AssertSameGradients(trainable.ToDictionary(t => t.Name, t => t.Parameter.grad!.data<float>().ToArray()), cached.Gradients);

        // Dropout does act here: another seed gives another loss.
        manual_seed(12);
        Assert.NotEqual(cached.Loss, Step(model, new CachedEmbeddingObjective(MeanPooling, 20, pieceSize), trainable, items).Loss, 4);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_cached_mnrl_run_takes_the_steps_of_an_mnrl_run()
    {
        using var temp = new TempDir();
        var rows = new[] { ("Tom has a red ball.", "The tree was tall."), ("Lily saw a big dog.", "She liked to sing."), ("The cat sat on the mat.", "It began to rain."),
            ("Ben ate a green apple.", "He fell asleep."), ("Sue found a blue bird.", "They went home."), ("The sun was hot today.", "A door was open.") };
        var data = temp.File("pairs.jsonl", string.Join("\n", rows.Select(r => new System.Text.Json.Nodes.JsonObject { ["anchor"] = r.Item1, ["positive"] = r.Item2 }.ToJsonString())) + "\n");
        // No LoRA dropout: the two runs then draw no random masks, so their steps must agree.
        var options = EmbeddingTrainingJobTests.Options(data, Path.Combine(temp.Path, "mnrl")) with { MicroBatchSize = 6, MaxSteps = 3, LoraDropout = 0 };
        var plain = FineTuneJob.Run(options).Training.TrainLosses;
        var log = new List<string>();
        var cached = FineTuneJob.Run(options with { Output = Path.Combine(temp.Path, "cached"), LossType = "cached-mnrl", MiniBatchSize = 4 }, log: log.Add).Training.TrainLosses;
        // The cached objective ran: 12 texts per micro-batch (6 anchors, 6 positives), 4 per forward pass.
        Assert.Contains("embedding: CachedMultipleNegativesRankingLoss, 4 texts per forward pass (--mini-batch-size) of up to 12 per micro-batch", log);
        Assert.DoesNotContain(log, l => l.Contains("to no purpose"));
        Assert.Equal(3, cached.Count);
        for (var i = 0; i < plain.Count; i++) Assert.Equal(plain[i], cached[i], 4);
        Assert.True(cached[^1] < cached[0]);
    }

    [Fact]
    public void Validation_and_test_embed_at_most_a_mini_batch_of_texts_per_forward()
    {
        var options = new TrainingOptions { Task = TrainingTasks.Embedding, MicroBatchSize = 256, LossType = "cached-mnrl", MiniBatchSize = 8 };
        Assert.Equal(8, EmbeddingRecipe.EvaluationBatchSize(options, EmbeddingSettings.From(options)));
        // The default mini-batch (32), and a mini-batch larger than the micro-batch.
        Assert.Equal(32, EmbeddingRecipe.EvaluationBatchSize(options with { MiniBatchSize = null }, EmbeddingSettings.From(options with { MiniBatchSize = null })));
        Assert.Equal(4, EmbeddingRecipe.EvaluationBatchSize(options with { MicroBatchSize = 4 }, EmbeddingSettings.From(options with { MicroBatchSize = 4 })));
        // Plain MNRL embeds a micro-batch per forward in training, so evaluation may too.
        var plain = new TrainingOptions { Task = TrainingTasks.Embedding, MicroBatchSize = 256 };
        Assert.Equal(256, EmbeddingRecipe.EvaluationBatchSize(plain, EmbeddingSettings.From(plain)));
    }

    [Fact]
    public void A_mini_batch_that_holds_the_whole_micro_batch_is_reported_as_redundant()
    {
        // 4 rows of anchor, positive and up to 2 negatives: 16 texts per micro-batch.
        Assert.Single(EmbeddingRecipe.CachedPieceNotes(4, 15, 2));
        var notes = EmbeddingRecipe.CachedPieceNotes(4, 16, 2).ToList();
        Assert.Equal(2, notes.Count);
        Assert.StartsWith("warning: --mini-batch-size 16 holds a whole micro-batch's texts (up to 16)", notes[1]);
    }

    [Fact]
    public void Bad_settings_are_refused_by_name()
    {
        static string Error(TrainingOptions options) => Assert.Throws<ArgumentException>(() => EmbeddingSettings.From(options)).Message;
        Assert.Contains("goes with loss_type cached-mnrl", Error(new TrainingOptions { Task = TrainingTasks.Embedding, MiniBatchSize = 8 }));
        Assert.Contains("at least 1", Error(new TrainingOptions { Task = TrainingTasks.Embedding, LossType = "cached-mnrl", MiniBatchSize = 0 }));
        Assert.Equal(32, EmbeddingSettings.From(new TrainingOptions { LossType = "cached_mnrl" }).MiniBatchSize);
        Assert.Equal(EmbeddingSettings.CachedMultipleNegativesRanking, EmbeddingSettings.From(new TrainingOptions { LossType = "cached_mnrl" }).Loss);
        Assert.Contains("task embedding only", Assert.Throws<ArgumentException>(
            () => EmbeddingSettings.Validate(new TrainingOptions { MiniBatchSize = 4 }, TrainingTasks.CausalLm)).Message);
    }
}
