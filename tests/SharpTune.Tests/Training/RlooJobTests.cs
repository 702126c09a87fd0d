using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using static SharpTune.Tests.Training.GrpoJobTests;

namespace SharpTune.Tests.Training;

/// <summary>
/// `objective: rloo` end to end on the real stories260K model, on GRPO's test set-up (prompts, rewards): TRL's metrics,
/// parameters that move, the reference only when β ≠ 0, exact resume, and the CLI (a short run whose mean reward rises).
/// Ported in spirit from TRL's tests/test_rloo_trainer.py (huggingface/trl@f2cd577): test_training (parameters change),
/// test_training_beta_zero and test_training_with_mask_truncated_completions.
/// </summary>
public class RlooJobTests
{
    private static TrainingOptions Rloo(TempDir dir, string output = "run") => Options(dir, output) with { Objective = "rloo" };

    [SharedAssetFact("models/stories260K")]
    public void RlooLogsTrlsMetricsAndTheAdapterTrains()
    {
        using var dir = new TempDir();
        var log = new List<string>();
        var options = Rloo(dir) with { MaxSteps = 2, NumIterations = 2, EpsilonHigh = 0.28 };
        var result = FineTuneJob.Run(options, log: log.Add, rewards: Custom(new LetterReward()));
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        Assert.Equal(2, records.Count);
        foreach (var key in new[] { "loss", "reward", "reward_std", "frac_reward_zero_std", "rewards/regex/mean", "rewards/letters/mean", "kl",
                     "entropy", "clip_ratio/low_mean", "clip_ratio/low_min", "clip_ratio/high_mean", "clip_ratio/high_max", "clip_ratio/region_mean",
                     "completions/mean_length", "completions/clipped_ratio", "time/generation_s" })
            Assert.True(records[^1].ContainsKey(key), key);
        // The reference is the base with the adapter disabled; before any update (lora_B = 0) the sampling policy is the
        // base itself, so the KL taken into the rewards is 0. μ = 2: both steps share the generation batch (and its KL).
        Assert.Contains(log, l => l.Contains("RLOO reference: the base model (adapter disabled)"));
        Assert.Equal(0, records[0]["kl"]!.GetValue<double>(), 6);
        Assert.Equal(records[0]["reward"]!.GetValue<double>(), records[1]["reward"]!.GetValue<double>());
        Assert.Equal(0.5 * records[0]["rewards/regex/mean"]!.GetValue<double>() + records[0]["rewards/letters/mean"]!.GetValue<double>(),
            records[0]["reward"]!.GetValue<double>(), 9);
        // TRL's test_training: the trainable parameters changed.
        AdapterAssertions.LoraTrained(result.FinalDirectory);
    }

    [SharedAssetFact("models/stories260K")]
    public void BetaZeroLoadsNoReferenceAndLogsNoKl()
    {
        using var dir = new TempDir();
        var log = new List<string>();
        var options = Rloo(dir) with { Method = "full", LearningRate = 1e-3, MaxSteps = 1, Beta = 0 };
        FineTuneJob.Run(options, log: log.Add, rewards: Custom(new LetterReward()));
        Assert.DoesNotContain(log, l => l.Contains("reference"));
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        Assert.False(records[0].ContainsKey("kl"));

        // Full fine-tuning with β ≠ 0 compares against a frozen copy of the base.
        log.Clear();
        FineTuneJob.Run(options with { Output = dir.File("beta"), Beta = 0.05 }, log: log.Add, rewards: Custom(new LetterReward()));
        Assert.Contains(log, l => l.Contains("RLOO reference: a frozen copy of the base model"));
        Assert.True(MetricsLog.ReadAll(Path.Combine(dir.File("beta"), "metrics.jsonl"))[0].ContainsKey("kl"));
    }

