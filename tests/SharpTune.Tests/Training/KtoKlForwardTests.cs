using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// KtoObjective scores the KL rows' policy log-probs in a no-grad forward of their own, as TRL's
/// <c>KTOTrainer._compute_kl_logps</c> does under torch.no_grad (trl/trainer/kto_trainer.py @ f2cd577), instead of in the
/// examples' forward with the graph kept and detached after; the reference scores the KL rows in a pass of its own too.
/// Both give the same loss and gradients; the expected values are the earlier combined forward (all 2B rows in one
/// policy forward and one reference pass) written out here.
/// </summary>
public class KtoKlForwardTests
{
    // Prompts and completions of different lengths, so the KL rows (prompt i + completion i−1) pad differently from the examples.
    private static readonly TokenizedUnpairedExample[] Examples =
    [
        new([1, 4, 5], [12, 13, 14, 2], Desirable: true),
        new([1, 6], [20, 2], Desirable: false),
        new([1, 7, 8, 9], [30, 31, 32, 33, 34, 2], Desirable: true),
        new([1, 10], [40, 41, 2], Desirable: false),
    ];

    /// <summary>Records each policy forward's rows and whether gradients were recorded during it.</summary>
    private sealed class ForwardRecorder : IForwardAdapter
    {
        public List<(long Rows, bool Grad)> Forwards { get; } = [];
        public int VirtualTokenCount => 0;

        public (Tensor InputsEmbeds, ForwardContext Context) Adjust(Tensor inputsEmbeds, ForwardContext context)
        {
            Forwards.Add((inputsEmbeds.shape[0], is_grad_enabled()));
            return (inputsEmbeds, context);
        }
    }

    [Fact]
    public void ANoGradKlForwardGivesTheCombinedForwardsLossAndGradients()
    {
        using var first = TestModels.Create("llama", seed: 5);
        using var second = TestModels.Create("llama", seed: 55);
        first.eval();
        second.eval();
        using var batch = KtoBatch.Collate(Examples, CPU, klRows: true, maxLength: 64);
        const int b = 4;
        var settings = new KtoSettings(Beta: 0.5, DesirableWeight: 1.0, UndesirableWeight: 1.3);

        // The KL estimate is clamped at 0: pick the policy whose mean KL log-ratio against the other is positive, so the
        // loss depends on the KL rows' values.
        var (policy, reference) = (first, second);
        if (CombinedKl(policy, reference) <= 0) (policy, reference) = (second, first);
        Assert.True(CombinedKl(policy, reference) > 0.01, "the test needs a clearly positive KL estimate");

        // The combined forward as KtoObjective ran it before: all 2B rows with the graph, the KL half detached after.
        ZeroGradients(policy);
        var referenceAll = DpoReference.FrozenModel(reference).Score(policy, m => SequenceLogProbs.Compute(m, batch));
        var policyAll = SequenceLogProbs.Compute(policy, batch);
        var chosen = tensor(new long[] { 0, 2 });
        var rejected = tensor(new long[] { 1, 3 });
        var rows = policyAll.narrow(0, 0, b);
        var referenceRows = referenceAll.narrow(0, 0, b);
        var expected = KtoLoss.Compute(rows.index_select(0, chosen), rows.index_select(0, rejected), policyAll.narrow(0, b, b).detach(),
            referenceRows.index_select(0, chosen), referenceRows.index_select(0, rejected), referenceAll.narrow(0, b, b),
            settings.Beta, settings.DesirableWeight, settings.UndesirableWeight);
        var expectedLoss = expected.Losses.sum();
        expectedLoss.backward();
        var expectedGradients = policy.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());

        ZeroGradients(policy);
        var recorder = new ForwardRecorder();
        policy.ForwardAdapter = recorder;
        var output = new KtoObjective(settings, DpoReference.FrozenModel(reference)).Compute(policy, batch);
        policy.ForwardAdapter = null;
        output.LossSum.backward();

        // The KL rows: one forward of B rows without gradients, then the B examples with them (not one 2B-row forward).
        Assert.Equal([(b, false), (b, true)], recorder.Forwards);
        Assert.Equal(expected.Kl.item<float>() * b, output.MetricSums!["kl"].item<float>(), 1e-6 * b * expected.Kl.item<float>());
        AssertRelative(expectedLoss.item<float>(), output.LossSum.item<float>(), "loss");
        foreach (var (name, parameter) in policy.named_parameters())
        {
            var want = expectedGradients[name];
            var scale = want.abs().max().item<float>();
            var diff = (parameter.grad! - want).abs().max().item<float>();
            Assert.True(scale > 0, $"{name}: no gradient");
            Assert.True(diff <= 1e-6 * scale, $"{name}: gradient differs by {diff:G3} (largest {scale:G3})");
        }
        Assert.All(reference.parameters(), p => Assert.Null(p.grad));

        double CombinedKl(CausalLanguageModel p, CausalLanguageModel r)
        {
            using var noGrad = no_grad();
            var klPolicy = SequenceLogProbs.Compute(p, batch).narrow(0, b, b);
            var klReference = SequenceLogProbs.Compute(r, batch).narrow(0, b, b);
            return (klPolicy - klReference).mean().item<float>();
        }
    }

    private static void ZeroGradients(CausalLanguageModel model)
    {
        foreach (var p in model.parameters()) p.grad = null;
    }

    private static void AssertRelative(double expected, double actual, string what) =>
        Assert.True(Math.Abs(actual - expected) <= 1e-6 * Math.Abs(expected), $"{what}: {actual} vs {expected}");
}
