using System.Globalization;
using Microsoft.Extensions.AI;

namespace SharpTune.Training.Rewards;

/// <summary>A reward function and its weight in the summed reward (TRL's reward_weights).</summary>
public sealed record WeightedReward(IRewardFunction Function, double Weight = 1.0);

/// <summary>
/// The built-in rewards by name (<c>--reward NAME</c> or <c>NAME=WEIGHT</c>): exact, number, regex, json-schema, length,
/// bleu, chrf, rouge, judge and reward-model (a trained reward model); custom <see cref="IRewardFunction"/>s are added by the library user.
/// </summary>
public static class RewardRegistry
{
    public static IReadOnlyList<string> Names { get; } = ["exact", "number", "regex", "json-schema", "length", "bleu", "chrf", "rouge", "judge", "reward-model"];

    /// <summary>Splits "NAME" or "NAME=WEIGHT".</summary>
    public static (string Name, double Weight) ParseSpec(string spec)
    {
        var at = spec.IndexOf('=');
        var name = (at < 0 ? spec : spec[..at]).Trim().ToLowerInvariant();
        if (at < 0) return (name, 1.0);
        var text = spec[(at + 1)..].Trim();
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var weight) || !double.IsFinite(weight))
            throw new ArgumentException($"reward '{spec}': the weight '{text}' is not a number (write NAME=WEIGHT, e.g. exact=2)");
        return (name, weight);
    }

    /// <summary>The rewards <paramref name="options"/> asks for, plus <paramref name="custom"/> ones.</summary>
    /// <param name="judge">The grader for the <c>judge</c> reward (required when it is asked for).</param>
    /// <param name="device">Where the <c>reward-model</c> reward's model runs: the policy's device (default the CPU).</param>
    public static IReadOnlyList<WeightedReward> Create(TrainingOptions options, IChatClient? judge = null,
        IEnumerable<WeightedReward>? custom = null, TorchSharp.torch.Device? device = null)
    {
        var rewards = new List<WeightedReward>();
        foreach (var spec in options.Rewards ?? [])
        {
            var (name, weight) = ParseSpec(spec);
            rewards.Add(new WeightedReward(Create(name, options, judge, device), weight));
        }
        rewards.AddRange(custom ?? []);
        if (rewards.Count == 0)
            throw new ArgumentException($"objective {options.Objective.Trim().ToLowerInvariant()} needs at least one reward function: --reward NAME[=WEIGHT] with NAME one of {string.Join(", ", Names)}");
        var duplicate = rewards.GroupBy(r => r.Function.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"reward '{duplicate.Key}' is given twice; give it once with its weight");
        return rewards;
    }

    private static IRewardFunction Create(string name, TrainingOptions options, IChatClient? judge, TorchSharp.torch.Device? device) => name switch
    {
        "exact" => new ExactReward(options.RewardField),
        "number" => new NumberReward(options.RewardField),
        "regex" => new RegexReward(options.RewardPattern
            ?? throw new ArgumentException("the regex reward needs reward_pattern (--reward-pattern)")),
        "json-schema" or "json_schema" => options.RewardSchema is { } path
            ? new JsonSchemaReward(File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"reward_schema not found: {path}", path), path)
            : new JsonSchemaReward(null),
        "length" => new LengthReward(GrpoSettings.MaxCompletionTokens(options)),   // online DPO's limit is max_new_tokens
        "bleu" => new BleuReward(options.RewardField),
        "chrf" => new ChrfReward(options.RewardField),
        "rouge" => new RougeReward(options.RewardField),
        "judge" => new JudgeReward(judge ?? throw new ArgumentException(
            "the judge reward needs a grader: judge_url and judge_model (an OpenAI-compatible endpoint), or an IChatClient from the library"),
            options.JudgePrompt, options.RewardField),
        "reward-model" or "reward_model" => new RewardModelReward(Classification.TextClassifier.Load(
            options.RewardModel ?? throw new ArgumentException("the reward-model reward needs reward_model (--reward-model): a trained reward model's folder"),
            options.RewardModelAdapter, device: device), ownsModel: true),
        _ => throw new ArgumentException($"unknown reward '{name}' (choose from {string.Join(", ", Names)}, or add an IRewardFunction in code)"),
    };
}
