using System.Diagnostics;
using SharpTune.Training;

namespace SharpTune.Comparison;

/// <summary>
/// Runs the same data, budget and objective through several fine-tuning methods (each with <see cref="FineTuneJob"/>
/// in its own run directory) and tabulates trainable parameters, peak memory, time, throughput, best validation
/// loss and test metrics — the evidence for choosing a method.
/// </summary>
public static class MethodComparison
{
    /// <summary>Short names accepted by <c>sharptune compare --methods</c> for registered method names.</summary>
    public static IReadOnlyDictionary<string, string> Aliases { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["prompt"] = "prompt-tuning",
        ["prefix"] = "prefix-tuning",
    };

    /// <summary>The registered <c>--method</c> name for <paramref name="name"/>; a clear error naming the available ones otherwise.</summary>
    public static string Resolve(string name)
    {
        var registered = Aliases.GetValueOrDefault(name.Trim(), name.Trim());
        var match = FineTuningMethods.Names.FirstOrDefault(n => string.Equals(n, registered, StringComparison.OrdinalIgnoreCase));
        return match ?? throw new ArgumentException(
            $"method '{name}'{(registered != name.Trim() ? $" ({registered})" : "")} is not available; available methods: " +
            string.Join(", ", FineTuningMethods.Names) +
            (Aliases.Count > 0 ? $" (aliases: {string.Join(", ", Aliases.Select(a => $"{a.Key} = {a.Value}"))})" : ""));
    }

    /// <summary>
    /// Trains <paramref name="options"/> once per method into <c>OUTPUT/&lt;method&gt;/</c> and writes comparison.md,
    /// comparison.json and the plots into <paramref name="outputDir"/>. Every method, and the options with it, is checked
    /// before any training.
    /// </summary>
    public static ComparisonResult Run(TrainingOptions options, IReadOnlyList<string> methods, string outputDir,
        IProgress<ComparisonProgress>? progress = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        if (methods.Count == 0) throw new ArgumentException("no methods to compare", nameof(methods));
        var resolved = methods.Select(m => (Name: m.Trim(), Registered: Resolve(m))).ToArray();
        var duplicate = resolved.GroupBy(m => m.Registered, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"method '{duplicate.Key}' is listed more than once");
        // A method the options rule out (full fine-tuning of a quantized base) fails now, not after the others have trained.
        foreach (var (name, registered) in resolved)
        {
            try { FineTuneJob.Validate(options with { Method = registered }); }
            catch (ArgumentException e) { throw new ArgumentException($"method '{name}': {e.Message}", e); }
        }
        Directory.CreateDirectory(outputDir);

        var rows = new List<ComparisonRow>();
        for (var i = 0; i < resolved.Length; i++)
        {
            var (name, registered) = resolved[i];
            var runOptions = options with { Method = registered, Output = Path.Combine(outputDir, registered) };
            var index = i;
            var runProgress = progress is null ? null : new ForwardingProgress(p => progress.Report(new ComparisonProgress(name, index, resolved.Length, p)));
            progress?.Report(new ComparisonProgress(name, i, resolved.Length, null));
            var clock = Stopwatch.StartNew();
            FineTuneResult result;
            long peak, baseline;
            using (var memory = new PeakMemorySampler())
            {
                result = FineTuneJob.Run(runOptions, resume: false, runProgress, log is null ? null : m => log($"[{name}] {m}"), cancellationToken);
                (peak, baseline) = (memory.Peak, memory.Baseline);
            }
            var seconds = clock.Elapsed.TotalSeconds;
            var exactMatch = options.Test is { } test && options.Objective.Trim().Equals("sft", StringComparison.OrdinalIgnoreCase)
                ? TestExactMatch.Score(options, test, result.FinalDirectory, cancellationToken)
                : null;
            var training = result.Training;
            rows.Add(new ComparisonRow(name, registered, result.Parameters.Trainable, result.Parameters.Total,
                peak / 1048576.0, (peak - baseline) / 1048576.0, seconds,
                training.TokensProcessed / Math.Max(1e-9, training.TrainingSeconds), training.BestValidationLoss, result.TestLoss,
                result.TestLoss is { } loss && options.Objective.Trim().Equals("sft", StringComparison.OrdinalIgnoreCase) ? Math.Exp(loss) : null,
                exactMatch, runOptions.Output) { Steps = training.StepsCompleted, TrainingTokens = training.TokensProcessed });
        }
        return ComparisonReport.Write(rows, outputDir,
            $"Fine-tuning methods on {Path.GetFileName(options.Data)} ({Path.GetFileName(Path.TrimEndingDirectorySeparator(options.Model))}, objective {options.Objective})");
    }

    private sealed class ForwardingProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
