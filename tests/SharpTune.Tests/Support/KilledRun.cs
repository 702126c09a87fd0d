using SharpTune.Tests.Training;
using SharpTune.Tracking;
using SharpTune.Training;

namespace SharpTune.Tests.Support;

/// <summary>A fine-tuning run stopped the way a killed process stops, for the tests that resume it.</summary>
public static class KilledRun
{
    /// <summary>
    /// Runs <paramref name="options"/> and cancels it as soon as step <paramref name="step"/> has reported, so its output
    /// folder holds what a process killed there leaves (the checkpoints written so far, no final adapter).
    /// </summary>
    public static void StopAfterStep(TrainingOptions options, int step, Action<string>? log = null)
    {
        using var cancel = new CancellationTokenSource();
        var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == step) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => FineTuneJob.Run(options, progress: progress, log: log, cancellationToken: cancel.Token));
    }

    /// <summary>The training loss of every step a run logged to its metrics.jsonl, in order.</summary>
    public static List<double> Losses(string runDirectory) =>
        MetricsLog.ReadAll(Path.Combine(runDirectory, "metrics.jsonl")).Select(r => r["loss"]!.GetValue<double>()).ToList();

    /// <summary>
    /// Asserts that <paramref name="resumed"/> logged the same step losses as <paramref name="uninterrupted"/> (<paramref
    /// name="steps"/> of them, where given) and saved the same adapter tensors bit for bit; returns the uninterrupted run's.
    /// </summary>
    public static Dictionary<string, float[]> AssertResumedAsUninterrupted(FineTuneResult uninterrupted, FineTuneResult resumed, int? steps = null) =>
        AssertResumedAsUninterrupted(uninterrupted.Training.RunDirectory, uninterrupted.FinalDirectory, resumed.Training.RunDirectory,
            resumed.FinalDirectory, steps);

    /// <summary>The same, for runs given by their run folders and final adapter folders (runs of the executable).</summary>
    public static Dictionary<string, float[]> AssertResumedAsUninterrupted(string uninterruptedRun, string uninterruptedFinal,
        string resumedRun, string resumedFinal, int? steps = null)
    {
        var expectedLosses = Losses(uninterruptedRun);
        if (steps is { } count) Assert.Equal(count, expectedLosses.Count);
        Assert.Equal(expectedLosses, Losses(resumedRun));
        var expected = AdapterAssertions.SavedTensors(uninterruptedFinal);
        var actual = AdapterAssertions.SavedTensors(resumedFinal);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, values) in expected) Assert.Equal(values, actual[name]);
        return expected;
    }
}
