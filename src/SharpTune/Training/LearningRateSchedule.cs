namespace SharpTune.Training;

/// <summary>
/// Learning-rate schedules of transformers' get_scheduler (optimization.py), as a pure function of the step so a resumed
/// run needs no scheduler state. Each value is the peak times the schedule's factor, computed with transformers' own
/// expressions so a step past the warmup gets the very double transformers' LambdaLR gives it: <c>constant</c> (no warmup,
/// as get_constant_schedule ignores it), <c>constant_with_warmup</c>, <c>linear</c> and <c>cosine</c> (half a cosine,
/// num_cycles 0.5). One deliberate difference: during warmup update number s (0-based) uses the factor transformers
/// gives update s + 1, (s + 1) / warmup, so the first update is not spent at a learning rate of 0 (docs/training.md).
/// </summary>
public static class LearningRateSchedule
{
    /// <summary>The schedule names <see cref="At"/> knows.</summary>
    public static IReadOnlyList<string> Names { get; } = ["constant", "constant_with_warmup", "linear", "cosine"];

    /// <summary>
    /// The learning rate for update number <paramref name="step"/> (0-based) of <paramref name="totalSteps"/>.
    /// <paramref name="minRatio"/> is the floor as a fraction of the peak (transformers' cosine_with_min_lr min_lr_rate for
    /// cosine; a lower bound for linear).
    /// </summary>
    public static double At(string schedule, double peak, int step, int totalSteps, int warmupSteps, double minRatio = 0.0)
    {
        if (!Names.Contains(schedule))
            throw new ArgumentException($"unknown lr schedule '{schedule}' ({string.Join(", ", Names)})", nameof(schedule));
        if (schedule == "constant") return peak;   // get_constant_schedule: warmup has no effect
        if (step < warmupSteps)
            return peak * ((double)(step + 1) / Math.Max(1, warmupSteps));
        var decaySteps = (double)Math.Max(1, totalSteps - warmupSteps);
        switch (schedule)
        {
            case "constant_with_warmup":
                return peak * 1.0;
            case "linear":   // _get_linear_schedule_with_warmup_lr_lambda
                return peak * Math.Max(minRatio, Math.Max(0.0, (totalSteps - step) / decaySteps));
            default:         // _get_cosine_schedule_with_warmup_lr_lambda, num_cycles 0.5, min_lr_rate
                var progress = (step - warmupSteps) / decaySteps;
                var factor = 0.5 * (1.0 + Math.Cos(Math.PI * 0.5 * 2.0 * progress));
                return peak * Math.Max(0, factor * (1 - minRatio) + minRatio);
        }
    }

    /// <summary>
    /// The warmup length: <paramref name="warmupSteps"/> when set (not negative), else ⌈<paramref name="totalSteps"/> ×
    /// <paramref name="warmupRatio"/>⌉ as transformers' TrainingArguments.get_warmup_steps rounds it (up, never to nearest).
    /// </summary>
    public static int WarmupSteps(int totalSteps, double warmupRatio, int warmupSteps) =>
        warmupSteps >= 0 ? warmupSteps : (int)Math.Ceiling(totalSteps * warmupRatio);
}
