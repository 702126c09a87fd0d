using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// Online DPO's parts checked by hand against TRL's OnlineDPOTrainer.training_step (huggingface/trl@f2cd577,
/// trl/experimental/online_dpo/online_dpo_trainer.py): the scores and the chosen/rejected pick (nansum of the weighted
/// reward functions, missing_eos_penalty, ties to the first completion), the loss and its gradient in doubles, β per
/// epoch, and the refusals of settings either side would ignore.
/// </summary>
public class OnlineDpoObjectiveTests
{
    [Fact]
    public void ScoresAndPairsAreWorkedOutAsTrlPicksThem()
    {
        const double n = double.NaN;
        // Two functions weighted 1 and 0.5; four prompts, rows 2p and 2p + 1 answer prompt p.
        var scores = new double[,] { { 1, n }, { 0, 2 }, { n, n }, { -1, n }, { 1, 0 }, { 0.5, 0 }, { 0, 0 }, { 0, 0 } };
        var eos = new[] { true, true, true, true, false, true, false, false };
        var weights = new[] { 1.0, 0.5 };

        var plain = OnlineDpoPairs.Scores(scores, weights, eos, missingEosPenalty: null);
        // p0: 1 (the missing score skipped) vs 0 + 0.5·2 = 1; p1: nothing scored sums to 0 (nansum) vs −1; p2: 1 vs 0.5; p3: 0 vs 0.
        Assert.Equal([1, 1, 0, -1, 1, 0.5, 0, 0], plain);
        // A tie (p0, p3) chooses the first completion (TRL's first_half >= second_half).
        Assert.Equal([(0, 1), (2, 3), (4, 5), (6, 7)], OnlineDpoPairs.Select(plain));

        var penalised = OnlineDpoPairs.Scores(scores, weights, eos, missingEosPenalty: 0.75);
        // Rows 4, 6, 7 end without EOS: 1 − 0.75 = 0.25 now loses to 0.5; p3 stays a tie at −0.75 each.
        Assert.Equal([1, 1, 0, -1, 0.25, 0.5, -0.75, -0.75], penalised);
        Assert.Equal([(0, 1), (2, 3), (5, 4), (6, 7)], OnlineDpoPairs.Select(penalised));
    }

    /// <summary>TRL's losses on per-token log-probs in float64: x = (Σπ_c − Σπ_r) − (Σref_c − Σref_r) over unpadded tokens.</summary>
    [Theory]
    [InlineData("sigmoid", 0.1)]
    [InlineData("sigmoid", 0.7)]
    [InlineData("ipo", 0.1)]
    [InlineData("ipo", 0.5)]
    public void TheLossAndItsGradientFollowTrlsFormula(string lossType, double beta)
    {
        // Two pairs, four completions of up to 3 tokens; row 1 has one padding token and row 2 two (mask 0, any value there).
        double[,] tokens = { { -0.5, -1.25, -0.75 }, { -2.0, -0.25, -9.0 }, { -1.5, -7.0, -8.0 }, { -0.125, -0.5, -1.0 } };
        float[,] mask = { { 1, 1, 1 }, { 1, 1, 0 }, { 1, 0, 0 }, { 1, 1, 1 } };
        double[] reference = [-2.0, -2.5, -1.0, -2.0];
        (int, int)[] pairs = [(0, 1), (3, 2)];   // pair 0 chooses row 0, pair 1 chooses row 3
        var type = lossType == "ipo" ? DpoLossType.Ipo : DpoLossType.Sigmoid;

        using var logProbs = tensor(tokens, dtype: ScalarType.Float64).requires_grad_();
        var (loss, sums) = OnlineDpoUpdate.PairLoss(logProbs, tensor(mask), reference, pairs, beta, type);
        loss.backward();

        double Sum(int row) => Enumerable.Range(0, 3).Sum(t => tokens[row, t] * mask[row, t]);
        Assert.Equal([Sum(0), Sum(1), Sum(2), Sum(3)], sums.data<double>().ToArray());
        var expectedLoss = 0.0;
        var expectedGrad = new double[4, 3];
        foreach (var (c, r) in pairs)
        {
            var x = (Sum(c) - Sum(r)) - (reference[c] - reference[r]);
            // sigmoid: −log σ(βx), d/dx = −β σ(−βx); ipo: (x − 1/(2β))², d/dx = 2(x − 1/(2β)); averaged over the 2 pairs.
            expectedLoss += (type == DpoLossType.Sigmoid ? Math.Log(1 + Math.Exp(-beta * x)) : Math.Pow(x - 1 / (2 * beta), 2)) / pairs.Length;
            var dx = (type == DpoLossType.Sigmoid ? -beta / (1 + Math.Exp(beta * x)) : 2 * (x - 1 / (2 * beta))) / pairs.Length;
            for (var t = 0; t < 3; t++)
            {
                expectedGrad[c, t] += dx * mask[c, t];
                expectedGrad[r, t] -= dx * mask[r, t];
            }
        }
        Assert.Equal(expectedLoss, loss.item<double>(), 12);
        var grad = logProbs.grad!.data<double>().ToArray();
        for (var i = 0; i < 4; i++)
            for (var t = 0; t < 3; t++)
                Assert.Equal(expectedGrad[i, t], grad[i * 3 + t], 12);
        Assert.Equal(0.0, grad[1 * 3 + 2]);   // padding carries no gradient
    }

