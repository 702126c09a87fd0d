using SharpTune.Generation;
using SharpTune.Training.Objectives;

namespace SharpTune.Training;

/// <summary>
/// GRPO's settings, from <see cref="TrainingOptions"/> with TRL's GRPOConfig defaults: G = 8 completions per prompt,
/// temperature 1, max_completion_length 512, μ = 1, ε = 0.2, β = 0, loss_type dapo, scale_rewards group. One optimizer
/// step consumes micro_batch_size × gradient_accumulation completions (a multiple of G); each generated batch serves μ
/// optimizer steps.
/// </summary>
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
    int LogCompletionsEvery)
{
    /// <summary>Validates and converts the options; throws naming the option at fault.</summary>
    public static GrpoSettings From(TrainingOptions o)
    {
        if (o.NumGenerations < 2)
            throw new ArgumentException($"num_generations must be at least 2 (GRPO compares completions within a group), found {o.NumGenerations}");
        var perStep = o.MicroBatchSize * o.GradientAccumulation;
        if (perStep % o.NumGenerations != 0)
            throw new ArgumentException(
                $"micro_batch_size × gradient_accumulation = {perStep} completions per step is not a multiple of num_generations = {o.NumGenerations}");
        if (o.NumIterations < 1) throw new ArgumentException($"num_iterations must be at least 1, found {o.NumIterations}");
        if (o.MaxCompletionLength < 1) throw new ArgumentException($"max_completion_length must be positive, found {o.MaxCompletionLength}");
        if (o.Epsilon is <= 0 or >= 1) throw new ArgumentException($"epsilon must be in (0, 1), found {o.Epsilon}");
        if (o.EpsilonHigh is <= 0) throw new ArgumentException($"epsilon_high must be positive, found {o.EpsilonHigh}");
        var temperature = o.Temperature ?? 1.0;
        if (temperature <= 0) throw new ArgumentException($"GRPO samples: temperature must be positive, found {temperature}");
        var beta = o.Beta ?? 0.0;
        if (beta < 0) throw new ArgumentException($"beta must be ≥ 0, found {beta}");
        var loss = new GrpoLossSettings(GrpoLossSettings.ParseType(o.LossType ?? "dapo"), o.Epsilon, o.EpsilonHigh, beta, o.MaxCompletionLength);
        return new GrpoSettings(loss, o.NumGenerations, GrpoAdvantages.ParseScaling(o.ScaleRewards), o.NumIterations, o.MaxPromptLength,
            temperature, o.TopP, o.TopK, o.MaskTruncatedCompletions, o.LogCompletionsEvery);
    }

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
