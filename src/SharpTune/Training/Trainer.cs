using System.Diagnostics;
using SharpTune.Distributed;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tracking;
using SharpTune.Training.Objectives;
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
/// Under MPI (<see cref="ProcessGroups.Current"/> of several ranks) each rank takes its share of every step's
/// micro-batches (global batch = micro-batch × accumulation × ranks), gradients are summed across ranks and normalised by
/// the step's supervised tokens over all ranks, so the update equals one process's over the same global batch; rank 0
/// alone writes metrics, plots, checkpoints, best/ and final/.
/// </summary>
public sealed class Trainer
{
    private readonly CausalLanguageModel model;
    private readonly IReadOnlyList<(string Name, Parameter Parameter)> trainable;
    private readonly TrainingOptions options;
    private readonly ITrainingObjective objective;
    private readonly Action<string> saveModel;
    private readonly IEvaluationHook? evaluationHook;

    /// <param name="trainable">The parameters to update (all for full fine-tuning, the adapter's otherwise).</param>
    /// <param name="saveModel">Writes the trained model or adapter into a folder (used for best/ and final/).</param>
    /// <param name="objective">The per-batch loss; next-token cross-entropy when null.</param>
    /// <param name="evaluationHook">Extra metrics computed at each evaluation step and merged into metrics.jsonl.</param>
    public Trainer(CausalLanguageModel model, IReadOnlyList<(string Name, Parameter Parameter)> trainable, TrainingOptions options,
        Action<string> saveModel, TrainingObjective? objective = null, IEvaluationHook? evaluationHook = null)
        : this(model, trainable, options, saveModel, objective is null ? TokenObjective.CausalLm : new TokenObjective(objective), evaluationHook)
    {
    }

    /// <summary>A trainer for any objective (e.g. <see cref="DpoObjective"/> over preference batches).</summary>
    public Trainer(CausalLanguageModel model, IReadOnlyList<(string Name, Parameter Parameter)> trainable, TrainingOptions options,
        Action<string> saveModel, ITrainingObjective objective, IEvaluationHook? evaluationHook = null)
    {
        this.evaluationHook = evaluationHook;
        this.model = model;
        this.trainable = trainable;
        this.options = options;
        this.saveModel = saveModel;
        this.objective = objective;
    }

