using SharpTune.Models;

namespace SharpTune.Training;

/// <summary>
/// When NEFTune (<see cref="TrainingOptions.NeftuneNoiseAlpha"/>) applies: transformers' Trainer registers its hook on
/// the input embeddings for the whole of <c>train()</c> and removes it after; the hook itself adds noise only in
/// training mode, so evaluation and generation (eval mode) are untouched. SharpTune offers it for SFT only: TRL added
/// it to its SFTTrainer (since moved into transformers), and its preference and GRPO trainers merely inherit the hook,
/// which there would also noise the reference log-probabilities computed through the same embeddings (adapters off)
/// and GRPO's sampled completions (generated in training mode).
/// </summary>
internal static class Neftune
{
    /// <summary>A negative or non-finite α, or α with an objective other than sft, is a clear error.</summary>
    internal static void Validate(TrainingOptions options)
    {
        if (options.NeftuneNoiseAlpha is not { } alpha) return;
        if (!double.IsFinite(alpha) || alpha < 0)
            throw new ArgumentException($"neftune_noise_alpha (--neftune-noise-alpha) must be a number of at least 0, found {alpha}");
        var objective = options.Objective.Trim().ToLowerInvariant();
        if (objective != "sft")
            throw new ArgumentException(
                $"neftune_noise_alpha (--neftune-noise-alpha) applies to objective sft only, not {objective}: NEFTune is a " +
                "supervised fine-tuning technique (TRL's SFTTrainer); in preference and GRPO training the noise would also reach " +
                "the reference log-probabilities and the sampled completions. Remove it, or train with objective sft");
    }

    /// <summary>Sets the model's NEFTune α for a training run; disposing restores what was set before.</summary>
    internal static IDisposable Activate(CausalLanguageModel model, TrainingOptions options)
    {
        Validate(options);
        var previous = model.NeftuneNoiseAlpha;
        model.NeftuneNoiseAlpha = options.NeftuneNoiseAlpha;
        return new Runtime.RestoreOnDispose(() => model.NeftuneNoiseAlpha = previous);
    }
}
