using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>Sequence log-probs and the three reference sources against independently computed values.</summary>
public class DpoReferenceTests
{
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static string Show(Tensor t) => string.Join(", ", t.data<float>().ToArray());

    [Fact]
    public void SequenceLogProbsSumOnlyTheCompletionTokens()
    {
        using var model = TestModels.Create("llama");
        model.eval();
        using var noGrad = no_grad();
        var pair = new TokenizedPreferencePair([1, 5, 6], [7, 8, 2], [9, 2]);
        using var batch = PreferenceCollator.Collate([pair], CPU);
        var scores = SequenceLogProbs.Compute(model, batch).data<float>().ToArray();
        var chosen = model.Forward(tensor(new long[,] { { 1, 5, 6, 7, 8, 2 } })).log_softmax(-1);
        var rejected = model.Forward(tensor(new long[,] { { 1, 5, 6, 9, 2 } })).log_softmax(-1);
        // Hand-worked positions: completion token t is predicted at position t − 1; the prompt is never scored.
        var expectedChosen = chosen[0, 2, 7].item<float>() + chosen[0, 3, 8].item<float>() + chosen[0, 4, 2].item<float>();
        var expectedRejected = rejected[0, 2, 9].item<float>() + rejected[0, 3, 2].item<float>();
        Assert.Equal(expectedChosen, scores[0], 4);
        Assert.Equal(expectedRejected, scores[1], 4);
        Assert.Equal(1, batch.LossUnits);   // one pair
        Assert.Equal(5, batch.SupervisedTokens);
    }

    [Fact]
    public void AdapterDisabledReferenceIsTheSeparatelyLoadedBaseModel()
    {
        // Random LoRA init: the adapter changes the model from the start, so policy and reference really differ.
        var (policy, adapter) = DpoTrainingTests.LoraModel(init: LoraInit.Random);
        using var _ = policy;
        using var baseModel = TestModels.Create("llama");   // same seed: the same base weights, loaded on their own
        baseModel.eval();
        policy.train();
        using var batch = PreferenceCollator.Collate(DpoTrainingTests.RulePairs(4, seed: 11), CPU);

        var reference = DpoReference.AdapterDisabled(adapter).LogProbs(policy, batch);
        Tensor expected;
        using (no_grad()) expected = SequenceLogProbs.Compute(baseModel, batch);
        Assert.True(Same(reference, expected), $"reference {Show(reference)} vs base model {Show(expected)}");
        Assert.False(reference.requires_grad);

        policy.eval();
        using (no_grad())
        {
            var withAdapter = SequenceLogProbs.Compute(policy, batch);
            Assert.True((withAdapter - expected).abs().max().item<float>() > 1e-3, "the adapter should change the policy");
        }
        Assert.True(adapter.Enabled, "the adapter is switched back on");
    }

    [Fact]
    public void ReferenceScoringRestoresTrainingModeAndLeavesNoGradients()
    {
        var (policy, adapter) = DpoTrainingTests.LoraModel(init: LoraInit.Random);
        using var _ = policy;
        policy.train();
        using var batch = PreferenceCollator.Collate(DpoTrainingTests.RulePairs(2, seed: 12), CPU);
        DpoReference.AdapterDisabled(adapter).LogProbs(policy, batch);
        Assert.True(policy.training);
        Assert.All(adapter.TrainableParameters, p => Assert.Null(p.Parameter.grad));
    }

    [Fact]
    public void PrecomputedValuesEqualOnTheFlyOnesAndTheFrozenCopy()
    {
        var (policy, adapter) = DpoTrainingTests.LoraModel(init: LoraInit.Random);
        using var _ = policy;
        using var frozen = TestModels.Create("llama");
        var pairs = DpoTrainingTests.RulePairs(6, seed: 13);
        var cached = PreferenceReferenceCache.Precompute(pairs, policy, DpoReference.AdapterDisabled(adapter), batchSize: 4);
        using var batch = PreferenceCollator.Collate(cached, CPU);
        Assert.NotNull(batch.ReferenceChosen);
        var fromCache = DpoReference.Precomputed.LogProbs(policy, batch);
        var onTheFly = DpoReference.AdapterDisabled(adapter).LogProbs(policy, batch);
        var fromCopy = DpoReference.FrozenModel(frozen).LogProbs(policy, batch);
        // Batches of 4 and 2 pad differently from one batch of 6; padding on the right must not change a causal score.
        Assert.True(fromCache.allclose(onTheFly, rtol: 1e-5, atol: 1e-5), $"{Show(fromCache)} vs {Show(onTheFly)}");
        Assert.True(Same(fromCopy, onTheFly));

        using var plain = PreferenceCollator.Collate(pairs, CPU);
        Assert.Contains("precomputed", Assert.Throws<InvalidOperationException>(() => DpoReference.Precomputed.LogProbs(policy, plain)).Message);
    }
}
