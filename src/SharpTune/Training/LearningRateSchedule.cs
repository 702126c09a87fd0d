namespace SharpTune.Training;

/// <summary>
/// Learning-rate schedules shaped as transformers' get_*_schedule_with_warmup, as a pure function of the step so a
/// resumed run needs no scheduler state. Warmup ramps linearly to the peak; unlike transformers the first update
/// already uses peak/warmup rather than 0, so no step is wasted.
/// </summary>
public static class LearningRateSchedule
{
    /// <summary>The learning rate for update number <paramref name="step"/> (0-based) of <paramref name="totalSteps"/>.</summary>
    public static double At(string schedule, double peak, int step, int totalSteps, int warmupSteps, double minRatio = 0.0)
    {
        if (step < warmupSteps)
            return peak * (step + 1) / warmupSteps;
        var decaySteps = Math.Max(1, totalSteps - warmupSteps);
        var progress = Math.Clamp((double)(step - warmupSteps) / decaySteps, 0, 1);
        return schedule switch
        {
            "constant" => peak,
            "linear" => peak * Math.Max(minRatio, 1 - progress),
            "cosine" => peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress))),
            _ => throw new ArgumentException($"unknown lr schedule '{schedule}' (constant, linear or cosine)"),
        };
    }
}