    /// <summary>Trains on tokenized sequences, padded or packed per <see cref="TrainingOptions.Packing"/>.</summary>
    public TrainingResult Train(IReadOnlyList<TokenizedExample> train, IReadOnlyList<TokenizedExample> validation,
        bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Train(train, validation, Collate, resume, progress, cancellationToken);

    /// <summary>
    /// Trains on any example type that <paramref name="collate"/> turns into micro-batches the objective understands
    /// (preference pairs for DPO). Step order, accumulation, checkpoints and resume are the same for every type.
    /// </summary>
    public TrainingResult Train<TExample>(IReadOnlyList<TExample> train, IReadOnlyList<TExample> validation,
        Func<IReadOnlyList<TExample>, Device, TrainingBatch> collate,
        bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (train.Count == 0) throw new ArgumentException("no training examples");
        using var neftune = Neftune.Activate(model, options);   // for this run only, as transformers' Trainer.train hooks it
        var runDir = options.Output;
        Directory.CreateDirectory(runDir);
        var device = model.Device;
        var group = ProcessGroups.Current;
        var isRoot = group.Rank == 0;
        if (!isRoot) progress = null;
        var schedule = new TrainingSchedule(train.Count, options.MicroBatchSize, options.GradientAccumulation, options.Epochs,
            options.MaxSteps, group.Size);
        var totalSteps = schedule.TotalSteps;
        var (evalEvery, logEvery, saveEvery) = TrainingSchedule.Intervals(options, totalSteps);
        var warmup = LearningRateSchedule.WarmupSteps(totalSteps, options.WarmupRatio, options.WarmupSteps);

        using var optimizer = AdamWOptimizer.Create(options.Optim, OptimizerGroups.For(model, trainable, options));
        var hooks = AdapterHooks ?? InjectedTrainingHooks.Find(model, trainable);
        if (hooks is not null && group.Size > 1)
            throw new NotSupportedException($"the {InjectedTrainingHooks.Describe(hooks)} adapter takes part in every optimizer step " +
                                            "(IAdapterTrainingHooks), which SharpTune does not run under data-parallel (MPI) training; train it in one process");
        if (hooks?.BeginTraining(totalSteps) is { } hooksMessage)
            progress?.Report(new TrainingProgress(0, totalSteps, 0, double.NaN, 0, 0, 0, 0, TimeSpan.Zero, null, Message: hooksMessage));
        var state = new TrainerState(0, null, null, 0, 0);
        using var metrics = isRoot ? new MetricsLog(runDir) : null;
        if (DataParallel.Start(runDir, resume, trainable, optimizer, group, hooks) is { } restored)
        {
            state = restored;
            metrics?.TruncateAfter(state.Step);
            progress?.Report(new TrainingProgress(state.Step, totalSteps, 0, double.NaN, 0, 0, 0, 0, TimeSpan.Zero, null,
                Message: $"resumed from step {state.Step}"));
        }
        else if (!resume && metrics is not null && File.Exists(metrics.FilePath))
        {
            File.Delete(metrics.FilePath);
        }
        else if (resume)   // asked to continue, but nothing to continue: say so rather than start afresh unannounced
        {
            progress?.Report(new TrainingProgress(0, totalSteps, 0, double.NaN, 0, 0, 0, 0, TimeSpan.Zero, null,
                Message: $"no checkpoint to resume in {Path.Combine(runDir, "checkpoints")}; starting from step 0"));
        }

        var losses = new List<double>();
        long tokensProcessed = 0;
        var clock = Stopwatch.StartNew();
        var stepsThisSession = 0;
        var stoppedEarly = false;
        while (state.Step < totalSteps)
        {
            if (group.Size == 1) cancellationToken.ThrowIfCancellationRequested();
            var step = state.Step;
            var lr = LearningRateSchedule.At(options.LrSchedule, options.LearningRate, step, totalSteps, warmup);
            var stepClock = Stopwatch.StartNew();
            model.train();
            Runtime.DeviceRandom.SeedAll(options.Seed * 1_000_003 + step);   // dropout masks, on every device, depend only on the step
            var order = Permutation(train.Count, schedule.EpochOf(step));
            var micro = schedule.MicroBatches(step).Select(b => order[b.Start..(b.Start + b.Count)].Select(i => train[i]).ToArray()).ToArray();
            var batches = DataParallel.ShareOf(micro, options.GradientAccumulation, group);
            var collated = batches.Select((b, k) => PrepareTrainingBatch is { } prepare
                    ? prepare(collate(b, device), MicroBatchIndex.Of(step, k, options.GradientAccumulation, group.Rank, group.Size))
                    : collate(b, device))
                .ToArray();
            // Every rank learns the step's loss units over all ranks (and whether any rank must stop) before its backward pass.
            var (units, stop) = DataParallel.Agree(collated.Sum(b => b.LossUnits), cancellationToken.IsCancellationRequested, group);
            if (stop)
            {
                foreach (var b in collated) b.Dispose();
                throw new OperationCanceledException(cancellationToken.IsCancellationRequested ? cancellationToken : CancellationToken.None);
            }
            var totals = DataParallel.Sum(AccumulateGradients(model, objective, collated, units), Math.Max(1, units), group);
            GradientAllReduce.Sum(trainable, group);
            var regularization = AddRegularization(hooks);
            var (lossSum, correct, tokens, supervised) = (totals.LossSum, totals.Correct, totals.Tokens, totals.Units);
            tokensProcessed += tokens;
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
            var gradNorm = OptimizerGroups.ClipGradients(trainable.Select(t => t.Parameter), options.MaxGradNorm);
            optimizer.Step(lr);
            hooks?.AfterOptimizerStep(step);   // PEFT's update_and_allocate: after the step, before the gradients are zeroed
            optimizer.ZeroGrad();
            stepsThisSession++;
            losses.Add(stepLoss);
            state = state with { Step = step + 1, OptimizerSteps = optimizer.StepCount };

            var tokensPerSecond = tokens / Math.Max(1e-9, stepClock.Elapsed.TotalSeconds);
            var eta = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / stepsThisSession * (totalSteps - state.Step));
            var record = new Dictionary<string, double>
            {
                ["epoch"] = schedule.EpochAfter(step),
                ["loss"] = stepLoss,
                [objective.AccuracyMetric] = correct / supervised,
                ["lr"] = lr,
                ["grad_norm"] = gradNorm,
                ["tokens_per_second"] = tokensPerSecond,
            };
            foreach (var (name, value) in MetricMeans(totals.MetricSums, supervised)) record[name] = value;
            if (regularization is { } reg) record["regularization_loss"] = reg;
            objective.CompleteMetrics(record);
            double? valLoss = null, valAccuracy = null;
            var isLast = state.Step == totalSteps;
            if (validation.Count > 0 && (state.Step % evalEvery == 0 || isLast))
            {
                var evaluation = Evaluate(validation, collate, device);
                (valLoss, valAccuracy) = (evaluation.Loss, evaluation.Accuracy);
                record["val_loss"] = evaluation.Loss;
                record["val_" + objective.AccuracyMetric] = evaluation.Accuracy;
                foreach (var (name, value) in evaluation.Metrics) record["val_" + name] = value;
                if (isRoot)
                    foreach (var (key, value) in evaluationHook?.Evaluate(state.Step) ?? new Dictionary<string, double>()) record[key] = value;
                (state, var newBest) = AfterEvaluation(state, evaluation.Loss, options.EarlyStoppingThreshold);
                if (newBest && isRoot) SaveAtomically(Path.Combine(runDir, "best"));
            }
            metrics?.Append(state.Step, record);
            if (state.Step % logEvery == 0 || valLoss is not null || isLast)
                progress?.Report(new TrainingProgress(state.Step, totalSteps, (int)record["epoch"], stepLoss, correct / supervised, lr,
                    gradNorm, tokensPerSecond, clock.Elapsed, eta, valLoss, valAccuracy) { Metrics = record });
            var patienceExhausted = options.EarlyStoppingPatience > 0 && state.EvaluationsWithoutImprovement >= options.EarlyStoppingPatience;
            if (isRoot && ((saveEvery > 0 && state.Step % saveEvery == 0) || isLast || patienceExhausted))
                using (NewDisposeScope())   // frees what the adapter's training state creates, never its live tensors
                    TrainingCheckpoint.Save(runDir, state, trainable, optimizer, options.KeepCheckpoints, hooks?.TrainingState());
            if (patienceExhausted)
            {
                stoppedEarly = true;
                progress?.Report(new TrainingProgress(state.Step, totalSteps, (int)record["epoch"], stepLoss, correct / supervised, lr,
                    gradNorm, tokensPerSecond, clock.Elapsed, TimeSpan.Zero,
                    Message: $"early stopping: validation loss has not improved for {state.EvaluationsWithoutImprovement} evaluations (best {state.BestValidationLoss:F4} at step {state.BestStep})"));
                break;
            }
        }

        var trainingSeconds = clock.Elapsed.TotalSeconds;
        if (metrics is not null)
        {
            var all = MetricsLog.ReadAll(metrics.FilePath);
            LossPlot.Save(all, Path.Combine(runDir, "loss.png"), $"{Path.GetFileName(Path.GetFullPath(runDir))}: loss");
            LossPlot.SaveLearningRate(all, Path.Combine(runDir, "lr.png"));
            SaveAtomically(Path.Combine(runDir, "final"));
        }
        return new TrainingResult(state.Step, losses.Count > 0 ? losses[^1] : null, state.BestValidationLoss, state.BestStep,
            stoppedEarly, runDir, losses) { TrainingSeconds = trainingSeconds, TokensProcessed = tokensProcessed };
    }

