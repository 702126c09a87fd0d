using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// sentence-transformers' MultipleNegativesRankingLoss (huggingface/sentence-transformers@6d655a10a4280a237f63eab1ff4119ccb41ce553,
/// losses/MultipleNegativesRankingLoss.py) against its formula worked here in doubles, and the embedding objective's
/// wiring: which texts are each anchor's candidates, what gradient accumulation does, and where gradients go.
/// </summary>
public sealed class MultipleNegativesRankingLossTests
{
    public MultipleNegativesRankingLossTests() => TorchRuntime.EnsureInitialised();

    [Fact]
    public void The_loss_with_hard_negatives_equals_the_formula_worked_by_hand()
    {
        double[][] anchors = [[1, 0, 0.5], [0.2, 1, -0.3], [-0.4, 0.1, 1]];
        double[][] positives = [[0.9, 0.1, 0.4], [0, 1.2, -0.1], [0.3, -0.2, 0.8]];
        double[][] negatives = [[1, 0.2, 0.6], [-1, 0.5, 0], [0.1, 0.1, 0.1], [0.5, -0.5, 2]];   // two rows have two
        using var loss = MultipleNegativesRankingLoss.Compute(EmbeddingLossesByHand.Rows(anchors), EmbeddingLossesByHand.Rows([.. positives, .. negatives]));
        Assert.Equal(EmbeddingLossesByHand.Mnrl(anchors, [.. positives, .. negatives], 20), loss.item<float>(), 5);
        // The hard negatives count: without them the loss is smaller, and another scale gives another value.
        using var pairsOnly = MultipleNegativesRankingLoss.Compute(EmbeddingLossesByHand.Rows(anchors), EmbeddingLossesByHand.Rows(positives));
        Assert.Equal(EmbeddingLossesByHand.Mnrl(anchors, positives, 20), pairsOnly.item<float>(), 5);
        Assert.True(pairsOnly.item<float>() < loss.item<float>());
        using var scaled = MultipleNegativesRankingLoss.Compute(EmbeddingLossesByHand.Rows(anchors), EmbeddingLossesByHand.Rows([.. positives, .. negatives]), 5);
        Assert.Equal(EmbeddingLossesByHand.Mnrl(anchors, [.. positives, .. negatives], 5), scaled.item<float>(), 5);
    }

    private static readonly int[][] Texts = [[1, 5, 17, 3], [1, 60, 2, 9, 9], [1, 33, 71], [1, 12, 4, 50, 8, 8], [1, 21], [1, 40, 41, 42], [1, 7, 7, 30], [1, 90, 3]];

    private static List<EmbeddingItem> Items() =>
    [
        new(Texts[0], Texts[1], [Texts[6]]),
        new(Texts[2], Texts[3], [Texts[7], Texts[1]]),
        new(Texts[4], Texts[5], []),
        new(Texts[6], Texts[0], [Texts[3]]),
    ];

    private static readonly SentenceTransformerConfig MeanPooling = new() { PoolingModes = [PoolingMode.Mean], Normalize = true };

    [Fact]
    public void The_objective_scores_each_anchor_against_every_positive_and_hard_negative_of_its_micro_batch()
    {
        using var model = TestModels.Create("llama");
        model.eval();
        var items = Items();
        var embedder = new TextEmbedder(model, null, MeanPooling);
        float[][] Embed(IEnumerable<int[]> ids) => [.. embedder.EmbedTokenIds(ids.ToArray()).Vectors];
        var anchors = Embed(items.Select(i => i.Anchor));
        var candidates = Embed([.. items.Select(i => i.Positive), .. items.SelectMany(i => i.Negatives)]);
        var expected = EmbeddingLossesByHand.Mnrl(ToDouble(anchors), ToDouble(candidates), 20);

        using var batch = EmbeddingCollator.Collate(items, model.Device);
        using var noGrad = no_grad();
        var output = new EmbeddingObjective(MeanPooling, 20).Compute(model, batch);
        Assert.Equal(4, batch.LossUnits);
        Assert.Equal(expected * 4, output.LossSum.item<float>(), 4);   // a sum over the anchors
    }

    private static double[][] ToDouble(float[][] rows) => rows.Select(r => r.Select(x => (double)x).ToArray()).ToArray();

    [Fact]
    public void Two_micro_batches_give_the_mean_of_their_own_losses_not_the_loss_of_one_batch_of_four()
    {
        // In-batch negatives are the micro-batch's, as sentence-transformers without the Cached loss: accumulation
        // averages two 2-anchor losses (each with 2 positives + its own negatives as candidates), never one 4-anchor loss.
        using var model = TestModels.Create("llama");
        foreach (var p in model.parameters()) p.requires_grad = true;
        var objective = new EmbeddingObjective(MeanPooling, 20);
        var items = Items();
        (double Loss, float[] Gradient) Step(params List<EmbeddingItem>[] split)
        {
            model.zero_grad();
            var totals = Trainer.AccumulateGradients(model, objective, split.Select(b => (TrainingBatch)EmbeddingCollator.Collate(b, model.Device)).ToArray());
            Assert.Equal(split.Sum(b => b.Count), totals.Units);
            return (totals.LossSum / totals.Units, model.named_parameters().First(p => p.name.EndsWith("q_proj.weight")).parameter.grad!.data<float>().ToArray());
        }
        var (first, firstGradient) = Step(items[..2]);
        var (second, secondGradient) = Step(items[2..]);
        var (accumulated, accumulatedGradient) = Step(items[..2], items[2..]);
        var (whole, wholeGradient) = Step(items);

        Assert.Equal((first + second) / 2, accumulated, 5);
        Assert.True(Math.Abs(whole - accumulated) > 1e-3, $"one batch of four {whole} vs two of two {accumulated}");
        var scale = accumulatedGradient.Max(Math.Abs);
        Assert.True(scale > 0);
        for (var i = 0; i < accumulatedGradient.Length; i++)
            Assert.True(Math.Abs((firstGradient[i] + secondGradient[i]) / 2 - accumulatedGradient[i]) <= 1e-5 * scale, $"[{i}]");
        Assert.Contains(Enumerable.Range(0, wholeGradient.Length), i => Math.Abs(wholeGradient[i] - accumulatedGradient[i]) > 1e-3 * scale);
    }

    [Fact]
    public void With_lora_the_gradient_reaches_only_the_adapter()
    {
        using var model = TestModels.Create("llama");
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, PeftTaskType = LoraConfig.FeatureExtractionTaskType });
        adapter.Inject(model);
        // Non-zero B factors, so A gets a gradient too (PEFT starts B at zero).
        using (no_grad())
            foreach (var (name, p) in adapter.TrainableParameters.Where(t => t.Name.Contains("lora_B")))
                p.copy_(randn(p.shape) * 0.1);
        var adapterParameters = adapter.TrainableParameters.Select(t => t.Parameter.Handle).ToHashSet();
        var objective = new EmbeddingObjective(SentenceTransformerConfig.Default, 20);
        Trainer.AccumulateGradients(model, objective, [EmbeddingCollator.Collate(Items(), model.Device)]);

        foreach (var (name, parameter) in model.named_parameters())
        {
            if (adapterParameters.Contains(parameter.Handle))
                Assert.True(parameter.grad is { } g && g.abs().sum().item<float>() > 0, $"{name}: the adapter got no gradient");
            else
                Assert.True(parameter.grad is null && !parameter.requires_grad, $"{name}: a base weight got a gradient");
        }
        Assert.Contains(model.named_parameters(), p => p.name.Contains("lora_A"));
    }
}
