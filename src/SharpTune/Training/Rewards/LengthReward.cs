namespace SharpTune.Training.Rewards;

/// <summary>
/// <c>length</c>: DAPO's soft overlong punishment (TRL's <c>get_soft_overlong_punishment</c>). With L = the completion's
/// tokens, L_max = max_completion_length and a buffer L_cache: 0 when L ≤ L_max − L_cache, falling linearly to −1 at
/// L_max ((L_max − L_cache − L) / L_cache), and −1 beyond.
/// </summary>
public sealed class LengthReward : PerSampleReward
{
    private readonly int maxLength;
    private readonly int cache;

    /// <param name="cache">The buffer L_cache; 0 = a quarter of <paramref name="maxLength"/>.</param>
    public LengthReward(int maxLength, int cache = 0)
    {
        if (maxLength <= 0) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "max_completion_length must be positive");
        this.maxLength = maxLength;
        this.cache = cache > 0 ? Math.Min(cache, maxLength) : Math.Max(1, maxLength / 4);
    }

    public override string Name => "length";

    public override double? Score(RewardSample sample)
    {
        var length = sample.CompletionTokens;
        if (length <= maxLength - cache) return 0.0;
        if (length <= maxLength) return (double)(maxLength - cache - length) / cache;
        return -1.0;
    }
}