    [Fact]
    public void BetaFollowsTheEpochAndTheLastHoldsAfterwards()
    {
        var settings = OnlineDpoSettings.From(new TrainingOptions { Objective = "online-dpo", BetaPerEpoch = [0.3, 0.2, 0.05] });
        Assert.Equal([0.3, 0.2, 0.05, 0.05], new[] { 0, 1, 2, 7 }.Select(settings.BetaAt));
        var defaults = GrpoSettings.From(new TrainingOptions { Objective = "online-dpo" });
        Assert.Equal([OnlineDpoSettings.DefaultBeta], defaults.OnlineDpo!.Betas);
        Assert.Equal(DpoLossType.Sigmoid, defaults.OnlineDpo.LossType);
        Assert.Null(defaults.OnlineDpo.MissingEosPenalty);
        Assert.Equal(0.9, defaults.Temperature);   // TRL's OnlineDPOConfig temperature
        Assert.Equal(1.0, defaults.LogProbTemperature);   // its _forward scores with the model's own logits
        Assert.Equal(2, defaults.NumGenerations);
        Assert.True(defaults.NeedsReference);
    }

    private static TrainingOptions Run(string objective) => new() { Objective = objective, Model = "m", Data = "d.jsonl" };

    public static TheoryData<string, Func<TrainingOptions, TrainingOptions>, string> Refused => new()
    {
        { "online-dpo", o => o with { NumGenerations = 4 }, "num_generations (--num-generations): only objective grpo or rloo uses it" },
        { "online-dpo", o => o with { ScaleRewards = "batch" }, "scale_rewards (--scale-rewards): only objective grpo uses it" },
        { "online-dpo", o => o with { NormalizeAdvantages = true }, "normalize_advantages (--normalize-advantages): only objective rloo uses it" },
        { "online-dpo", o => o with { LossType = "hinge" }, "online-dpo loss_type (--loss-type) must be sigmoid or ipo" },
        { "online-dpo", o => o with { NumIterations = 2 }, "objective online-dpo does not use num_iterations" },
        { "online-dpo", o => o with { EpsilonHigh = 0.28 }, "objective online-dpo does not use epsilon (--epsilon) and epsilon_high" },
        { "online-dpo", o => o with { MaskTruncatedCompletions = true }, "objective online-dpo does not use mask_truncated_completions" },
        { "online-dpo", o => o with { LabelSmoothing = 0.1 }, "objective online-dpo does not use label_smoothing" },
        { "online-dpo", o => o with { PrecomputeRefLogProbs = true }, "objective online-dpo does not use precompute_ref_log_probs" },
        { "online-dpo", o => o with { Beta = 0.1, BetaPerEpoch = [0.1, 0.2] }, "beta (--beta) and beta_per_epoch (--beta-per-epoch) are both given" },
        { "online-dpo", o => o with { BetaPerEpoch = [0.1, 0] }, "beta_per_epoch (--beta-per-epoch) must be positive, found 0" },
        { "online-dpo", o => o with { MissingEosPenalty = -1 }, "missing_eos_penalty (--missing-eos-penalty) must be a number of at least 0" },
        { "online-dpo", o => o with { MicroBatchSize = 3 }, "micro_batch_size (--batch-size) = 3 is odd" },
        { "dpo", o => o with { MissingEosPenalty = 1 }, "missing_eos_penalty (--missing-eos-penalty): only objective online-dpo uses it, and the objective is dpo" },
        { "grpo", o => o with { BetaPerEpoch = [0.1] }, "beta_per_epoch (--beta-per-epoch): only objective online-dpo uses it, and the objective is grpo" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void SettingsTheOtherSideWouldIgnoreAreRefusedByName(string objective, Func<TrainingOptions, TrainingOptions> set, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(set(Run(objective))));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void TheExampleConfigIsAValidOnlineDpoRun()
    {
        var example = TrainingConfigFile.Load(Path.Combine(SharpTune.Tests.Support.TestAssets.RepoRoot, "examples", "online-dpo.yaml"));
        FineTuneJob.Validate(example);
        var settings = GrpoSettings.From(example);
        Assert.Equal("online DPO", settings.Name);
        Assert.Equal([0.1], settings.OnlineDpo!.Betas);
        Assert.Equal(1.0, settings.OnlineDpo.MissingEosPenalty);
        Assert.Equal(["exact=0.5", "chrf=0.5"], example.Rewards!);
    }

    [Fact]
    public void BetaPerEpochAndTheEosPenaltyRoundTripThroughYaml()
    {
        using var dir = new SharpTune.Tests.Support.TempDir();
        var path = dir.File("config.yaml");
        File.WriteAllText(path, "objective: online-dpo\nbeta_per_epoch: [0.2, 0.1]\nmissing_eos_penalty: 0.5\n");
        var loaded = TrainingConfigFile.Load(path);
        Assert.Equal([0.2, 0.1], loaded.BetaPerEpoch);
        Assert.Equal(0.5, loaded.MissingEosPenalty);
        TrainingConfigFile.Save(loaded, path);
        Assert.Equal([0.2, 0.1], TrainingConfigFile.Load(path).BetaPerEpoch);
        Assert.Equal([0.2, 0.1], GrpoSettings.From(loaded).OnlineDpo!.Betas);
    }

    [Fact]
    public void OnlineDpoIsAnObjectiveWithTrlsDropoutDefault()
    {
        Assert.Contains("online-dpo", FineTuneJob.Objectives);
        FineTuneJob.Validate(Run("online-dpo") with { MissingEosPenalty = 1, LossType = "ipo", MicroBatchSize = 4 });
        Assert.True(Run("online-dpo").DropoutDisabled());   // OnlineDPOConfig.disable_dropout defaults to True
    }
}
