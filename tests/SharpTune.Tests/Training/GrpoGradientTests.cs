using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// With μ = 1 and β = 0 the ratio is 1 at the sampled policy, so GRPO's gradient must be the plain group-normalised
/// policy gradient −(1/B)·Σ_i A_i/|o_i|·Σ_t ∇log π(o_it | prefix): computed here row by row with an unbatched, unpadded
/// forward pass and a hand-written log-softmax gather, then compared with GrpoBatch + TokenLogProbs + GrpoLoss.
/// </summary>
public class GrpoGradientTests
{
    internal static readonly GrpoRow[] Rows =
    [
        new([1, 5, 9], [12, 40, 2], false, 1.2, null, null),
        new([1, 5, 9], [30, 2], false, -0.4, null, null),
        new([1, 7], [11, 12, 13, 14], true, -0.8, null, null),
        new([1, 7], [50, 2], false, 0.0, null, null),
    ];

    internal static Dictionary<string, float[]> Gradients(SharpTune.Models.CausalLanguageModel model)
    {
        var result = model.named_parameters().Where(p => p.parameter.grad is not null)
            .ToDictionary(p => p.name, p => p.parameter.grad!.data<float>().ToArray());
        foreach (var p in model.parameters()) p.grad = null;
        return result;
    }

    [Theory]
    [InlineData(GrpoLossType.Grpo)]
    [InlineData(GrpoLossType.Bnpo)]
    [InlineData(GrpoLossType.DrGrpo)]
    [InlineData(GrpoLossType.Dapo)]
    public void MuOneBetaZeroGradientIsTheGroupNormalisedPolicyGradient(GrpoLossType type)
    {
        using var model = SharpTune.Tests.Support.TestModels.Create("llama", seed: 7);
        model.eval();
        const int maxCompletion = 6;
        var totalTokens = Rows.Sum(r => r.CompletionIds.Length);
        // Two micro-batches of two rows, as gradient accumulation 2.
        foreach (var chunk in Rows.Chunk(2))
        {
            using var scope = NewDisposeScope();
            using var batch = GrpoBatch.Collate(chunk, model.Device, maskTruncated: false);
            var logProbs = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _);
            GrpoLoss.Compute(logProbs, null, null, batch.Advantages, batch.Mask, new GrpoLossSettings(type, MaxCompletionLength: maxCompletion), 2, totalTokens)
                .Loss.backward();
        }
        var grpo = Gradients(model);

        // The policy gradient, one row at a time: weight_i = A_i / (normaliser of row i under each loss type).
        foreach (var (row, index) in Rows.Select((r, i) => (r, i)))
        {
            using var scope = NewDisposeScope();
            var chunkRows = Rows.Chunk(2).ElementAt(index / 2);
            double normaliser = type switch
            {
                GrpoLossType.Grpo => row.CompletionIds.Length * chunkRows.Length * 2.0,         // token mean, row mean, ÷ accumulation
                GrpoLossType.Bnpo => chunkRows.Sum(r => r.CompletionIds.Length) * 2.0,          // micro-batch token mean ÷ accumulation
                GrpoLossType.DrGrpo => chunkRows.Length * maxCompletion * 2.0,
                _ => totalTokens,                                                               // DAPO: the generation batch's tokens
            };
            int[] sequence = [.. row.PromptIds, .. row.CompletionIds];
            var logits = model.Forward(tensor(sequence.Select(t => (long)t).ToArray()).unsqueeze(0)).squeeze(0).to(ScalarType.Float64);   // (T, V)
            var logSoftmax = logits - logits.exp().sum(-1, keepdim: true).log();
            var sum = zeros(1, dtype: ScalarType.Float64).sum();
            for (var k = 0; k < row.CompletionIds.Length; k++)
                sum = sum + logSoftmax[row.PromptIds.Length + k - 1, row.CompletionIds[k]];
            (-(row.Advantage / normaliser) * sum).backward();
        }
        var reinforce = Gradients(model);

        Assert.Equal(reinforce.Keys.Order(), grpo.Keys.Order());
        var largest = reinforce.Values.Max(g => g.Max(Math.Abs));
        Assert.True(largest > 1e-4, "the test needs a gradient that is not ~0");
        foreach (var (name, expected) in reinforce)
            for (var i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - grpo[name][i]) <= 2e-5 * largest + 1e-7,
                    $"{name}[{i}]: policy gradient {expected[i]}, GRPO {grpo[name][i]}");
    }

    [Fact]
    public void LogProbsAndEntropyAreTakenAtTheSamplingTemperatureAsTrl()
    {
        // TRL's GRPOTrainer._get_per_token_logps_and_entropies (trl/trainer/grpo_trainer.py@f2cd57710ae3) divides the logits
        // by args.temperature before selective_log_softmax and entropy_from_logits, for the policy, old and reference passes.
        using var model = SharpTune.Tests.Support.TestModels.Create("llama", seed: 7);
        model.eval();
        using var batch = GrpoBatch.Collate(Rows, model.Device, maskTruncated: false);
        const double temperature = 0.7;
        var logProbs = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out var entropy, withEntropy: true,
            chunkTokens: 5, temperature: temperature);
        using var noGrad = no_grad();
        var scaled = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(batch.InputIds), batch.Context)) / temperature;   // (B, T, V)
        var logSoftmax = scaled.log_softmax(-1);
        var supervised = batch.Targets.ne(BatchCollator.IgnoreIndex);
        var expected = logSoftmax.gather(-1, batch.Targets.clamp_min(0).unsqueeze(-1)).squeeze(-1) * supervised;
        Assert.True(logProbs.allclose(expected, rtol: 1e-5, atol: 1e-5));
        var expectedEntropy = -(logSoftmax.exp() * logSoftmax).sum(-1);
        Assert.True(entropy!.allclose(expectedEntropy, rtol: 1e-5, atol: 1e-5));
        // At temperature 1 the values differ from the tempered ones.
        var plain = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _);
        Assert.False(plain.allclose(expected, rtol: 1e-3, atol: 1e-3));
    }
}
