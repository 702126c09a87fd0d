using System.Diagnostics;
using SharpTune.Models;
using SharpTune.Tracking;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>Computes (summed loss, correct predictions) for a micro-batch: the training objective.</summary>
public delegate (Tensor LossSum, Tensor Correct) TrainingObjective(CausalLanguageModel model, TrainingBatch batch);

/// <summary>
/// The training loop, read top to bottom like a recipe: for each optimizer step, gather micro-batches, normalise the
/// loss by the step's total supervised tokens (so accumulation 4×2 equals batch 8), clip, update, log, evaluate,
/// checkpoint. Data order, dropout masks and the learning rate are pure functions of the step number, so resuming
/// from a checkpoint replays exactly the steps an uninterrupted run would have taken.
/// </summary>
public sealed class Trainer
{
    private readonly CausalLanguageModel model;
    private readonly IReadOnlyList<(string Name, Parameter Parameter)> trainable;
    private readonly TrainingOptions options;
    private readonly TrainingObjective objective;
    private readonly Action<string> saveModel;
    private readonly IEvaluationHook? evaluationHook;

    /// <param name="trainable">The parameters to update (all for full fine-tuning, the adapter's otherwise).</param>
    /// <param name="saveModel">Writes the trained model or adapter into a folder (used for best/ and final/).</param>
    /// <param name="evaluationHook">Extra metrics computed at each evaluation step and merged into metrics.jsonl.</param>
    public Trainer(CausalLanguageModel model, IReadOnlyList<(string Name, Parameter Parameter)> trainable, TrainingOptions options,
        Action<string> saveModel, TrainingObjective? objective = null, IEvaluationHook? evaluationHook = null)
    {
        this.evaluationHook = evaluationHook;
        this.model = model;
        this.trainable = trainable;
        this.options = options;
        this.saveModel = saveModel;
        this.objective = objective ?? ((m, b) => CausalLmLoss.Compute(m, b));
    }