    /// <summary>
    /// The counters after an evaluation scoring <paramref name="validationLoss"/>, as transformers keeps them: any loss
    /// below the best so far becomes the best (<c>_determine_best_metric</c>), but the early-stopping count returns to 0
    /// only when it is lower by more than <paramref name="threshold"/> (<c>EarlyStoppingCallback.check_metric_value</c>),
    /// so a run of small improvements still ends training. A NaN loss is never a new best.
    /// </summary>
    internal static (TrainerState State, bool NewBest) AfterEvaluation(TrainerState state, double validationLoss, double threshold)
    {
        var best = state.BestValidationLoss;
        var improvedEnough = best is null || (validationLoss < best && Math.Abs(validationLoss - best.Value) > threshold);
        state = state with { EvaluationsWithoutImprovement = improvedEnough ? 0 : state.EvaluationsWithoutImprovement + 1 };
        var newBest = validationLoss < (best ?? double.PositiveInfinity);
        return (newBest ? state with { BestValidationLoss = validationLoss, BestStep = state.Step } : state, newBest);
    }

    /// <summary>
    /// Back-propagates one optimizer step's micro-batches. Each micro-batch's summed loss is divided by the loss units
    /// (supervised tokens, or pairs) of the whole step, never averaged per micro-batch, so splitting a batch does not
    /// change the gradient. Disposes the batches.
    /// </summary>
    public static (double LossSum, double Correct, int Tokens, int Supervised) AccumulateGradients(
        CausalLanguageModel model, TrainingObjective objective, IReadOnlyList<TrainingBatch> batches)
    {
        var totals = AccumulateGradients(model, new TokenObjective(objective), batches);
        return (totals.LossSum, totals.Correct, totals.Tokens, totals.Units);
    }

