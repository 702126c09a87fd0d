using SharpTune.Generation;
using SharpTune.Training.Objectives;

namespace SharpTune.Training;

/// <summary>
/// The settings of GRPO and of RLOO (which shares GRPO's loop: group sampling, rewards, μ passes, ε clipping), from
/// <see cref="TrainingOptions"/> with TRL's defaults: GRPOConfig's G = 8, β = 0, loss_type dapo, scale_rewards group;
/// RLOOConfig's G = 2 and β = 0.05 (in <see cref="Rloo"/>; <see cref="Loss"/> then carries β = 0, the KL being in the
/// reward); both temperature 1, max_completion_length 512, μ = 1, ε = 0.2. One optimizer step consumes
/// micro_batch_size × gradient_accumulation completions (a multiple of G); each generated batch serves μ optimizer steps.
/// </summary>
/// <param name="Rloo">RLOO's settings; null for GRPO.</param>
public sealed record GrpoSettings(
    GrpoLossSettings Loss,
    int NumGenerations,
    RewardScaling Scaling,
    int NumIterations,
    int MaxPromptLength,
    double Temperature,
    double TopP,
    int TopK,
    bool MaskTruncatedCompletions,
    int LogCompletionsEvery,
    RlooSettings? Rloo = null)
{
    /// <summary>TRL's GRPOConfig num_generations default; also the value config.yaml files of earlier versions always hold.</summary>
    public const int DefaultNumGenerations = 8;

    /// <summary>TRL's GRPOConfig scale_rewards default; also the value config.yaml files of earlier versions always hold.</summary>
    public const string DefaultScaleRewards = "group";

    /// <summary>
    /// Whether num_generations is set to something other than GRPO's default 8. Earlier versions wrote
    /// <c>num_generations: 8</c> into every run's config.yaml, whatever the objective, so 8 under another objective is
    /// taken as unset (those run folders still resume); any other value is refused there.
    /// </summary>
    internal static bool NumGenerationsGiven(TrainingOptions o) => o.NumGenerations is { } g && g != DefaultNumGenerations;

    /// <summary>
    /// Whether scale_rewards asks for something other than GRPO's default group scaling (group or true). Earlier versions
    /// wrote <c>scale_rewards: group</c> into every run's config.yaml, so group under another objective is taken as unset.
    /// </summary>
    internal static bool ScaleRewardsGiven(TrainingOptions o) =>
        o.ScaleRewards is { } s && s.Trim().ToLowerInvariant() is not (DefaultScaleRewards or "true");

    /// <summary>Refuses GRPO's and RLOO's sampling settings under an objective that samples no groups, where they would do nothing.</summary>
    internal static void RefuseOutsideGrpo(TrainingOptions o, string objective)
    {
        if (objective != "rloo")
            ObjectiveSettingRefusals.RefuseOutside("grpo", objective, ("scale_rewards (--scale-rewards)", ScaleRewardsGiven(o)));
        ObjectiveSettingRefusals.RefuseOutside("grpo or rloo", objective, ("num_generations (--num-generations)", NumGenerationsGiven(o)));
    }

    /// <summary>Online DPO's settings (pairs of completions, the DPO loss); null for GRPO and RLOO.</summary>
    public OnlineDpoSettings? OnlineDpo { get; init; }

    /// <summary>The objective's name in messages: GRPO, RLOO or online DPO.</summary>
    public string Name => OnlineDpo is not null ? OnlineDpoName : NameOf(Rloo);

    private const string OnlineDpoName = "online DPO";

    private static string NameOf(RlooSettings? rloo) => rloo is null ? "GRPO" : "RLOO";

    /// <summary>Whether a reference model is needed: GRPO's β in the loss, RLOO's in the reward, or online DPO's (always).</summary>
    public bool NeedsReference => Loss.Beta != 0 || Rloo is { Beta: not 0 } || OnlineDpo is not null;

    /// <summary>
    /// The temperature the trained log-probs are taken at: GRPO's and RLOO's sampling temperature (TRL scores completions
    /// under the distribution they were drawn from), 1 for online DPO (TRL's OnlineDPOTrainer._forward takes the model's own).
    /// </summary>
    public double LogProbTemperature => OnlineDpo is null ? Temperature : 1.0;

    /// <summary>Validates and converts the options; throws naming the option at fault.</summary>
    public static GrpoSettings From(TrainingOptions o)
    {
        if (o.Objective.Trim().Equals("online-dpo", StringComparison.OrdinalIgnoreCase)) return OnlineDpoFrom(o);
        var rloo = o.Objective.Trim().Equals("rloo", StringComparison.OrdinalIgnoreCase) ? RlooSettings.From(o) : null;
        var numGenerations = o.NumGenerations ?? (rloo is null ? DefaultNumGenerations : RlooSettings.DefaultNumGenerations);
        if (numGenerations < 2)
            throw new ArgumentException($"num_generations must be at least 2 ({NameOf(rloo)} compares completions within a group), found {numGenerations}");
        var perStep = o.MicroBatchSize * o.GradientAccumulation;
        if (perStep % numGenerations != 0)
            throw new ArgumentException(
                $"micro_batch_size × gradient_accumulation = {perStep} completions per step is not a multiple of num_generations = {numGenerations}");
        if (o.NumIterations < 1) throw new ArgumentException($"num_iterations must be at least 1, found {o.NumIterations}");
        if (o.MaxCompletionLength < 1) throw new ArgumentException($"max_completion_length must be positive, found {o.MaxCompletionLength}");
        if (o.Epsilon is <= 0 or >= 1) throw new ArgumentException($"epsilon must be in (0, 1), found {o.Epsilon}");
        if (o.EpsilonHigh is <= 0) throw new ArgumentException($"epsilon_high must be positive, found {o.EpsilonHigh}");
        var temperature = o.Temperature ?? 1.0;
        if (temperature <= 0) throw new ArgumentException($"{NameOf(rloo)} samples: temperature must be positive, found {temperature}");
        var beta = rloo is null ? o.Beta ?? 0.0 : 0.0;
        if (beta < 0) throw new ArgumentException($"beta must be ≥ 0, found {beta}");
        // RLOO's loss has no type (RlooLoss); GRPO's comes from loss_type.
        var loss = new GrpoLossSettings(Epsilon: o.Epsilon, EpsilonHigh: o.EpsilonHigh, Beta: beta, MaxCompletionLength: o.MaxCompletionLength);
        if (rloo is null) loss = loss with { LossType = GrpoLossSettings.ParseType(o.LossType ?? "dapo") };
        return new GrpoSettings(loss, numGenerations, GrpoAdvantages.ParseScaling(o.ScaleRewards ?? DefaultScaleRewards), o.NumIterations, o.MaxPromptLength,
            temperature, o.TopP, o.TopK, o.MaskTruncatedCompletions, o.LogCompletionsEvery, rloo);
    }

    /// <summary>
    /// Online DPO on this loop: two completions per prompt (micro_batch_size × gradient_accumulation counts completions,
    /// as GRPO's, so it must be even), one update per sampled batch, TRL's OnlineDPOConfig sampling temperature 0.9 and
    /// max_new_tokens 64 (its name for the completion limit; max_completion_length is refused).
    /// </summary>
    private static GrpoSettings OnlineDpoFrom(TrainingOptions o)
    {
        ObjectiveSettingRefusals.RefuseOutside("grpo", "online-dpo", ("scale_rewards (--scale-rewards)", ScaleRewardsGiven(o)));   // the pair's order is fixed
        if (o.NumGenerations is { } generations && generations != OnlineDpoSettings.Generations)
            throw new ArgumentException($"num_generations (--num-generations) = {generations}: online DPO always samples {OnlineDpoSettings.Generations} " +
                                        $"completions per prompt (a chosen and a rejected one); remove it or set it to {OnlineDpoSettings.Generations}");
        var onlineDpo = OnlineDpoSettings.From(o);
        if (o.MicroBatchSize % OnlineDpoSettings.Generations != 0)
            throw new ArgumentException($"micro_batch_size (--batch-size) = {o.MicroBatchSize} is odd: objective online-dpo trains whole pairs of " +
                                        "completions per micro-batch (two per prompt), so it must be even");
        var maxNewTokens = MaxCompletionTokens(o);
        if (maxNewTokens < 1) throw new ArgumentException($"max_new_tokens (--max-new-tokens) must be at least 1, found {maxNewTokens}");
        var temperature = o.Temperature ?? OnlineDpoSettings.DefaultTemperature;
        if (!(temperature > 0)) throw new ArgumentException($"{OnlineDpoName} samples: temperature must be positive, found {temperature}");
        var loss = new GrpoLossSettings(Beta: 0, MaxCompletionLength: maxNewTokens);
        return new GrpoSettings(loss, OnlineDpoSettings.Generations, RewardScaling.None, 1, o.MaxPromptLength, temperature, o.TopP, o.TopK,
            MaskTruncatedCompletions: false, o.LogCompletionsEvery) { OnlineDpo = onlineDpo };
    }

    /// <summary>
    /// The longest completion the objective samples, in tokens: online DPO's max_new_tokens (TRL's OnlineDPOConfig name,
    /// default 64), else GRPO's and RLOO's max_completion_length.
    /// </summary>
    internal static int MaxCompletionTokens(TrainingOptions o) =>
        o.Objective.Trim().Equals("online-dpo", StringComparison.OrdinalIgnoreCase)
            ? o.MaxNewTokens ?? OnlineDpoSettings.DefaultMaxNewTokens
            : o.MaxCompletionLength;

    /// <summary>Sampling settings for one generation batch; the seed makes the draw a function of the batch index alone.</summary>
    public GenerationOptions Sampling(long seed, IReadOnlyList<int> eos) => new()
    {
        MaxNewTokens = Loss.MaxCompletionLength,
        Temperature = Temperature,
        TopP = TopP,
        TopK = TopK,
        Seed = seed,
        EosTokenIds = eos,
        Overflow = ContextOverflow.TruncatePromptLeft,
    };
}
