using System.Text.Json.Nodes;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Rewards;
using static SharpTune.Tests.Training.GrpoJobTests;

namespace SharpTune.Tests.Training;

/// <summary>
/// `objective: online-dpo` end to end on the real stories260K model, on GRPO's test set-up (prompts, rewards): the pairs
/// written to completions.jsonl, TRL's metrics recomputed from them, the reference (the adapter disabled), β per epoch,
/// exact resume, and the CLI (a short run whose mean reward rises). Ported in spirit from TRL's
/// tests/experimental/test_online_dpo_trainer.py (huggingface/trl@f2cd577): test_training_with_reward_funcs.
/// </summary>
public class OnlineDpoJobTests
{
    /// <summary>GRPO's test run as online DPO: its completion limit (8) is max_new_tokens here, max_completion_length left at its default.</summary>
    private static TrainingOptions OnlineDpo(TempDir dir, string output = "run") =>
        Options(dir, output) with { Objective = "online-dpo", NumGenerations = null, MaxCompletionLength = new TrainingOptions().MaxCompletionLength, MaxNewTokens = 8 };

    /// <summary>
    /// A copy of stories260K whose config ends a completion at BOS: llama2.c's stories end there (run.c stops at it), not at
    /// EOS, so sampled completions end early only with this stop token.
    /// </summary>
    private static string StoriesEndingAtBos(TempDir dir)
    {
        var model = Directory.CreateDirectory(dir.File("model")).FullName;
        foreach (var file in Directory.GetFiles(TestAssets.Stories260K)) File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;
        config["eos_token_id"] = 1;
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        return model;
    }

    private static double D(JsonNode? node) => node!.GetValue<double>();