    /// <inheritdoc cref="AccumulateGradients(CausalLanguageModel, TrainingObjective, IReadOnlyList{TrainingBatch})"/>
    public static StepTotals AccumulateGradients(CausalLanguageModel model, ITrainingObjective objective, IReadOnlyList<TrainingBatch> batches) =>
        AccumulateGradients(model, objective, batches, batches.Sum(b => b.LossUnits));

    /// <summary>As above, dividing by <paramref name="stepUnits"/>: the loss units of the whole step over every rank.</summary>
    internal static StepTotals AccumulateGradients(CausalLanguageModel model, ITrainingObjective objective, IReadOnlyList<TrainingBatch> batches,
        int stepUnits)
    {
        var units = Math.Max(1, stepUnits);
        double lossSum = 0, correct = 0;
        var tokens = 0;
        var metricSums = new Dictionary<string, double>();
        foreach (var batch in batches)
        {
            using var scope = NewDisposeScope();
            ObjectiveOutput output;
            if (objective is IBackwardObjective own) output = own.ComputeWithBackward(model, batch, 1.0 / units);
            else
            {
                output = objective.Compute(model, batch);
                CustomBackward.Backward(output.LossSum / units);
            }
            lossSum += output.LossSum.item<float>();
            correct += output.Correct.to(ScalarType.Float64).item<double>();
            AddMetrics(metricSums, output);
            tokens += batch.Tokens;
            batch.Dispose();
            Runtime.StepGarbage.CollectIfPastThreshold();
        }
        return new StepTotals(lossSum, correct, tokens, units, metricSums);
    }

    /// <summary>Validation loss and accuracy per loss unit (token-weighted for causal LM), with dropout off.</summary>
    public (double Loss, double Accuracy) Evaluate(IReadOnlyList<TokenizedExample> examples, Device device)
    {
        var result = Evaluate(examples, Collate, device);
        return (result.Loss, result.Accuracy);
    }

    /// <summary>Loss, accuracy and the objective's other metrics per loss unit over <paramref name="examples"/>, with dropout off.</summary>
    public EvaluationTotals Evaluate<TExample>(IReadOnlyList<TExample> examples, Func<IReadOnlyList<TExample>, Device, TrainingBatch> collate,
        Device device)
    {
        model.eval();
        using var noGrad = no_grad();
        double loss = 0, correct = 0;
        long count = 0;
        var metricSums = new Dictionary<string, double>();
        var group = ProcessGroups.Current;
        // Each rank scores every Size-th micro-batch; the sums are then added across ranks.
        foreach (var chunk in examples.Chunk(Math.Max(1, options.MicroBatchSize)).Where((_, i) => i % group.Size == group.Rank))
        {
            using var scope = NewDisposeScope();
            using var batch = collate(chunk, device);
            var output = objective.Compute(model, batch);
            loss += output.LossSum.item<float>();
            correct += output.Correct.to(ScalarType.Float64).item<double>();
            AddMetrics(metricSums, output);
            count += batch.LossUnits;
        }
        model.train();
        (loss, correct, count, metricSums) = DataParallel.Sum(loss, correct, count, metricSums, group);
        if (count == 0) return new EvaluationTotals(double.NaN, double.NaN, new Dictionary<string, double>());
        var metrics = MetricMeans(metricSums, count);
        objective.CompleteMetrics(metrics);
        return new EvaluationTotals(loss / count, correct / count, metrics);
    }

    private const string CountPrefix = "\0count:";

    private static void AddMetrics(Dictionary<string, double> sums, ObjectiveOutput output)
    {
        foreach (var (name, value) in output.MetricSums ?? new Dictionary<string, Tensor>())
            sums[name] = sums.GetValueOrDefault(name) + value.to(ScalarType.Float64).item<double>();
        foreach (var (name, value) in output.MetricCounts ?? new Dictionary<string, Tensor>())
            sums[CountPrefix + name] = sums.GetValueOrDefault(CountPrefix + name) + value.to(ScalarType.Float64).item<double>();
    }

    /// <summary>Each metric sum over its own count when the objective gave one, else over the loss units.</summary>
    private static Dictionary<string, double> MetricMeans(IReadOnlyDictionary<string, double> sums, double units)
    {
        var means = new Dictionary<string, double>();
        foreach (var (name, sum) in sums)
        {
            if (name.StartsWith(CountPrefix, StringComparison.Ordinal)) continue;
            if (!sums.TryGetValue(CountPrefix + name, out var count)) means[name] = sum / units;
            else if (count > 0) means[name] = sum / count;
        }
        return means;
    }