    public TrainingResult Train(IReadOnlyList<TokenizedExample> train, IReadOnlyList<TokenizedExample> validation,
        bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (train.Count == 0) throw new ArgumentException("no training examples");
        var runDir = options.Output;
        Directory.CreateDirectory(runDir);
        var device = model.Device;
        var examplesPerStep = options.MicroBatchSize * options.GradientAccumulation;
        var totalSteps = options.MaxSteps > 0
            ? options.MaxSteps
            : Math.Max(1, (int)Math.Ceiling((double)options.Epochs * train.Count / examplesPerStep));
        var warmup = options.WarmupSteps >= 0 ? options.WarmupSteps : (int)Math.Round(options.WarmupRatio * totalSteps);

        using var optimizer = new AdamW(trainable.Select(t => (t.Name, t.Parameter, NoDecay(t.Name, t.Parameter) ? 0.0 : options.WeightDecay)));
        var state = new TrainerState(0, null, null, 0, 0);
        using var metrics = new MetricsLog(runDir);
        if (resume && TrainingCheckpoint.RestoreLatest(runDir, trainable, optimizer) is { } restored)
        {
            state = restored;
            metrics.TruncateAfter(state.Step);
            progress?.Report(new TrainingProgress(state.Step, totalSteps, 0, double.NaN, 0, 0, 0, 0, TimeSpan.Zero, null,
                Message: $"resumed from step {state.Step}"));
        }
        else if (!resume && File.Exists(metrics.FilePath))
        {
            File.Delete(metrics.FilePath);
        }

        var losses = new List<double>();
        var clock = Stopwatch.StartNew();
        var stepsThisSession = 0;
        var stoppedEarly = false;
        while (state.Step < totalSteps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var step = state.Step;
            var lr = LearningRateSchedule.At(options.LrSchedule, options.LearningRate, step, totalSteps, warmup);
            var stepClock = Stopwatch.StartNew();
            model.train();
            manual_seed(options.Seed * 1_000_003 + step);   // dropout masks depend only on the step
            var micro = ExamplesForStep(train.Count, step, examplesPerStep).Select(i => train[i]).ToArray();
            var batches = micro.Chunk(options.MicroBatchSize).ToArray();
            var collated = batches.Select(b => Collate(b, device)).ToArray();
            var (lossSum, correct, tokens, supervised) = AccumulateGradients(model, objective, collated);
            var stepLoss = lossSum / supervised;
            if (!double.IsFinite(stepLoss))
            {
                optimizer.ZeroGrad();
                var last = TrainingCheckpoint.List(runDir).LastOrDefault();
                throw new TrainingDivergedException(
                    $"the training loss became {stepLoss} at step {step + 1}; training stopped. " +
                    (last is null ? "No checkpoint was written before it." : $"The last good checkpoint is {last}.") +
                    " Lower the learning rate or check the data.");
            }
            double gradNorm;
            using (var scope = NewDisposeScope())
            {
                gradNorm = nn.utils.clip_grad_norm_(trainable.Select(t => t.Parameter), options.MaxGradNorm);
            }
            optimizer.Step(lr);
            optimizer.ZeroGrad();
            stepsThisSession++;
            losses.Add(stepLoss);
            state = state with { Step = step + 1, OptimizerSteps = optimizer.StepCount };

            var tokensPerSecond = tokens / Math.Max(1e-9, stepClock.Elapsed.TotalSeconds);
            var eta = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / stepsThisSession * (totalSteps - state.Step));
            var record = new Dictionary<string, double>
            {
                ["epoch"] = (double)state.Step * examplesPerStep / train.Count,
                ["loss"] = stepLoss,
                ["token_accuracy"] = correct / supervised,
                ["lr"] = lr,
                ["grad_norm"] = gradNorm,
                ["tokens_per_second"] = tokensPerSecond,
            };
            double? valLoss = null, valAccuracy = null;
            var isLast = state.Step == totalSteps;
            if (validation.Count > 0 && (state.Step % Math.Max(1, options.EvalEvery) == 0 || isLast))
            {
                (valLoss, valAccuracy) = Evaluate(validation, device);
                record["val_loss"] = valLoss.Value;
                record["val_token_accuracy"] = valAccuracy.Value;
                foreach (var (key, value) in evaluationHook?.Evaluate(state.Step) ?? new Dictionary<string, double>()) record[key] = value;
                if (state.BestValidationLoss is null || valLoss < state.BestValidationLoss)
                {
                    state = state with { BestValidationLoss = valLoss, BestStep = state.Step, EvaluationsWithoutImprovement = 0 };
                    SaveAtomically(Path.Combine(runDir, "best"));
                }
                else
                {
                    state = state with { EvaluationsWithoutImprovement = state.EvaluationsWithoutImprovement + 1 };
                }
            }
            metrics.Append(state.Step, record);
            if (state.Step % Math.Max(1, options.LogEvery) == 0 || valLoss is not null || isLast)
                progress?.Report(new TrainingProgress(state.Step, totalSteps, (int)record["epoch"], stepLoss, correct / supervised, lr,
                    gradNorm, tokensPerSecond, clock.Elapsed, eta, valLoss, valAccuracy));
            var patienceExhausted = options.EarlyStoppingPatience > 0 && state.EvaluationsWithoutImprovement >= options.EarlyStoppingPatience;
            if ((options.SaveEvery > 0 && state.Step % options.SaveEvery == 0) || isLast || patienceExhausted)
                TrainingCheckpoint.Save(runDir, state, trainable, optimizer, options.KeepCheckpoints);
            if (patienceExhausted)
            {
                stoppedEarly = true;
                progress?.Report(new TrainingProgress(state.Step, totalSteps, (int)record["epoch"], stepLoss, correct / supervised, lr,
                    gradNorm, tokensPerSecond, clock.Elapsed, TimeSpan.Zero,
                    Message: $"early stopping: validation loss has not improved for {state.EvaluationsWithoutImprovement} evaluations (best {state.BestValidationLoss:F4} at step {state.BestStep})"));
                break;
            }
        }

