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
        // TRL's OnlineDPOConfig max_new_tokens 64 limits the sampled completions (and the length reward).
        Assert.Equal(64, defaults.Sampling(1, [2]).MaxNewTokens);
        var given = GrpoSettings.From(new TrainingOptions { Objective = "online-dpo", MaxNewTokens = 24, NumGenerations = 2 });
        Assert.Equal(24, given.Sampling(1, [2]).MaxNewTokens);   // num_generations 2, the pair, is accepted
        Assert.Equal(24, GrpoSettings.MaxCompletionTokens(new TrainingOptions { Objective = "online-dpo", MaxNewTokens = 24 }));
        Assert.Equal(512, GrpoSettings.MaxCompletionTokens(new TrainingOptions { Objective = "grpo" }));
    }

    /// <summary>
    /// Gradient accumulation splits a batch, not its gradient: the same two pairs in one micro-batch (accumulation 1) or in
    /// two (accumulation 2, each loss divided by their count as accelerate scales it) give the gradient of the loss averaged
    /// over both pairs, computed here pair by pair from unbatched, unpadded forward passes.
    /// </summary>
    [Theory]
    [InlineData("sigmoid")]
    [InlineData("ipo")]
    public void GradientAccumulationGivesTheWholeBatchsGradient(string lossType)
    {
        using var model = SharpTune.Tests.Support.TestModels.Create("llama", seed: 7);
        model.eval();
        const double beta = 0.1;
        var type = lossType == "ipo" ? DpoLossType.Ipo : DpoLossType.Sigmoid;
        var settings = new OnlineDpoSettings([beta], type);
        // Two prompts, two completions each (unequal lengths, so a micro-batch pads); the score picks the pair's chosen one.
        GrpoRow[] rows =
        [
            new([1, 5, 9], [12, 40, 2], false, 0.5, null, [-4.5f, -3.25f, -5.0f]),
            new([1, 5, 9], [30, 2], false, 1.5, null, [-6.0f, -2.5f]),
            new([1, 7], [11, 12, 13, 14], true, 0.25, null, [-5.5f, -4.0f, -6.25f, -4.75f]),
            new([1, 7], [50, 2], false, -1.0, null, [-3.0f, -5.5f]),
        ];
        var whole = OnlineDpoUpdate.Optimise(model, rows, settings, beta, microBatchSize: 4);
        var wholeGradients = GrpoGradientTests.Gradients(model);
        var halves = OnlineDpoUpdate.Optimise(model, rows, settings, beta, microBatchSize: 2);
        var halvesGradients = GrpoGradientTests.Gradients(model);

        // By hand: x_p = (Σ log π(c) − Σ log π(r)) − (Σ ref(c) − Σ ref(r)); loss = mean over the 2 pairs.
        double expectedLoss = 0;
        foreach (var (c, r) in new[] { (1, 0), (2, 3) })
        {
            using var scope = NewDisposeScope();
            Tensor Sum(GrpoRow row)
            {
                int[] sequence = [.. row.PromptIds, .. row.CompletionIds];
                var logits = model.Forward(tensor(sequence.Select(t => (long)t).ToArray()).unsqueeze(0)).squeeze(0).to(ScalarType.Float64);
                var logSoftmax = logits - logits.exp().sum(-1, keepdim: true).log();
                var sum = zeros(1, dtype: ScalarType.Float64).sum();
                for (var k = 0; k < row.CompletionIds.Length; k++) sum = sum + logSoftmax[row.PromptIds.Length + k - 1, row.CompletionIds[k]];
                return sum;
            }
            var x = Sum(rows[c]) - Sum(rows[r]) - (rows[c].ReferenceLogProbs!.Sum(v => (double)v) - rows[r].ReferenceLogProbs!.Sum(v => (double)v));
            var loss = type == DpoLossType.Sigmoid ? (1 + (-beta * x).exp()).log() : (x - 1 / (2 * beta)).pow(2);
            expectedLoss += loss.item<double>() / 2;
            (loss / 2).backward();
        }
        var expected = GrpoGradientTests.Gradients(model);

        Assert.Equal(expectedLoss, whole.Loss, 4);
        Assert.Equal(expectedLoss, halves.Loss, 4);
        Assert.Equal(2, whole.Pairs.Length);
        Assert.Equal(expected.Keys.Order(), halvesGradients.Keys.Order());
        var largest = expected.Values.Max(g => g.Max(Math.Abs));
        Assert.True(largest > 1e-4, "the test needs a gradient that is not ~0");
        foreach (var (name, value) in expected)
            for (var i = 0; i < value.Length; i++)
            {
                Assert.True(Math.Abs(value[i] - wholeGradients[name][i]) <= 2e-5 * largest + 1e-7,
                    $"{name}[{i}]: by hand {value[i]}, one micro-batch {wholeGradients[name][i]}");
                Assert.True(Math.Abs(value[i] - halvesGradients[name][i]) <= 2e-5 * largest + 1e-7,
                    $"{name}[{i}]: by hand {value[i]}, two micro-batches {halvesGradients[name][i]}");
            }
    }

    private static TrainingOptions Run(string objective) => new() { Objective = objective, Model = "m", Data = "d.jsonl" };

    public static TheoryData<string, Func<TrainingOptions, TrainingOptions>, string> Refused => new()
    {
        { "online-dpo", o => o with { NumGenerations = 4 }, "num_generations (--num-generations) = 4: online DPO always samples 2 completions per prompt" },
        { "online-dpo", o => o with { NumGenerations = 8 }, "num_generations (--num-generations) = 8: online DPO always samples 2 completions per prompt" },
        { "online-dpo", o => o with { MaxCompletionLength = 128 }, "objective online-dpo does not use max_completion_length (--max-completion-length): online DPO's completion limit is max_new_tokens (--max-new-tokens)" },
        { "online-dpo", o => o with { MaxNewTokens = 0 }, "max_new_tokens (--max-new-tokens) must be at least 1, found 0" },
        { "sft", o => o with { MaxNewTokens = 64 }, "max_new_tokens (--max-new-tokens): only objective gkd or online-dpo uses it, and the objective is sft" },
        { "rloo", o => o with { MaxNewTokens = 64 }, "max_new_tokens (--max-new-tokens): only objective gkd or online-dpo uses it, and the objective is rloo" },
        { "dpo", o => o with { MaxNewTokens = 64, Teacher = "t" }, "teacher (--teacher): only objective gkd uses it, and the objective is dpo" },
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
        Assert.Equal(8, settings.Sampling(1, [2]).MaxNewTokens);   // its max_new_tokens
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
