using System.Text.Json.Nodes;
using SharpTune.Data;

namespace SharpTune.Training.Rewards;

/// <summary>One sampled completion to score, with the prompt and the data row it answers.</summary>
/// <param name="Index">Its row in the generation batch (prompt = Index / G).</param>
/// <param name="Prompt">The prompt's text (turn contents joined with newlines).</param>
/// <param name="Completion">The completion's text, special tokens removed.</param>
/// <param name="PromptTurns">The prompt as chat turns.</param>
/// <param name="Fields">Every field of the prompt's data row (e.g. <c>answer</c>), as TRL passes dataset columns.</param>
/// <param name="CompletionTokens">The completion's length in tokens (EOS included when sampled).</param>
/// <param name="Truncated">The completion hit max_completion_length without ending.</param>
/// <param name="Location">"file:line" of the prompt's row.</param>
public sealed record RewardSample(int Index, string Prompt, string Completion, IReadOnlyList<ChatTurn> PromptTurns, JsonObject Fields,
    int CompletionTokens, bool Truncated, string Location = "")
{
    /// <summary>The completion's token ids as sampled, its stop token included when it ended (TRL's <c>completion_ids</c> reward argument).</summary>
    public IReadOnlyList<int> CompletionIds { get; init; } = [];
}

/// <summary>
/// A reward function for GRPO (TRL's reward_funcs): one score per sample, higher is better. Return null for a sample the
/// function does not apply to (TRL's None: it is left out of that completion's sum). Throwing, or returning NaN or an
/// infinity, stops the step before any update, with an error naming the function and the sample.
/// </summary>
public interface IRewardFunction
{
    /// <summary>The name its metrics are logged under (rewards/NAME/mean).</summary>
    string Name { get; }

    /// <summary>Scores every sample of a generation batch, in order.</summary>
    Task<IReadOnlyList<double?>> ScoreAsync(IReadOnlyList<RewardSample> samples, CancellationToken cancellationToken);
}

/// <summary>A reward function that scores each sample on its own, synchronously (most built-ins).</summary>
public abstract class PerSampleReward : IRewardFunction
{
    public abstract string Name { get; }

    /// <summary>The score of one sample, or null when the function does not apply to it.</summary>
    public abstract double? Score(RewardSample sample);

    public Task<IReadOnlyList<double?>> ScoreAsync(IReadOnlyList<RewardSample> samples, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<double?>>(samples.Select(Score).ToArray());

    /// <summary>The sample's reference text from <paramref name="field"/> (a string, or any JSON value as text); null when absent.</summary>
    protected static string? Reference(RewardSample sample, string field) => sample.Fields[field] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var node => node.ToJsonString(),
    };
}
