namespace SharpTune.Training;

/// <summary>
/// Which examples each optimizer step takes, as transformers' Trainer walks its DataLoader: every epoch is a fresh
/// permutation cut into ⌈examples / micro_batch_size⌉ micro-batches (the last one short when the size does not divide),
/// and every <c>gradient_accumulation</c> micro-batches make a step, the epoch's last step taking whatever micro-batches
/// remain. An epoch therefore has ⌈⌈examples / micro_batch_size⌉ / accumulation⌉ steps and a run of E epochs E times
/// that (transformers' <c>num_update_steps_per_epoch</c> and <c>max_steps</c>). With several ranks, a step takes
/// accumulation × ranks consecutive micro-batches of the epoch, each rank a run of <c>accumulation</c> of them, which for
/// one rank is transformers' order exactly. A pure function of the step, so a resumed run takes the same batches.
/// </summary>
public sealed class TrainingSchedule
{
    /// <param name="examples">Training examples (at least 1).</param>
    /// <param name="microBatchSize">Examples per micro-batch (per_device_train_batch_size).</param>
    /// <param name="accumulation">Micro-batches per rank and step (gradient_accumulation_steps).</param>
    /// <param name="epochs">Passes over the data when <paramref name="maxSteps"/> is not positive; a fraction stops inside an epoch.</param>
    /// <param name="maxSteps">Optimizer steps of the run when positive (max_steps), else from the epochs.</param>
    /// <param name="ranks">Data-parallel processes sharing each step.</param>
    public TrainingSchedule(int examples, int microBatchSize, int accumulation, double epochs, int maxSteps, int ranks = 1)
    {
        if (examples < 1) throw new ArgumentException("no training examples", nameof(examples));
        if (microBatchSize < 1) throw new ArgumentException($"micro_batch_size must be at least 1, not {microBatchSize}", nameof(microBatchSize));
        if (accumulation < 1) throw new ArgumentException($"gradient_accumulation must be at least 1, not {accumulation}", nameof(accumulation));
        if (ranks < 1) throw new ArgumentException($"ranks must be at least 1, not {ranks}", nameof(ranks));
        Examples = examples;
        MicroBatchSize = microBatchSize;
        Accumulation = accumulation;
        Ranks = ranks;
        MicroBatchesPerEpoch = CeilDiv(examples, microBatchSize);
        StepsPerEpoch = Math.Max(1, CeilDiv(MicroBatchesPerEpoch, accumulation * ranks));
        if (maxSteps <= 0 && !(double.IsFinite(epochs) && epochs > 0))
            throw new ArgumentException($"epochs must be a positive number, not {epochs}", nameof(epochs));
        TotalSteps = maxSteps > 0 ? maxSteps : Math.Max(1, (int)Math.Ceiling(epochs * StepsPerEpoch));
    }

    public int Examples { get; }
    public int MicroBatchSize { get; }
    public int Accumulation { get; }
    public int Ranks { get; }
    /// <summary>⌈examples / micro_batch_size⌉: the DataLoader's length (drop_last off).</summary>
    public int MicroBatchesPerEpoch { get; }
    /// <summary>transformers' <c>num_update_steps_per_epoch</c>.</summary>
    public int StepsPerEpoch { get; }
    /// <summary>Optimizer steps of the whole run (transformers' <c>max_steps</c>).</summary>
    public int TotalSteps { get; }

    /// <summary>The epoch step <paramref name="step"/> (counting from 0) belongs to.</summary>
    public int EpochOf(int step) => step / StepsPerEpoch;

    /// <summary>
    /// The micro-batches of step <paramref name="step"/> (from 0) as positions [Start, Start + Count) in its epoch's
    /// example order, all ranks' in rank order.
    /// </summary>
    public IReadOnlyList<(int Start, int Count)> MicroBatches(int step)
    {
        var first = step % StepsPerEpoch * Accumulation * Ranks;
        var last = Math.Min(MicroBatchesPerEpoch, first + Accumulation * Ranks);
        var batches = new List<(int, int)>();
        for (var j = first; j < last; j++)
        {
            var start = j * MicroBatchSize;
            batches.Add((start, Math.Min(MicroBatchSize, Examples - start)));
        }
        return batches;
    }

    /// <summary>
    /// The epoch reached once step <paramref name="step"/> (from 0) is done, as transformers' <c>state.epoch</c>:
    /// whole epochs plus the share of this epoch's micro-batches consumed.
    /// </summary>
    public double EpochAfter(int step)
    {
        var consumed = Math.Min(MicroBatchesPerEpoch, (step % StepsPerEpoch + 1) * Accumulation * Ranks);
        return EpochOf(step) + (double)consumed / MicroBatchesPerEpoch;
    }

    /// <summary>
    /// An every-N-steps setting in steps, as transformers' <c>TrainerState.compute_steps</c> reads logging_steps,
    /// eval_steps and save_steps: a value below 1 is that fraction of the run's <paramref name="totalSteps"/>, rounded
    /// up; 0 or less is 0.
    /// </summary>
    public static int Interval(double every, int totalSteps) =>
        every <= 0 ? 0 : every < 1 ? (int)Math.Ceiling(totalSteps * every) : (int)every;

    /// <summary>
    /// A run's evaluation, logging and saving intervals in steps (<see cref="Interval"/> of each setting): evaluation and
    /// progress every step when their setting is 0, saving only at the end.
    /// </summary>
    internal static (int Eval, int Log, int Save) Intervals(TrainingOptions options, int totalSteps) =>
        (Math.Max(1, Interval(options.EvalEvery, totalSteps)), Math.Max(1, Interval(options.LogEvery, totalSteps)),
            Interval(options.SaveEvery, totalSteps));

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;
}