    private TrainingBatch Collate(IReadOnlyList<TokenizedExample> examples, Device device) =>
        options.Packing ? BatchCollator.Pack(examples, options.MaxSeqLength, device) : BatchCollator.Pad(examples, device);

    private readonly Dictionary<int, int[]> permutations = [];

    /// <summary>
    /// The training examples' order for an epoch, from <see cref="SeededPermutation"/> of the epoch and the epoch's number
    /// (0-based; e.g. arranged by <see cref="NoDuplicatesBatchSampler"/>); null = that permutation itself. It must be a pure
    /// function of the epoch and the seeded permutation, so a resumed run sees the same order without the checkpoint
    /// storing it. It is called once per epoch, when the epoch's first step needs it.
    /// </summary>
    internal Func<int[], int, int[]>? ArrangeEpoch { get; init; }

    /// <summary>
    /// Replaces a collated training micro-batch before its loss units are counted, given where the micro-batch sits in
    /// the run (GKD answers its prompts anew); evaluation batches are never passed. It must dispose a batch it replaces and
    /// depend only on the batch, the index and the model's weights, so a resumed run replays the same batches.
    /// </summary>
    internal Func<TrainingBatch, MicroBatchIndex, TrainingBatch>? PrepareTrainingBatch { get; init; }

    /// <summary>
    /// The adapter's part in each step (AdaLoRA's regulariser and rank allocation): its regularisation term's gradient is
    /// added to every step's, its step hook runs after each optimizer step, and its state is checkpointed. Null (the
    /// default) = the hooks of the adapter injected into the model, when the trained parameters include its own.
    /// </summary>
    public IAdapterTrainingHooks? AdapterHooks { get; set; }

    // Back-propagates the adapter's regularisation term once per step, as PEFT's own training loop does: it adds the term to
    // every micro-batch's loss, and the transformers Trainer divides each by the accumulation steps, so the step's gradient
    // holds it once (the term reads no batch, see IAdapterTrainingHooks.RegularizationLoss); returns its value for the metrics.
    private static double? AddRegularization(IAdapterTrainingHooks? hooks)
    {
        if (hooks is null) return null;
        using var scope = NewDisposeScope();
        if (hooks.RegularizationLoss() is not { } loss) return null;
        loss.backward();
        return loss.item<float>();
    }

    /// <summary>The example order of an epoch: a permutation seeded by (seed, epoch), so a resumed run sees the same one.</summary>
    private int[] Permutation(int count, int epoch)
    {
        if (permutations.TryGetValue(epoch, out var p)) return p;
        p = SeededPermutation(count, options.Seed, epoch);
        if (ArrangeEpoch is { } arrange)
        {
            p = arrange(p, epoch);
            if (p.Length != count || p.Distinct().Count() != count)
                throw new InvalidOperationException($"an epoch's arranged order must hold each of the {count} examples once");
        }
        return permutations[epoch] = p;
    }

    /// <summary>0..count-1 shuffled by a generator seeded with (seed, epoch).</summary>
    internal static int[] SeededPermutation(int count, long seed, int epoch)
    {
        var p = Enumerable.Range(0, count).ToArray();
        new Random(unchecked((int)(seed * 7919 + epoch))).Shuffle(p);
        return p;
    }

    private void SaveAtomically(string dir) => IO.AtomicDirectory.Write(dir, saveModel);
}

/// <summary>One optimizer step's sums over its micro-batches; <see cref="Units"/> is what they are divided by.</summary>
public sealed record StepTotals(double LossSum, double Correct, int Tokens, int Units, IReadOnlyDictionary<string, double> MetricSums);

/// <summary>An evaluation's loss, accuracy and the objective's other metrics, each per loss unit.</summary>
public sealed record EvaluationTotals(double Loss, double Accuracy, IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// Where a training micro-batch sits, the same after a resume: <see cref="Run"/> numbers every micro-batch of the run
/// over all ranks, <see cref="MicroStep"/> counts one rank's micro-batches and so is the same on every rank for the
/// same step and position (transformers' per-process micro-step).
/// </summary>
internal readonly record struct MicroBatchIndex(long Run, long MicroStep)
{
    /// <summary>
    /// Micro-batch <paramref name="k"/> of step <paramref name="step"/> on <paramref name="rank"/> of
    /// <paramref name="ranks"/>: run index step·accumulation·ranks + rank·accumulation + k, micro-step step·accumulation + k.
    /// </summary>
    public static MicroBatchIndex Of(long step, int k, int accumulation, int rank, int ranks) =>
        new(step * accumulation * ranks + (long)rank * accumulation + k, step * accumulation + k);
}
