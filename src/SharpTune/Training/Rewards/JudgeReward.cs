using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;

namespace SharpTune.Training.Rewards;

/// <summary>
/// <c>judge</c>: an LLM grader through any <see cref="IChatClient"/> (an OpenAI-compatible endpoint, a local model via
/// <c>LocalChatClient</c>, …). Each completion is sent with the prompt and, when the row has one, the reference answer;
/// the grader answers with a score from 0 to 10, read as the first number of its reply and scaled to [0, 1]. A reply
/// without a number in range is an error naming the sample (the step is then not applied).
/// </summary>
public sealed partial class JudgeReward(IChatClient client, string? instructions = null, string field = "answer", int maxParallel = 4)
    : IRewardFunction
{
    /// <summary>The grading instructions used when none are given.</summary>
    public const string DefaultInstructions =
        "You grade answers. Read the question, the reference answer if one is given, and the response. Reply with a single " +
        "integer score from 0 (wrong or useless) to 10 (fully correct and well-formed), and nothing else.";

    public string Name => "judge";

    public async Task<IReadOnlyList<double?>> ScoreAsync(IReadOnlyList<RewardSample> samples, CancellationToken cancellationToken)
    {
        var scores = new double?[samples.Count];
        using var gate = new SemaphoreSlim(Math.Max(1, maxParallel));
        await Task.WhenAll(samples.Select(async (sample, i) =>
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try { scores[i] = await GradeAsync(sample, cancellationToken).ConfigureAwait(false); }
            finally { gate.Release(); }
        })).ConfigureAwait(false);
        return scores;
    }

    private async Task<double> GradeAsync(RewardSample sample, CancellationToken cancellationToken)
    {
        var reference = sample.Fields[field]?.ToString();
        var user = $"Question:\n{sample.Prompt}\n\n" + (reference is null ? "" : $"Reference answer:\n{reference}\n\n") +
                   $"Response:\n{sample.Completion}\n\nScore (0-10):";
        var response = await client.GetResponseAsync(
            [new ChatMessage(ChatRole.System, instructions ?? DefaultInstructions), new ChatMessage(ChatRole.User, user)],
            new ChatOptions { Temperature = 0, MaxOutputTokens = 16 }, cancellationToken).ConfigureAwait(false);
        var text = response.Text ?? "";
        var match = FirstNumber().Match(text);
        if (!match.Success || !double.TryParse(match.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var score) || score is < 0 or > 10)
            throw new InvalidDataException($"the grader's reply is not a score from 0 to 10: \"{(text.Length > 80 ? text[..80] + "…" : text)}\"");
        return score / 10;
    }

    [GeneratedRegex(@"\d+(?:\.\d+)?")]
    private static partial Regex FirstNumber();
}
