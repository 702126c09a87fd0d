using SharpTune.Distributed;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// What the trainer does differently on several ranks: which micro-batches are this rank's, the step's totals summed
/// across ranks, and the start state (weights, optimizer, counters) taken from rank 0, which alone reads a checkpoint,
/// so a run resumes with any number of ranks and the ranks need no shared folder.
/// </summary>
internal static class DataParallel
{
    /// <summary>
    /// This rank's share of a step's micro-batches: rank r takes the r-th run of <c>accumulation</c> consecutive
    /// micro-batches, so the ranks together see exactly the global batch a single process would.
    /// </summary>
    public static T[][] ShareOf<T>(T[][] microBatches, int accumulation, IProcessGroup group) =>
        group.Size == 1 ? microBatches : microBatches.Skip(group.Rank * accumulation).Take(accumulation).ToArray();

    /// <summary>Every rank's loss units of the step summed, with whether any rank was asked to stop (so all stop together).</summary>
    public static (int Units, bool Stop) Agree(int localUnits, bool localStop, IProcessGroup group)
    {
        if (group.Size == 1) return (localUnits, localStop);
        Span<double> values = [localUnits, localStop ? 1 : 0];
        group.AllReduceSum(values);
        return ((int)values[0], values[1] > 0);
    }

    /// <summary>The step's totals summed across ranks.</summary>
    public static StepTotals Sum(StepTotals totals, int units, IProcessGroup group)
    {
        if (group.Size == 1) return totals;
        var (loss, correct, tokens, metrics) = Sum(totals.LossSum, totals.Correct, totals.Tokens, totals.MetricSums, group);
        return new StepTotals(loss, correct, (int)tokens, units, metrics);
    }

    /// <summary>
    /// Loss, correct predictions, a count and named metric sums added across ranks. A rank that scored nothing (an
    /// evaluation shard left empty) has no metric names; the others agree on theirs (one objective), and every rank sends
    /// a vector of the longest length, so the collective always matches.
    /// </summary>
    public static (double Loss, double Correct, long Count, Dictionary<string, double> Metrics) Sum(
        double loss, double correct, long count, IReadOnlyDictionary<string, double> metrics, IProcessGroup group)
    {
        if (group.Size == 1) return (loss, correct, count, metrics.ToDictionary());
        var names = metrics.Keys.Order(StringComparer.Ordinal).ToArray();
        Span<double> width = [names.Length];
        group.AllReduceSum(width);   // the sum is at least the longest; extra slots stay zero
        var values = new double[3 + (int)width[0]];
        (values[0], values[1], values[2]) = (loss, correct, count);
        for (var i = 0; i < names.Length; i++) values[3 + i] = metrics[names[i]];
        group.AllReduceSum(values);
        return (values[0], values[1], (long)values[2], names.Select((n, i) => (n, values[3 + i])).ToDictionary(x => x.n, x => x.Item2));
    }

    /// <summary>
    /// Rank 0's starting point on every rank: its weights (restored from the newest checkpoint when resuming), its
    /// optimizer state and its counters. Returns the restored state, or null when training starts from step 0.
    /// </summary>
    public static TrainerState? Start(string runDir, bool resume, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamWOptimizer optimizer, IProcessGroup group, Peft.IAdapterTrainingHooks? hooks = null)
    {
        var restored = group.Rank == 0 && resume ? TrainingCheckpoint.RestoreLatest(runDir, trainable, optimizer, hooks) : null;
        if (group.Size == 1) return restored;
        Span<double> counters = restored is { } s
            ? [1, s.Step, s.BestValidationLoss ?? double.NaN, s.BestStep ?? -1, s.EvaluationsWithoutImprovement, s.OptimizerSteps]
            : [0, 0, 0, 0, 0, 0];
        if (group.Rank != 0) counters.Clear();
        group.AllReduceSum(counters);
        GradientAllReduce.BroadcastParameters(trainable.Select(t => t.Parameter), group);
        if (counters[0] == 0) return null;
        var state = new TrainerState((int)counters[1], double.IsNaN(counters[2]) ? null : counters[2],
            counters[3] < 0 ? null : (int)counters[3], (int)counters[4], (long)counters[5]);
        var buffers = new Dictionary<string, Tensor>();
        foreach (var (name, tensor) in optimizer.StateTensors())
        {
            var buffer = tensor.detach().cpu().contiguous().clone();
            group.Broadcast(buffer);
            buffers[name] = buffer;
        }
        optimizer.LoadState(name => buffers.Remove(name, out var t) ? t : null, state.OptimizerSteps);
        return state;
    }
}
