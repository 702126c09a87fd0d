using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Tracking;
using SharpTune.Training.Objectives;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// GRPO's training loop, as TRL's GRPOTrainer, and RLOO's (TRL's RLOOTrainer runs the same loop with its own advantages
/// and loss, <see cref="GrpoSettings.Rloo"/>): every μ optimizer steps, take the next prompts (an epoch-seeded
/// permutation, as the SFT trainer), sample G completions each, score and normalise them; then each step makes one
/// pass over that batch, shuffled once and cut into gradient_accumulation micro-batches, with TRL's clipped surrogate
/// loss. Sampling seeds, the shuffle and dropout masks are pure functions of the step, and a checkpoint taken between
/// the μ passes carries its generation batch, so resuming replays exactly the uninterrupted run. Online DPO (TRL's
/// OnlineDPOTrainer, <see cref="GrpoSettings.OnlineDpo"/>) runs the same loop with two completions per prompt, μ = 1, and
/// the DPO loss on each prompt's chosen and rejected completion (<see cref="OnlineDpoUpdate"/>).
/// </summary>
public sealed class GrpoTrainer(CausalLanguageModel model, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
    TrainingOptions options, GrpoSettings settings, GrpoRolloutMaker rollouts, Action<string> saveModel)
{
    private int PromptsPerGeneration => options.MicroBatchSize * options.GradientAccumulation / settings.NumGenerations;

    /// <summary>Optimizer steps for <paramref name="promptCount"/> prompts: max_steps, or epochs × generation batches × μ.</summary>
    public int TotalSteps(int promptCount) => options.MaxSteps > 0
        ? options.MaxSteps
        : Math.Max(1, (int)Math.Ceiling((double)options.Epochs * promptCount / PromptsPerGeneration)) * settings.NumIterations;

    public TrainingResult Train(IReadOnlyList<GrpoPrompt> train, IReadOnlyList<GrpoPrompt> validation, bool resume = false,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (train.Count == 0) throw new ArgumentException("no training prompts");
        Neftune.Validate(options);   // refuses α here (SFT only) rather than train without the noise asked for
        var runDir = options.Output;
        Directory.CreateDirectory(runDir);
        var totalSteps = TotalSteps(train.Count);
        var warmup = LearningRateSchedule.WarmupSteps(totalSteps, options.WarmupRatio, options.WarmupSteps);
        var (evalEvery, logEvery, saveEvery) = TrainingSchedule.Intervals(options, totalSteps);
        using var optimizer = AdamWOptimizer.Create(options.Optim, OptimizerGroups.For(model, trainable, options));
        var state = new TrainerState(0, null, null, 0, 0);
        using var metrics = new MetricsLog(runDir);
        var completionsPath = Path.Combine(runDir, "completions.jsonl");
        GrpoBuffer? buffer = null;
        if (resume && TrainingCheckpoint.RestoreLatest(runDir, trainable, optimizer) is { } restored)
        {
            state = restored;
            metrics.TruncateAfter(state.Step);
            buffer = GrpoBuffer.Load(TrainingCheckpoint.List(runDir)[^1]);
            TruncateCompletionsAfter(completionsPath, state.Step);
            progress?.Report(new TrainingProgress(state.Step, totalSteps, 0, double.NaN, 0, 0, 0, 0, TimeSpan.Zero, null,
                Message: $"resumed from step {state.Step}"));
        }
        else if (!resume)
        {
            if (File.Exists(metrics.FilePath)) File.Delete(metrics.FilePath);
            if (File.Exists(completionsPath)) File.Delete(completionsPath);
        }

        var losses = new List<double>();
        long tokensProcessed = 0;
        var clock = Stopwatch.StartNew();
        var stepsThisSession = 0;
        var stoppedEarly = false;
        while (state.Step < totalSteps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var step = state.Step;
            var generation = step / settings.NumIterations;
            var stepClock = Stopwatch.StartNew();
            GrpoRollout? rollout = null;
            var logCompletions = settings.LogCompletionsEvery > 0 && (step + 1) % settings.LogCompletionsEvery == 0;
            if (buffer is null || buffer.GenerationIndex != generation)
            {
                var prompts = PromptsFor(train.Count, generation).Select(i => train[i]).ToArray();
                rollout = rollouts.Make(prompts, SamplingSeed(generation), step + 1, settings.NumIterations > 1, cancellationToken);
                buffer = new GrpoBuffer(generation, rollout.Rows, rollout.Metrics);
                if (logCompletions && settings.OnlineDpo is null) AppendCompletions(completionsPath, step + 1, rollout);
            }
            var optimizeClock = Stopwatch.StartNew();
            var lr = LearningRateSchedule.At(options.LrSchedule, options.LearningRate, step, totalSteps, warmup);
            model.train();
            Runtime.DeviceRandom.SeedAll(options.Seed * 1_000_003 + step);   // dropout masks, on every device, depend only on the step
            var epochIndex = (int)((long)generation * PromptsPerGeneration / train.Count);
            var (loss, stepMetrics, tokens, pairs) = Optimise(buffer.Rows, generation, epochIndex);
            if (pairs is not null && logCompletions)
            {
                // Online DPO samples anew every step (μ = 1, refused otherwise): its buffer is never carried over, so the
                // step's pairs always come from the rollout just made.
                var sampled = rollout ?? throw new InvalidOperationException($"{settings.Name} step {step + 1} reused a generation batch; it samples every step");
                AppendPairs(completionsPath, step + 1, sampled, pairs);
            }
            if (!double.IsFinite(loss))
            {
                optimizer.ZeroGrad();
                var last = TrainingCheckpoint.List(runDir).LastOrDefault();
                throw new TrainingDivergedException($"the {settings.Name} loss became {loss} at step {step + 1}; training stopped. " +
                    (last is null ? "No checkpoint was written before it." : $"The last good checkpoint is {last}.") + " Lower the learning rate.");
            }
            var gradNorm = OptimizerGroups.ClipGradients(trainable.Select(t => t.Parameter), options.MaxGradNorm);
            optimizer.Step(lr);
            optimizer.ZeroGrad();
            Runtime.StepGarbage.CollectIfPastThreshold();   // the rollouts' and the update's handles (see StepGarbage)
            stepsThisSession++;
            tokensProcessed += tokens;
            losses.Add(loss);
            state = state with { Step = step + 1, OptimizerSteps = optimizer.StepCount };

            var record = new Dictionary<string, double>(buffer.Metrics)
            {
                ["epoch"] = (double)(generation + 1) * PromptsPerGeneration / train.Count,
                ["loss"] = loss,
                ["lr"] = lr,
                ["grad_norm"] = gradNorm,
                ["tokens_per_second"] = tokens / Math.Max(1e-9, stepClock.Elapsed.TotalSeconds),
                ["time/optimization_s"] = optimizeClock.Elapsed.TotalSeconds,
                ["time/step_s"] = stepClock.Elapsed.TotalSeconds,
            };
            foreach (var (key, value) in stepMetrics) record[key] = value;
            var isLast = state.Step == totalSteps;
            double? valReward = null;
            if (validation.Count > 0 && (state.Step % evalEvery == 0 || isLast))
            {
                valReward = ValidationReward(validation, cancellationToken);
                record["val_reward"] = valReward.Value;
                // The loss rule on the negated reward: a higher reward is a lower loss, by the same margin.
                (state, var newBest) = Trainer.AfterEvaluation(state, -valReward.Value, options.EarlyStoppingThreshold);
                if (newBest) SaveAtomically(Path.Combine(runDir, "best"));
            }
            metrics.Append(state.Step, record);
            var eta = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / stepsThisSession * (totalSteps - state.Step));
            if (state.Step % logEvery == 0 || valReward is not null || isLast)
                progress?.Report(new TrainingProgress(state.Step, totalSteps, (int)record["epoch"], loss, record["reward"], lr, gradNorm,
                    record["tokens_per_second"], clock.Elapsed, eta, valReward is null ? null : -valReward, valReward) { Metrics = record });
            var patienceExhausted = options.EarlyStoppingPatience > 0 && state.EvaluationsWithoutImprovement >= options.EarlyStoppingPatience;
            if ((saveEvery > 0 && state.Step % saveEvery == 0) || isLast || patienceExhausted)
            {
                var midGeneration = state.Step % settings.NumIterations != 0;
                var saved = TrainingCheckpoint.Save(runDir, state, trainable, optimizer, options.KeepCheckpoints);
                if (midGeneration) buffer.Save(saved);
            }
            if (patienceExhausted)
            {
                stoppedEarly = true;
                progress?.Report(new TrainingProgress(state.Step, totalSteps, (int)record["epoch"], loss, record["reward"], lr, gradNorm, 0,
                    clock.Elapsed, TimeSpan.Zero, Message: $"early stopping: the validation reward has not improved for " +
                    $"{state.EvaluationsWithoutImprovement} evaluations (best {-state.BestValidationLoss:F4} at step {state.BestStep})"));
                break;
            }
        }

        var all = MetricsLog.ReadAll(metrics.FilePath);
        var name = Path.GetFileName(Path.GetFullPath(runDir));
        LossPlot.Save(all, Path.Combine(runDir, "loss.png"), $"{name}: loss");
        LossPlot.SaveReward(all, Path.Combine(runDir, "reward.png"), $"{name}: reward");
        LossPlot.SaveLearningRate(all, Path.Combine(runDir, "lr.png"));
        SaveAtomically(Path.Combine(runDir, "final"));
        return new TrainingResult(state.Step, losses.Count > 0 ? losses[^1] : null, state.BestValidationLoss, state.BestStep, stoppedEarly,
            runDir, losses) { TrainingSeconds = clock.Elapsed.TotalSeconds, TokensProcessed = tokensProcessed };
    }

    /// <summary>
    /// One pass over the generation batch: micro-batch gradients summed as TRL scales them; returns the step's metrics,
    /// and online DPO's pairs (null for GRPO and RLOO).
    /// </summary>
    private (double Loss, Dictionary<string, double> Metrics, int Tokens, OnlineDpoPair[]? Pairs) Optimise(IReadOnlyList<GrpoRow> rows,
        int generation, int epochIndex)
    {
        if (settings.OnlineDpo is { } onlineDpo)
            return OnlineDpoUpdate.Optimise(model, rows, onlineDpo, onlineDpo.BetaAt(epochIndex), options.MicroBatchSize);
        var order = Enumerable.Range(0, rows.Count).ToArray();
        new Random(unchecked((int)(options.Seed * 31337 + generation))).Shuffle(order);   // TRL's shuffle_sequence_dict
        var micro = order.Select(i => rows[i]).Chunk(options.MicroBatchSize).ToArray();
        var batchTokens = rows.Where(r => !(settings.MaskTruncatedCompletions && r.Truncated)).Sum(r => (double)r.CompletionIds.Length);
        double loss = 0;
        var sums = new List<GrpoMetricSums>(micro.Length);
        var tokens = 0;
        foreach (var chunk in micro)
        {
            using var scope = NewDisposeScope();
            using var batch = GrpoBatch.Collate(chunk, model.Device, settings.MaskTruncatedCompletions);
            var logProbs = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out var entropies, withEntropy: true,
                temperature: settings.LogProbTemperature);
            var entropy = (entropies! * batch.Mask).sum().item<float>();
            if (settings.Rloo is not null)
            {
                var rloo = RlooLoss.Compute(logProbs, batch.OldLogProbs, batch.Advantages, batch.Mask, settings.Loss.Epsilon, settings.Loss.EpsilonUpper,
                    micro.Length);
                CustomBackward.Backward(rloo.Loss);
                loss += rloo.Loss.item<float>();
                // RLOO's ratio is per sequence: its clip indicators are averaged over the micro-batch's sequences.
                sums.Add(new GrpoMetricSums(batch.Mask.sum().item<float>(), entropy, 0, rloo.LowClippedSum.item<float>(), rloo.HighClippedSum.item<float>(),
                    rloo.RegionClippedSum.item<float>(), chunk.Length, rloo.LowClippedMin.item<float>(), rloo.HighClippedMax.item<float>()));
            }
            else
            {
                var result = GrpoLoss.Compute(logProbs, batch.OldLogProbs, batch.ReferenceLogProbs, batch.Advantages, batch.Mask, settings.Loss,
                    micro.Length, batchTokens);
                CustomBackward.Backward(result.Loss);
                loss += result.Loss.item<float>();
                sums.Add(new GrpoMetricSums(result.TokenCount.item<float>(), entropy, result.KlSum.item<float>(), result.LowClippedSum.item<float>(),
                    result.HighClippedSum.item<float>(), result.RegionClippedSum.item<float>()));
            }
            tokens += batch.Tokens;
        }
        return (loss, StepMetrics(sums, settings.Loss.Beta != 0), tokens, null);
    }

    /// <summary>
    /// One micro-batch's metric sums: the entropy and KL masked over its <see cref="Tokens"/> loss tokens; the clip
    /// indicators over <see cref="ClipUnits"/> (GRPO: the same loss tokens, when 0; RLOO: its sequences, whose ratio is
    /// per sequence, with the indicators' <see cref="LowMin"/> and <see cref="HighMax"/>, which TRL's RLOO logs too).
    /// </summary>
    internal readonly record struct GrpoMetricSums(double Tokens, double Entropy, double Kl, double LowClipped, double HighClipped,
        double RegionClipped, double ClipUnits = 0, double? LowMin = null, double? HighMax = null);

    /// <summary>
    /// The step's entropy, clip_ratio/* and kl as TRL's GRPO and RLOO log them: each micro-batch's mean (masked over its
    /// loss tokens, or RLOO's clip indicators over its sequences; 0 for one with none), then the plain mean over the step's
    /// micro-batches (TRL appends one value per <c>_compute_loss</c> call and its <c>log</c> averages them), not one
    /// token-weighted mean over the step. RLOO's clip_ratio/low_min and high_max are likewise the mean of the micro-batches'.
    /// </summary>
    internal static Dictionary<string, double> StepMetrics(IReadOnlyList<GrpoMetricSums> microBatches, bool withKl)
    {
        double Mean(Func<GrpoMetricSums, double> sum) => microBatches.Average(m => sum(m) / Math.Max(1.0, m.Tokens));
        double ClipMean(Func<GrpoMetricSums, double> sum) =>
            microBatches.Average(m => sum(m) / Math.Max(1.0, m.ClipUnits > 0 ? m.ClipUnits : m.Tokens));
        var metrics = new Dictionary<string, double>
        {
            ["entropy"] = Mean(m => m.Entropy),
            ["clip_ratio/low_mean"] = ClipMean(m => m.LowClipped),
            ["clip_ratio/high_mean"] = ClipMean(m => m.HighClipped),
            ["clip_ratio/region_mean"] = ClipMean(m => m.RegionClipped),
        };
        if (microBatches.All(m => m.LowMin is not null))
        {
            metrics["clip_ratio/low_min"] = microBatches.Average(m => m.LowMin!.Value);
            metrics["clip_ratio/high_max"] = microBatches.Average(m => m.HighMax!.Value);
        }
        if (withKl) metrics["kl"] = Mean(m => m.Kl);
        return metrics;
    }

    /// <summary>Mean reward of G completions per validation prompt, sampled as in training with a fixed seed.</summary>
    private double ValidationReward(IReadOnlyList<GrpoPrompt> validation, CancellationToken cancellationToken)
    {
        var sum = 0.0;
        var count = 0;
        foreach (var chunk in validation.Chunk(Math.Max(1, PromptsPerGeneration)))
        {
            var rollout = rollouts.Make(chunk, options.Seed * 7_777_777 + 1, 0, withOld: false, cancellationToken, withReference: false);
            foreach (var r in rollout.Rewards.Where(r => !double.IsNaN(r))) { sum += r; count++; }
        }
        return count == 0 ? double.NaN : sum / count;
    }

    /// <summary>The prompt indices of generation batch <paramref name="generation"/>: epoch e visits a permutation seeded by (seed, e).</summary>
    private IEnumerable<int> PromptsFor(int count, int generation)
    {
        for (var k = 0; k < PromptsPerGeneration; k++)
        {
            var global = (long)generation * PromptsPerGeneration + k;
            var epoch = (int)(global / count);
            if (!permutations.TryGetValue(epoch, out var permutation))
            {
                permutation = Enumerable.Range(0, count).ToArray();
                new Random(unchecked((int)(options.Seed * 7919 + epoch))).Shuffle(permutation);
                permutations[epoch] = permutation;
            }
            yield return permutation[(int)(global % count)];
        }
    }

    private readonly Dictionary<int, int[]> permutations = [];

    private long SamplingSeed(int generation) => options.Seed * 1_000_033 + generation;

    /// <summary>Appends each sample of the step with its rewards and advantage to completions.jsonl (TRL's log_completions).</summary>
    private void AppendCompletions(string path, int step, GrpoRollout rollout)
    {
        using var writer = new StreamWriter(path, append: true);
        for (var i = 0; i < rollout.Samples.Count; i++)
        {
            var sample = rollout.Samples[i];
            var scores = new JsonObject();
            for (var f = 0; f < rollout.Scores.GetLength(1); f++)
                scores[rollouts.RewardNames[f]] = double.IsNaN(rollout.Scores[i, f]) ? null : rollout.Scores[i, f];
            var line = new JsonObject
            {
                ["step"] = step,
                ["prompt"] = sample.Prompt,
                ["completion"] = sample.Completion,
                ["rewards"] = scores,
                ["reward"] = double.IsNaN(rollout.Rewards[i]) ? null : rollout.Rewards[i],
                ["advantage"] = rollout.Rows[i].Advantage,
                ["truncated"] = sample.Truncated,
            };
            if (rollout.SequenceKl is { } kl) line["kl"] = kl[i];   // RLOO: the sequence KL its reward lost β times
            writer.WriteLine(line.ToJsonString());
        }
    }

    /// <summary>
    /// Appends each online DPO pair of the step to completions.jsonl: the prompt, both completions with their reward
    /// functions' scores, score (after missing_eos_penalty) and EOS, and the summed log-probs of policy and reference that
    /// the step's loss and metrics were computed from.
    /// </summary>
    private void AppendPairs(string path, int step, GrpoRollout rollout, IReadOnlyList<OnlineDpoPair> pairs)
    {
        JsonObject Completion(int row, double logProbs, double referenceLogProbs)
        {
            var scores = new JsonObject();
            for (var f = 0; f < rollout.Scores.GetLength(1); f++)
                scores[rollouts.RewardNames[f]] = double.IsNaN(rollout.Scores[row, f]) ? null : rollout.Scores[row, f];
            return new JsonObject
            {
                ["completion"] = rollout.Samples[row].Completion,
                ["rewards"] = scores,
                ["score"] = rollout.Rewards[row],
                ["contains_eos"] = !rollout.Samples[row].Truncated,
                ["logps"] = logProbs,
                ["ref_logps"] = referenceLogProbs,
            };
        }
        using var writer = new StreamWriter(path, append: true);
        foreach (var pair in pairs)
        {
            var line = new JsonObject
            {
                ["step"] = step,
                ["prompt"] = rollout.Samples[pair.Chosen].Prompt,
                ["chosen"] = Completion(pair.Chosen, pair.ChosenLogProbs, pair.ChosenReferenceLogProbs),
                ["rejected"] = Completion(pair.Rejected, pair.RejectedLogProbs, pair.RejectedReferenceLogProbs),
            };
            writer.WriteLine(line.ToJsonString());
        }
    }

    /// <summary>Drops completions logged after the checkpoint a run resumes from (they will be sampled again).</summary>
    private static void TruncateCompletionsAfter(string path, int step)
    {
        if (!File.Exists(path)) return;
        var kept = File.ReadAllLines(path).Where(line => JsonNode.Parse(line)?["step"]?.GetValue<int>() <= step).ToArray();
        File.WriteAllLines(path, kept);
    }

    private void SaveAtomically(string dir) => IO.AtomicDirectory.Write(dir, saveModel);
}