        var all = MetricsLog.ReadAll(metrics.FilePath);
        LossPlot.Save(all, Path.Combine(runDir, "loss.png"), $"{Path.GetFileName(Path.GetFullPath(runDir))}: loss");
        LossPlot.SaveLearningRate(all, Path.Combine(runDir, "lr.png"));
        SaveAtomically(Path.Combine(runDir, "final"));
        return new TrainingResult(state.Step, losses.Count > 0 ? losses[^1] : null, state.BestValidationLoss, state.BestStep,
            stoppedEarly, runDir, losses);
    }

    /// <summary>
    /// Back-propagates one optimizer step's micro-batches. Each micro-batch's summed loss is divided by the supervised
    /// token count of the whole step, never averaged per micro-batch, so splitting a batch does not change the gradient.
    /// Disposes the batches.
    /// </summary>
    public static (double LossSum, double Correct, int Tokens, int Supervised) AccumulateGradients(
        CausalLanguageModel model, TrainingObjective objective, IReadOnlyList<TrainingBatch> batches)
    {
        var supervised = Math.Max(1, batches.Sum(b => b.SupervisedTokens));
        double lossSum = 0, correct = 0;
        var tokens = 0;
        foreach (var batch in batches)
        {
            using var scope = NewDisposeScope();
            var (loss, hits) = objective(model, batch);
            (loss / supervised).backward();
            lossSum += loss.item<float>();
            correct += hits.item<long>();
            tokens += batch.Tokens;
            batch.Dispose();
        }
        return (lossSum, correct, tokens, supervised);
    }

    /// <summary>Token-weighted validation loss and next-token accuracy, with dropout off.</summary>
    public (double Loss, double Accuracy) Evaluate(IReadOnlyList<TokenizedExample> examples, Device device)
    {
        model.eval();
        using var noGrad = no_grad();
        double loss = 0, correct = 0;
        long count = 0;
        foreach (var chunk in examples.Chunk(Math.Max(1, options.MicroBatchSize)))
        {
            using var scope = NewDisposeScope();
            using var batch = Collate(chunk, device);
            var (sum, hits) = objective(model, batch);
            loss += sum.item<float>();
            correct += hits.item<long>();
            count += batch.SupervisedTokens;
        }
        model.train();
        return count == 0 ? (double.NaN, double.NaN) : (loss / count, correct / count);
    }

    private TrainingBatch Collate(IReadOnlyList<TokenizedExample> examples, Device device) =>
        options.Packing ? BatchCollator.Pack(examples, options.MaxSeqLength, device) : BatchCollator.Pad(examples, device);

    /// <summary>The example indices of one optimizer step: epoch e visits a permutation seeded by (seed, e).</summary>
    private IEnumerable<int> ExamplesForStep(int count, int step, int perStep)
    {
        for (var k = 0; k < perStep; k++)
        {
            var global = (long)step * perStep + k;
            var epoch = (int)(global / count);
            yield return Permutation(count, epoch)[(int)(global % count)];
        }
    }

    private readonly Dictionary<int, int[]> permutations = [];

    private int[] Permutation(int count, int epoch)
    {
        if (permutations.TryGetValue(epoch, out var p)) return p;
        p = Enumerable.Range(0, count).ToArray();
        new Random(unchecked((int)(options.Seed * 7919 + epoch))).Shuffle(p);
        return permutations[epoch] = p;
    }

    private void SaveAtomically(string dir)
    {
        var temp = dir + ".incomplete";
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        saveModel(temp);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.Move(temp, dir);
    }

    /// <summary>Norm scales and biases are not decayed (as transformers' trainer excludes them).</summary>
    private static bool NoDecay(string name, Parameter p) =>
        p.dim() < 2 || name.EndsWith("bias", StringComparison.Ordinal) || name.Contains("norm") || name.Contains("ln_");
}