    [SharedAssetFact("models/stories260K")]
    public void MaskedTruncatedCompletionsCarryNoKlAndNoGradient()
    {
        // Completions of at most 2 tokens are all cut (stories260K does not stop that soon). The adapter starts away from
        // the base (init_lora_weights false), so the policy's KL to the reference is not 0 — until every completion is
        // masked: then the KL sum is empty (0) and the loss has no gradient.
        using var dir = new TempDir();
        var options = Rloo(dir) with { MaxSteps = 1, MaxCompletionLength = 2, InitLoraWeights = "false" };
        FineTuneJob.Run(options, rewards: Custom(new LetterReward()));
        var unmasked = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"))[0];
        Assert.Equal(1.0, unmasked["completions/clipped_ratio"]!.GetValue<double>());
        Assert.NotEqual(0.0, unmasked["kl"]!.GetValue<double>());
        Assert.NotEqual(0.0, unmasked["grad_norm"]!.GetValue<double>());

        var masked = options with { Output = dir.File("masked"), MaskTruncatedCompletions = true };
        FineTuneJob.Run(masked, rewards: Custom(new LetterReward()));
        var record = MetricsLog.ReadAll(Path.Combine(masked.Output, "metrics.jsonl"))[0];
        Assert.Equal(1.0, record["completions/clipped_ratio"]!.GetValue<double>());
        Assert.Equal(0.0, record["kl"]!.GetValue<double>());
        Assert.Equal(0.0, record["grad_norm"]!.GetValue<double>());
        Assert.All(File.ReadAllLines(Path.Combine(masked.Output, "completions.jsonl")),
            line => Assert.Equal(0.0, System.Text.Json.Nodes.JsonNode.Parse(line)!["kl"]!.GetValue<double>()));
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData(false, null, null)]
    [InlineData(true, 0.25, 0.75)]
    public void LoggedAdvantagesAreLeaveOneOutOfTheClippedKlPenalisedRewards(bool normalize, double? clipMin, double? clipMax)
    {
        // Three generations (μ = 1) from an adapter that starts away from the base (PEFT's init_lora_weights false: B is
        // random), so the policy differs from the reference (the base, adapter disabled) and every generation's KL reaches
        // the rewards. Completions of up to maxLength tokens end either way (mixed truncation), and the truncated ones
        // are masked. Each logged advantage is recomputed here from the logged rewards and per-completion KLs: clip,
        // − β·KL, leave-one-out per group, then (normalize) over the batch.
        const double beta = 0.5;
        const int maxLength = 16, g = 4;
        using var dir = new TempDir();
        // stories260K ends a story with BOS (llama2.c's run.c stops there), not EOS: a copy whose config says so ends some completions early.
        var model = Directory.CreateDirectory(dir.File("model")).FullName;
        foreach (var file in Directory.GetFiles(TestAssets.Stories260K)) File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;
        config["eos_token_id"] = 1;
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        var options = Rloo(dir) with
        {
            Model = model, MaxSteps = 3, InitLoraWeights = "false", Beta = beta, MaxCompletionLength = maxLength, MaskTruncatedCompletions = true, NormalizeAdvantages = normalize,
            RewardClipRange = clipMin is null ? null : [clipMin.Value, clipMax!.Value], LearningRate = 5e-2,
        };
        FineTuneJob.Run(options, rewards: Custom(new LetterReward()));
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        var lines = File.ReadAllLines(Path.Combine(options.Output, "completions.jsonl")).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!).ToArray();
        var clipBit = false;
        var endedKl = false;
        for (var step = 1; step <= 3; step++)
        {
            var rows = lines.Where(l => l["step"]!.GetValue<int>() == step).ToArray();
            Assert.Equal(8, rows.Length);
            var truncated = rows.Select(r => r["truncated"]!.GetValue<bool>()).ToArray();
            var kl = rows.Select(r => r["kl"]!.GetValue<double>()).ToArray();
            var raw = rows.Select(r => r["reward"]!.GetValue<double>()).ToArray();
            for (var i = 0; i < rows.Length; i++)
                if (truncated[i]) Assert.Equal(0.0, kl[i]);   // masked: no KL in its reward
            endedKl |= kl.Where((_, i) => !truncated[i]).Any(v => Math.Abs(v) > 1e-4);

            var penalised = raw.Select((r, i) => (clipMin is null ? r : Math.Clamp(r, clipMin.Value, clipMax!.Value)) - beta * kl[i]).ToArray();
            clipBit |= clipMin is not null && raw.Any(r => r < clipMin || r > clipMax);
            var expected = new double[rows.Length];
            for (var i = 0; i < rows.Length; i++)
            {
                var group = penalised.Skip(i / g * g).Take(g).ToArray();
                expected[i] = penalised[i] - (group.Sum() - penalised[i]) / (g - 1);
            }
            if (normalize)
            {
                var mean = expected.Average();
                var std = Math.Sqrt(expected.Sum(a => (a - mean) * (a - mean)) / (expected.Length - 1));
                expected = expected.Select(a => (a - mean) / (std + 1e-4)).ToArray();
            }
            for (var i = 0; i < rows.Length; i++) Assert.Equal(expected[i], rows[i]["advantage"]!.GetValue<double>(), 9);

            // The logged kl is the batch's KL per unmasked token: Σ KL / (their token count), a whole number of tokens,
            // between 1 and maxLength − 1 per unmasked completion (an ended one is shorter than the cut).
            var metric = records[step - 1]["kl"]!.GetValue<double>();
            if (metric != 0)
            {
                var tokens = kl.Sum() / metric;
                Assert.Equal(Math.Round(tokens), tokens, 3);
                var unmasked = truncated.Count(t => !t);
                Assert.InRange(tokens, unmasked, unmasked * maxLength);
            }
            else Assert.All(kl, v => Assert.Equal(0.0, v, 9));
        }
        Assert.True(endedKl, "an ended (unmasked) completion should carry a non-zero KL");
        Assert.Equal(clipMin is not null, clipBit);
        var clipped = lines.Select(l => l["truncated"]!.GetValue<bool>()).ToArray();
        Assert.True(clipped.Any(t => t) && clipped.Any(t => !t), "the run should have both truncated and ended completions");
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData(1)]
    [InlineData(2)]
    public void AnInterruptedRunResumesExactly(int numIterations)
    {
        using var dir = new TempDir();
        AssertAnInterruptedRunResumesExactly(dir, Rloo(dir) with { NumIterations = numIterations },
            "loss", "reward", "kl", "grad_norm", "entropy", "clip_ratio/region_mean", "completions/mean_length");
    }

    [SharedAssetFact("models/stories260K")]
    public void TheCliTrainsRlooAndTheMeanRewardRises()
    {
        using var dir = new TempDir();
        var output = dir.File("run");
        var run = SharpTuneCli.Run("train", "--objective", "rloo", "--model", TestAssets.Stories260K,
            "--data", WritePrompts(dir.File("prompts.jsonl"), 12), "--output", output, "--method", "lora", "--lr", "2e-2",
            "--batch-size", "8", "--grad-accum", "1", "--num-generations", "4", "--max-completion-length", "8", "--max-steps", "12",
            "--reward", "regex", "--reward-pattern", "was", "--normalize-advantages", "true", "--reward-clip-range", "0,1", "--seed", "5");
        SharpTuneCli.Ok(run, "train --objective rloo");
        var saved = TrainingConfigFile.Load(Path.Combine(output, "config.yaml"));
        Assert.Equal("rloo", saved.Objective);
        Assert.True(saved.NormalizeAdvantages);
        Assert.Equal([0.0, 1.0], saved.RewardClipRange);
        var rewards = MetricsLog.ReadAll(Path.Combine(output, "metrics.jsonl")).Select(r => r["reward"]!.GetValue<double>()).ToArray();
        Assert.Equal(12, rewards.Length);
        var first = rewards.Take(4).Average();
        var last = rewards.TakeLast(4).Average();
        Assert.True(last > first + 0.1, $"mean reward {first:F3} over the first 4 steps, {last:F3} over the last 4: [{string.Join(", ", rewards.Select(r => r.ToString("F3")))}]");
        // The progress lines report the mean reward.
        Assert.Contains($"reward {rewards[^1].ToString("F3", System.Globalization.CultureInfo.InvariantCulture)}", run.Stderr + run.Stdout);
    }

    [Fact]
    public void TheCliRefusesSettingsRlooWouldIgnore()
    {
        var run = SharpTuneCli.Run("train", "--objective", "grpo", "--model", "m", "--data", "d.jsonl", "--normalize-advantages", "true");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("normalize_advantages", run.Stderr + run.Stdout);
        run = SharpTuneCli.Run("train", "--objective", "rloo", "--model", "m", "--data", "d.jsonl", "--reward-clip-range", "1");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("--reward-clip-range", run.Stderr + run.Stdout);
    }
}