    [SharedAssetFact("models/stories260K")]
    public void TheLoggedMetricsAreTrlsOverTheLoggedPairs()
    {
        using var dir = new TempDir();
        // A copy ending completions at BOS ends some early, so missing_eos_penalty lowers only some scores. The adapter starts
        // away from the base (PEFT's init_lora_weights false), so the policy differs from the reference from the first step.
        var model = StoriesEndingAtBos(dir);
        const double penalty = 0.3;
        var log = new List<string>();
        // 12 prompts, 4 per step (4 completions × 2 micro-batches): steps 1–3 are epoch 0 (β 0.2), step 4 epoch 1 (β 0.1).
        var options = OnlineDpo(dir) with { Model = model, MaxNewTokens = 16, Temperature = 1.0, InitLoraWeights = "false", LearningRate = 5e-2, MissingEosPenalty = penalty, BetaPerEpoch = [0.2, 0.1] };
        var result = FineTuneJob.Run(options, log: log.Add, rewards: Custom(new LetterReward()));
        Assert.Contains(log, l => l.Contains("online DPO reference: the base model (adapter disabled)"));
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        var lines = File.ReadAllLines(Path.Combine(options.Output, "completions.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(4, records.Count);
        var eosSeen = new HashSet<bool>();
        for (var step = 1; step <= 4; step++)
        {
            var record = records[step - 1];
            var beta = step <= 3 ? 0.2 : 0.1;
            Assert.Equal(beta, D(record["beta"]));
            var pairs = lines.Where(l => l["step"]!.GetValue<int>() == step).ToArray();
            Assert.Equal(4, pairs.Length);
            var completions = pairs.SelectMany(p => new[] { p["chosen"]!, p["rejected"]! }).ToArray();
            foreach (var c in completions)
            {
                // The score: 0.5 · regex + letters, less the penalty without EOS.
                var eos = c["contains_eos"]!.GetValue<bool>();
                eosSeen.Add(eos);
                var expected = 0.5 * D(c["rewards"]!["regex"]) + D(c["rewards"]!["letters"]) - (eos ? 0 : penalty);
                Assert.Equal(expected, D(c["score"]), 12);
            }
            foreach (var p in pairs) Assert.True(D(p["chosen"]!["score"]) >= D(p["rejected"]!["score"]));

            // TRL's stats over the step's pairs (equal micro-batches: their mean of means is the plain mean).
            double Mean(IEnumerable<double> values) => values.Average();
            var kl = Mean(completions.Select(c => D(c["logps"]) - D(c["ref_logps"])));
            var scores = Mean(completions.Select(c => D(c["score"])));
            var chosen = pairs.Select(p => beta * (D(p["chosen"]!["logps"]) - D(p["chosen"]!["ref_logps"]))).ToArray();
            var rejected = pairs.Select(p => beta * (D(p["rejected"]!["logps"]) - D(p["rejected"]!["ref_logps"]))).ToArray();
            var margins = chosen.Zip(rejected, (c, r) => c - r).ToArray();
            var expectedMetrics = new Dictionary<string, double>
            {
                ["objective/kl"] = kl,
                ["objective/entropy"] = -Mean(completions.Select(c => D(c["logps"]))),
                ["objective/non_score_reward"] = -beta * kl,
                ["objective/rlhf_reward"] = scores - beta * kl,
                ["objective/scores"] = scores,
                ["objective/scores_margin"] = Mean(pairs.Select(p => D(p["chosen"]!["score"]) - D(p["rejected"]!["score"]))),
                ["rewards/chosen"] = chosen.Average(),
                ["rewards/rejected"] = rejected.Average(),
                ["rewards/margins"] = margins.Average(),
                ["rewards/accuracies"] = margins.Count(m => m > 0) / (double)margins.Length,
                ["logps/chosen"] = Mean(pairs.Select(p => D(p["chosen"]!["logps"]))),
                ["logps/rejected"] = Mean(pairs.Select(p => D(p["rejected"]!["logps"]))),
                ["val/contain_eos_token"] = completions.Count(c => c["contains_eos"]!.GetValue<bool>()) / (double)completions.Length,
                ["reward"] = scores,
            };
            foreach (var (key, value) in expectedMetrics) Assert.True(Math.Abs(value - D(record[key])) < 1e-9, $"step {step} {key}: {value} vs {record[key]}");
            // The sigmoid loss −log σ(β·x) averaged over the pairs, x the margin over β.
            var loss = margins.Average(m => Math.Log(1 + Math.Exp(-m)));
            Assert.Equal(loss, D(record["loss"]), 4);
        }
        // The reference is the base (adapter off), not the policy: with the adapter away from the base they differ from step 1.
        Assert.True(Math.Abs(D(records[0]["objective/kl"])) > 1e-3, $"kl {records[0]["objective/kl"]}");
        Assert.True(eosSeen.Count == 2, $"EOS seen: {string.Join(", ", eosSeen)}; lengths: {string.Join(",", lines.SelectMany(l => new[] { l["chosen"]!["completion"]!.GetValue<string>().Length, l["rejected"]!["completion"]!.GetValue<string>().Length }))}");   // both ended and cut completions, so the penalty was exercised
        // TRL's test: the trainable parameters changed.
        AdapterAssertions.LoraTrained(result.FinalDirectory);
    }

    /// <summary>Records each scored sample's completion ids (completions.jsonl holds the text) and scores as <see cref="LetterReward"/>.</summary>
    private sealed class RecordingLetterReward : PerSampleReward
    {
        private readonly LetterReward letters = new();
        public Dictionary<(string Prompt, string Completion), HashSet<string>> Ids { get; } = [];
        public override string Name => letters.Name;
        public override double? Score(RewardSample sample)
        {
            Assert.Equal(sample.CompletionTokens, sample.CompletionIds.Count);
            if (!Ids.TryGetValue((sample.Prompt, sample.Completion), out var ids)) Ids[(sample.Prompt, sample.Completion)] = ids = [];
            ids.Add(string.Join(",", sample.CompletionIds));
            return letters.Score(sample);
        }
    }

    /// <summary>
    /// Σ_k log p(completion_k | prompt, completion_&lt;k) from one unbatched, unpadded forward pass at temperature 1, with
    /// a hand-written log-softmax in float64.
    /// </summary>
    private static double SummedLogProbs(SharpTune.Models.CausalLanguageModel model, IReadOnlyList<int> prompt, IReadOnlyList<int> completion)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var noGrad = TorchSharp.torch.no_grad();
        var sequence = prompt.Concat(completion).Select(t => (long)t).ToArray();
        var logits = model.Forward(TorchSharp.torch.tensor(sequence).unsqueeze(0)).squeeze(0).to(TorchSharp.torch.ScalarType.Float64);
        var logSoftmax = logits - logits.exp().sum(-1, keepdim: true).log();
        var sum = 0.0;
        for (var k = 0; k < completion.Count; k++) sum += logSoftmax[prompt.Count + k - 1, completion[k]].item<double>();
        return sum;
    }

    [SharedAssetFact("models/stories260K")]
    public void TheLoggedLogProbsAreEachCompletionScoredAloneAtTemperatureOne()
    {
        using var dir = new TempDir();
        var model = StoriesEndingAtBos(dir);
        // Sampled at 0.9, scored at 1 (TRL's _forward divides no logits). Two micro-batches of unequal lengths per step. The
        // adapter starts away from the base (init_lora_weights false), which ends some completions within 16 tokens.
        var options = OnlineDpo(dir) with { Model = model, MaxNewTokens = 16, Temperature = 0.9, MaxSteps = 2, InitLoraWeights = "false" };
        var recorder = new RecordingLetterReward();
        FineTuneJob.Run(options, rewards: Custom(recorder));
        // The same run stopped after step 1: its final adapter is the policy that step 2 sampled and scored with.
        var afterStep1 = options with { Output = dir.File("run-1"), MaxSteps = 1 };
        FineTuneJob.Run(afterStep1, rewards: Custom(new LetterReward()));

        using var reference = SharpTune.Generation.LoadedModel.Load(model);
        using var policy = SharpTune.Generation.LoadedModel.Load(model, Path.Combine(afterStep1.Output, "final"));
        reference.Model.eval();
        policy.Model.eval();
        var tokenizer = reference.RequireTokenizer();
        var lines = File.ReadAllLines(Path.Combine(options.Output, "completions.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        var checkedEos = new HashSet<bool>();
        foreach (var line in lines)
        {
            var step = line["step"]!.GetValue<int>();
            var prompt = line["prompt"]!.GetValue<string>();
            // A plain-text prompt: BOS, then its text (GRPO's tokenization, which online DPO shares).
            int[] promptIds = [tokenizer.BosTokenId!.Value, .. tokenizer.Encode(prompt, addSpecialTokens: false)];
            foreach (var side in new[] { "chosen", "rejected" })
            {
                var c = line[side]!;
                var text = c["completion"]!.GetValue<string>();
                var eos = c["contains_eos"]!.GetValue<bool>();
                // The sampled ids (the text need not re-encode to them); one that ended did so at its stop token, BOS here.
                var sampled = Assert.Single(recorder.Ids[(prompt, text)]);
                var ids = sampled.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
                Assert.Equal(eos, ids.Length > 0 && ids[^1] is 1 or 2);   // BOS (the config's eos_token_id) or the tokenizer's EOS
                // The reference is always the base (adapter disabled); step 2's policy is the adapter after step 1.
                var referenceLogProbs = SummedLogProbs(reference.Model, promptIds, ids);
                Assert.True(Math.Abs(referenceLogProbs - D(c["ref_logps"])) <= 1e-4 * Math.Abs(referenceLogProbs) + 1e-4,
                    $"step {step} {side} '{text}': ref_logps {c["ref_logps"]}, scored alone {referenceLogProbs}");
                if (step != 2) continue;
                checkedEos.Add(eos);
                var policyLogProbs = SummedLogProbs(policy.Model, promptIds, ids);
                Assert.True(Math.Abs(policyLogProbs - D(c["logps"])) <= 1e-4 * Math.Abs(policyLogProbs) + 1e-4,
                    $"step {step} {side} '{text}': logps {c["logps"]}, scored alone {policyLogProbs}");
                Assert.True(Math.Abs(policyLogProbs - referenceLogProbs) > 1e-3, $"step 2 '{text}': the policy scores as the base");
            }
        }
        Assert.Equal(2 * 4, lines.Length);
        // Completions that ended (their stop token summed) and completions that were cut.
        Assert.True(checkedEos.Count == 2, $"only completions with contains_eos {string.Join(", ", checkedEos)}");
    }

    [SharedAssetFact("models/stories260K")]
    public void FullFineTuningComparesAgainstAFrozenCopy()
    {
        using var dir = new TempDir();
        var log = new List<string>();
        var options = OnlineDpo(dir) with { Method = "full", LearningRate = 1e-3, MaxSteps = 1, LossType = "ipo" };
        FineTuneJob.Run(options, log: log.Add, rewards: Custom(new LetterReward()));
        Assert.Contains(log, l => l.Contains("online DPO reference: a frozen copy of the base model"));
        var record = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"))[0];
        Assert.Equal(0, record["objective/kl"]!.GetValue<double>(), 4);   // the policy starts as the copy
        Assert.Equal(1 / (2 * 0.1) * (1 / (2 * 0.1)), record["loss"]!.GetValue<double>(), 2);   // IPO at x = 0: (1/(2β))²
    }

    [SharedAssetFact("models/stories260K")]
    public void AnInterruptedRunResumesExactly()
    {
        using var dir = new TempDir();
        AssertAnInterruptedRunResumesExactly(dir, OnlineDpo(dir),
            "loss", "reward", "grad_norm", "objective/kl", "rewards/margins", "logps/chosen", "logps/rejected", "completions/mean_length");
    }

    [SharedAssetFact("models/stories260K")]
    public void TheCliTrainsOnlineDpoAndTheMeanRewardRises()
    {
        using var dir = new TempDir();
        var output = dir.File("run");
        var run = SharpTuneCli.Run("train", "--objective", "online-dpo", "--model", TestAssets.Stories260K,
            "--data", WritePrompts(dir.File("prompts.jsonl"), 12), "--output", output, "--method", "lora", "--lr", "2e-2",
            "--batch-size", "8", "--grad-accum", "1", "--max-new-tokens", "8", "--max-steps", "12",
            "--reward", "regex", "--reward-pattern", "was", "--beta", "0.1", "--seed", "5");
        SharpTuneCli.Ok(run, "train --objective online-dpo");
        var saved = TrainingConfigFile.Load(Path.Combine(output, "config.yaml"));
        Assert.Equal("online-dpo", saved.Objective);
        // Before any update (lora_B = 0) the policy is the reference, the base with the adapter off: equal summed log-probs
        // (up to float32 summation).
        var firstStep = File.ReadAllLines(Path.Combine(output, "completions.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(l => l["step"]!.GetValue<int>() == 1).SelectMany(p => new[] { p["chosen"]!, p["rejected"]! }).ToArray();
        Assert.Equal(8, firstStep.Length);
        foreach (var c in firstStep)
            Assert.True(Math.Abs(D(c["ref_logps"]) - D(c["logps"])) <= 1e-6 * Math.Abs(D(c["logps"])) + 1e-5, $"{c["logps"]} vs {c["ref_logps"]}");
        var records = MetricsLog.ReadAll(Path.Combine(output, "metrics.jsonl"));
        Assert.Equal(12, records.Count);
        var rewards = records.Select(r => r["objective/scores"]!.GetValue<double>()).ToArray();
        var first = rewards.Take(4).Average();
        var last = rewards.TakeLast(4).Average();
        Assert.True(last > first + 0.1, $"mean reward {first:F3} over the first 4 steps, {last:F3} over the last 4: [{string.Join(", ", rewards.Select(r => r.ToString("F3")))}]");
    }

    [Fact]
    public void TheCliRefusesSettingsOnlineDpoWouldIgnore()
    {
        var run = SharpTuneCli.Run("train", "--objective", "dpo", "--model", "m", "--data", "d.jsonl", "--missing-eos-penalty", "1");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("missing_eos_penalty (--missing-eos-penalty): only objective online-dpo uses it", run.Stderr + run.Stdout);
        run = SharpTuneCli.Run("train", "--objective", "online-dpo", "--model", "m", "--data", "d.jsonl", "--loss-type", "robust");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("must be sigmoid or ipo", run.Stderr + run.Stdout);
        run = SharpTuneCli.Run("train", "--objective", "online-dpo", "--model", "m", "--data", "d.jsonl", "--beta-per-epoch", "0.1,x");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("--beta-per-epoch takes numbers separated by commas", run.Stderr + run.Stdout);
    }
}
