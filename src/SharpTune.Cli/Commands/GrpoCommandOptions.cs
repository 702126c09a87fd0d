using System.ClientModel;
using System.CommandLine;
using Microsoft.Extensions.AI;
using OpenAI;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`train` options of the preference family, GRPO, RLOO and online DPO (TRL's names with dashes); flags win over the YAML config.</summary>
internal sealed class GrpoCommandOptions
{
    private readonly Option<int?> numGenerations = new("--num-generations") { Description = "GRPO/RLOO: completions per prompt G (default: GRPO 8, RLOO 2; online DPO always 2)" };
    private readonly Option<int?> maxCompletion = new("--max-completion-length") { Description = "GRPO/RLOO: longest completion in tokens (default 512; online DPO and GKD take --max-new-tokens)" };
    private readonly Option<int?> maxPrompt = new("--max-prompt-length") { Description = "GRPO/RLOO/online DPO: cut longer prompts from the left (default: no limit)" };
    private readonly Option<double?> temperature = new("--temperature") { Description = "GRPO/RLOO/online DPO and GKD: sampling temperature (default: GRPO and RLOO 1, online DPO and GKD 0.9)" };
    private readonly Option<double?> topP = new("--top-p") { Description = "GRPO/RLOO/online DPO: nucleus sampling (default 1 = off)" };
    private readonly Option<int?> topK = new("--top-k") { Description = "GRPO/RLOO/online DPO: top-k sampling (default 0 = off)" };
    private readonly Option<int?> iterations = new("--num-iterations") { Description = "GRPO/RLOO: optimisation passes μ per generated batch (default 1)" };
    private readonly Option<double?> epsilon = new("--epsilon") { Description = "GRPO/RLOO: clip range ε (default 0.2)" };
    private readonly Option<double?> epsilonHigh = new("--epsilon-high") { Description = "GRPO/RLOO: upper clip ε (default ε; DAPO uses 0.28)" };
    private readonly Option<string?> scaleRewards = new("--scale-rewards") { Description = "GRPO: group|batch|none (default group)" };
    private readonly Option<bool?> normalizeAdvantages = new("--normalize-advantages") { Description = "RLOO: normalise advantages over the generation batch (mean 0, std 1)" };
    private readonly Option<string?> rewardClipRange = new("--reward-clip-range") { Description = "RLOO: MIN,MAX the summed reward is clipped to" };
    private readonly Option<bool?> maskTruncated = new("--mask-truncated-completions") { Description = "GRPO/RLOO: leave truncated completions out of the loss" };
    private readonly Option<string[]> rewards = new("--reward") { Description = "GRPO/RLOO/online DPO: NAME or NAME=WEIGHT, repeatable: exact, number, regex, json-schema, length, bleu, chrf, rouge, judge, reward-model" };
    private readonly Option<string?> rewardField = new("--reward-field") { Description = "GRPO/RLOO/online DPO: the data field rewards compare with (default answer)" };
    private readonly Option<string?> rewardPattern = new("--reward-pattern") { Description = "GRPO/RLOO/online DPO regex reward: the pattern completions must match" };
    private readonly Option<string?> rewardSchema = new("--reward-schema") { Description = "GRPO/RLOO/online DPO json-schema reward: the JSON Schema file" };
    private readonly Option<string?> judgeUrl = new("--judge-url") { Description = "GRPO/RLOO/online DPO judge reward: OpenAI-compatible base URL (key from OPENAI_API_KEY)" };
    private readonly Option<string?> judgeModel = new("--judge-model") { Description = "GRPO/RLOO/online DPO judge reward: the grader model" };
    private readonly Option<string?> rewardModel = new("--reward-model") { Description = "GRPO/RLOO/online DPO reward-model reward: a trained reward model folder (train --task reward)" };
    private readonly Option<string?> rewardModelAdapter = new("--reward-model-adapter") { Description = "GRPO/RLOO/online DPO reward-model reward: a SEQ_CLS adapter on --reward-model" };
    private readonly Option<double?> missingEosPenalty = new("--missing-eos-penalty") { Description = "Online DPO: subtracted from the score of a completion without EOS (default: none)" };
    private readonly Option<string?> betaPerEpoch = new("--beta-per-epoch") { Description = "Online DPO: B1,B2,... one β per epoch, the last kept for later epochs (instead of --beta; TRL's beta list)" };
    private readonly Option<double?> simpoGamma = new("--simpo-gamma") { Description = "SimPO: target reward margin γ (default 0.5)" };
    private readonly Option<double?> cpoAlpha = new("--cpo-alpha") { Description = "SimPO: weight of the chosen answers' NLL (default 0)" };
    private readonly Option<double?> desirableWeight = new("--desirable-weight") { Description = "KTO: weight of desirable examples (default 1)" };
    private readonly Option<double?> undesirableWeight = new("--undesirable-weight") { Description = "KTO: weight of undesirable examples (default 1)" };

    public static GrpoCommandOptions Create() => new();

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { numGenerations, maxCompletion, maxPrompt, temperature, topP, topK, iterations, epsilon, epsilonHigh,
                     scaleRewards, normalizeAdvantages, rewardClipRange, maskTruncated, rewards, rewardField, rewardPattern, rewardSchema, judgeUrl, judgeModel, rewardModel, rewardModelAdapter, missingEosPenalty, betaPerEpoch, simpoGamma, cpoAlpha,
                     desirableWeight, undesirableWeight })
            command.Options.Add(option);
    }

    public TrainingOptions Apply(ParseResult parse, TrainingOptions o) => o with
    {
        NumGenerations = parse.GetValue(numGenerations) ?? o.NumGenerations,
        MaxCompletionLength = parse.GetValue(maxCompletion) ?? o.MaxCompletionLength,
        MaxPromptLength = parse.GetValue(maxPrompt) ?? o.MaxPromptLength,
        Temperature = parse.GetValue(temperature) ?? o.Temperature,
        TopP = parse.GetValue(topP) ?? o.TopP,
        TopK = parse.GetValue(topK) ?? o.TopK,
        NumIterations = parse.GetValue(iterations) ?? o.NumIterations,
        Epsilon = parse.GetValue(epsilon) ?? o.Epsilon,
        EpsilonHigh = parse.GetValue(epsilonHigh) ?? o.EpsilonHigh,
        ScaleRewards = parse.GetValue(scaleRewards) ?? o.ScaleRewards,
        NormalizeAdvantages = parse.GetValue(normalizeAdvantages) ?? o.NormalizeAdvantages,
        RewardClipRange = parse.GetValue(rewardClipRange) is { } range ? ParseRange(range) : o.RewardClipRange,
        MaskTruncatedCompletions = parse.GetValue(maskTruncated) ?? o.MaskTruncatedCompletions,
        Rewards = parse.GetValue(rewards) is { Length: > 0 } given ? given : o.Rewards,
        RewardField = parse.GetValue(rewardField) ?? o.RewardField,
        RewardPattern = parse.GetValue(rewardPattern) ?? o.RewardPattern,
        RewardSchema = parse.GetValue(rewardSchema) ?? o.RewardSchema,
        JudgeUrl = parse.GetValue(judgeUrl) ?? o.JudgeUrl,
        JudgeModel = parse.GetValue(judgeModel) ?? o.JudgeModel,
        RewardModel = parse.GetValue(rewardModel) ?? o.RewardModel,
        RewardModelAdapter = parse.GetValue(rewardModelAdapter) ?? o.RewardModelAdapter,
        MissingEosPenalty = parse.GetValue(missingEosPenalty) ?? o.MissingEosPenalty,
        BetaPerEpoch = parse.GetValue(betaPerEpoch) is { } betas ? ParseNumbers(betas, "--beta-per-epoch") : o.BetaPerEpoch,
        SimpoGamma = parse.GetValue(simpoGamma) ?? o.SimpoGamma,
        CpoAlpha = parse.GetValue(cpoAlpha) ?? o.CpoAlpha,
        DesirableWeight = parse.GetValue(desirableWeight) ?? o.DesirableWeight,
        UndesirableWeight = parse.GetValue(undesirableWeight) ?? o.UndesirableWeight,
    };

    private static double[] ParseRange(string text)
    {
        var parts = text.Split(',');
        var values = parts.Select(p => double.TryParse(p.Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture,
            out var v) ? v : double.NaN).ToArray();
        return parts.Length == 2 && values.All(double.IsFinite) ? values
            : throw new ArgumentException($"--reward-clip-range takes MIN,MAX (two numbers), found '{text}'");
    }

    private static double[] ParseNumbers(string text, string option)
    {
        var parts = text.Split(',');
        var values = parts.Select(p => double.TryParse(p.Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture,
            out var v) ? v : double.NaN).ToArray();
        return values.All(double.IsFinite) ? values : throw new ArgumentException($"{option} takes numbers separated by commas, found '{text}'");
    }

    /// <summary>The judge reward's grader: an OpenAI-compatible endpoint through the official SDK, as an IChatClient.</summary>
    public static RewardSources? Judge(TrainingOptions options)
    {
        if (options.JudgeUrl is null && options.JudgeModel is null) return null;
        if (options.JudgeUrl is null || options.JudgeModel is null)
            throw new ArgumentException("the judge reward needs both --judge-url and --judge-model");
        var key = Environment.GetEnvironmentVariable("OPENAI_API_KEY") is { Length: > 0 } k ? k : "none";
        var client = new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(options.JudgeUrl) });
        return new RewardSources(client.GetChatClient(options.JudgeModel).AsIChatClient());
    }
}
