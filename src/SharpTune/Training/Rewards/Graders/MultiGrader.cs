namespace SharpTune.Training.Rewards.Graders;

/// <summary>
/// OpenAI's <c>multi</c> grader: runs each named sub-grader and combines their scores with <c>calculate_output</c>
/// (e.g. <c>0.5 * fuzzy + 0.5 * exact</c>).
/// </summary>
public sealed class MultiGrader(string name, IReadOnlyDictionary<string, IRewardFunction> graders, GraderFormula formula) : IRewardFunction
{
    public string Name => name;

    public async Task<IReadOnlyList<double?>> ScoreAsync(IReadOnlyList<RewardSample> samples, CancellationToken cancellationToken)
    {
        var scores = new Dictionary<string, IReadOnlyList<double?>>();
        foreach (var (key, grader) in graders)
        {
            try { scores[key] = await grader.ScoreAsync(samples, cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (e is not OperationCanceledException) { throw new InvalidOperationException($"sub-grader '{key}': {e.Message}", e); }
        }
        var result = new double?[samples.Count];
        for (var i = 0; i < samples.Count; i++)
        {
            var values = new Dictionary<string, double>();
            foreach (var (key, column) in scores) values[key] = column[i] ?? 0.0;
            result[i] = formula.Evaluate(values);
        }
        return result;
    }
}
