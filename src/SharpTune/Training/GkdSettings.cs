using SharpTune.Generation;

namespace SharpTune.Training;

/// <summary>
/// GKD's settings, from <see cref="TrainingOptions"/> with TRL's GKDConfig defaults (huggingface/trl@f2cd577,
/// trl/experimental/gkd/gkd_config.py): λ = 0.5 (share of on-policy micro-batches), β = 0.5 (the generalized JSD's
/// interpolation), temperature 0.9 (sampling only), max_new_tokens 128, seq_kd off.
/// </summary>
internal sealed record GkdSettings(string Teacher, double Lmbda, double Beta, double Temperature, int MaxNewTokens, bool SeqKd,
    Quantization.QuantizationType? TeacherQuantize = null)
{
    /// <summary>How the teacher is quantized when <see cref="TeacherQuantize"/> is set: computed in <paramref name="dtype"/>, the run's.</summary>
    public Quantization.QuantizationOptions? TeacherQuantization(TorchSharp.torch.ScalarType dtype) =>
        TeacherQuantize is { } type ? new Quantization.QuantizationOptions(type, dtype) : null;

    /// <summary>Validates and converts the options; throws naming the option at fault.</summary>
    public static GkdSettings From(TrainingOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.Teacher))
            throw new ArgumentException("objective gkd needs a teacher model: set teacher (--teacher) to a model folder or hub id");
        var lmbda = o.Lmbda ?? 0.5;
        var beta = o.Beta ?? 0.5;
        var temperature = o.Temperature ?? 0.9;
        var maxNewTokens = o.MaxNewTokens ?? 128;
        // TRL's GKDConfig.__post_init__ refuses the same ranges ("lmbda must be in the range [0.0, 1.0]").
        if (!(lmbda is >= 0 and <= 1)) throw new ArgumentException($"lmbda (--lmbda) must be in the range [0, 1], found {lmbda}");
        if (!(beta is >= 0 and <= 1)) throw new ArgumentException($"beta (--beta) must be in the range [0, 1] for objective gkd, found {beta}");
        if (!(temperature > 0 && double.IsFinite(temperature)))
            throw new ArgumentException($"temperature (--temperature) must be positive for objective gkd (it samples completions), found {temperature}");
        if (maxNewTokens < 1) throw new ArgumentException($"max_new_tokens (--max-new-tokens) must be at least 1, found {maxNewTokens}");
        RefuseIgnored(o);
        var teacherQuantize = o.TeacherQuantize is { } type ? Quantization.QuantizationOptions.ParseType(type, "teacher_quantize (--teacher-quantize)") : (Quantization.QuantizationType?)null;
        return new GkdSettings(o.Teacher, lmbda, beta, temperature, maxNewTokens, o.SeqKd ?? false, teacherQuantize);
    }

    /// <summary>
    /// Refuses, naming them, the settings of other objectives that GKD would silently ignore when they differ from their
    /// defaults: its prompts are never supervised, its validation is the divergence, and its sampling is TRL's plain
    /// generation config (top-k 0, top-p 1, one completion per prompt of at most max_new_tokens, the prompt cut from the left).
    /// </summary>
    private static void RefuseIgnored(TrainingOptions o)
    {
        var defaults = new TrainingOptions();
        ObjectiveSettingRefusals.RefuseIgnored("gkd",
            ("completion_only_loss false (config file): GKD never supervises the prompt it answers anew", !o.CompletionOnlyLoss),
            ("eval_metrics (config file): GKD's validation is the divergence from the teacher", o.EvalMetrics is { Count: > 0 }),
            ("top_p (--top-p): GKD samples with top-p 1, as TRL's GKD generation config", o.TopP != defaults.TopP),
            ("top_k (--top-k): GKD samples with top-k 0, as TRL's GKD generation config", o.TopK != defaults.TopK),
            ("num_generations (--num-generations): GKD answers each prompt once", GrpoSettings.NumGenerationsGiven(o)),
            ("max_completion_length (--max-completion-length): GKD's is max_new_tokens (--max-new-tokens)", o.MaxCompletionLength != defaults.MaxCompletionLength),
            ("max_prompt_length (--max-prompt-length): GKD's rows are cut to max_seq_length (--max-seq-length)", o.MaxPromptLength != defaults.MaxPromptLength),
            ("loss_type (--loss-type): GKD's loss is the generalized JSD, set by beta (--beta)", o.LossType is not null));
    }

    /// <summary>
    /// Refuses GKD's own settings under another objective, where they would silently do nothing; max_new_tokens, which
    /// online DPO shares (TRL's OnlineDPOConfig has it too), only outside both.
    /// </summary>
    public static void RefuseOutsideGkd(TrainingOptions o, string objective)
    {
        ObjectiveSettingRefusals.RefuseOutside("gkd", objective,
            ("teacher (--teacher)", o.Teacher is not null), ("lmbda (--lmbda)", o.Lmbda is not null), ("seq_kd (--seq-kd)", o.SeqKd is not null),
            ("teacher_quantize (--teacher-quantize)", o.TeacherQuantize is not null));
        if (objective != "online-dpo")
            ObjectiveSettingRefusals.RefuseOutside("gkd or online-dpo", objective, ("max_new_tokens (--max-new-tokens)", o.MaxNewTokens is not null));
    }

    /// <summary>
    /// Whether micro-step <paramref name="microBatchIndex"/> is made on-policy: TRL's
    /// <c>random.random() &lt;= lmbda</c> in <c>GKDTrainer.training_step</c>, with the uniform draw a pure function of
    /// the run's seed and the micro-step (so a resumed run makes the same choices, and every rank the same one). The comparison is strict, so
    /// λ = 0 is never on-policy and λ = 1 always (the draw lies in [0, 1)); the probability is λ either way.
    /// </summary>
    public bool IsOnPolicy(long seed, long microBatchIndex) => UniformDraw(seed, microBatchIndex) < Lmbda;

    /// <summary>A uniform number in [0, 1) from (seed, index), by SplitMix64's mixing of the two (53 bits kept).</summary>
    internal static double UniformDraw(long seed, long index)
    {
        var z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)index * 0xBF58476D1CE4E5B9UL + 0x94D049BB133111EBUL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }

    /// <summary>
    /// TRL's generation config for GKD: sampling at <see cref="Temperature"/> with top_k 0 and top_p 1, up to
    /// <see cref="MaxNewTokens"/>, stopping at <paramref name="eos"/>; the seed a function of the micro-batch alone.
    /// </summary>
    public GenerationOptions Sampling(long seed, long microBatchIndex, IReadOnlyList<int> eos) => new()
    {
        MaxNewTokens = MaxNewTokens,
        Temperature = Temperature,
        TopP = 1.0,
        TopK = 0,
        Seed = unchecked(seed * 1_000_039 + microBatchIndex),
        EosTokenIds = eos,
        Overflow = ContextOverflow.TruncatePromptLeft,
    };
}
