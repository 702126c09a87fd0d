using SharpTune.Peft;
using SharpTune.Peft.Adapters;
using SharpTune.Peft.IA3;
using SharpTune.Peft.LoHa;
using SharpTune.Peft.LoKr;
using SharpTune.Peft.Lora;
using SharpTune.Peft.Oft;
using SharpTune.Peft.PrefixTuning;
using SharpTune.Peft.PromptTuning;
using SharpTune.Peft.Vera;

namespace SharpTune.Training;

/// <summary>
/// The `--method` names and how each becomes a parameter-efficient adapter; `full` trains every weight and has none.
/// Adding a method is one line here plus its folder under Peft/.
/// </summary>
public static class FineTuningMethods
{
    private static readonly Dictionary<string, Func<TrainingOptions, IPeftAdapter>> Adapters = new(StringComparer.OrdinalIgnoreCase)
    {
        ["lora"] = o => new LoraAdapter(Lora(o)),
        ["dora"] = o => new LoraAdapter(Lora(o) with { UseDora = true }),
        ["prompt-tuning"] = o => new PromptTuningAdapter(PromptTuning(o)),
        ["prefix-tuning"] = o => new PrefixTuningAdapter(new PrefixTuningConfig
            { NumVirtualTokens = o.NumVirtualTokens, PrefixProjection = o.PrefixProjection, EncoderHiddenSize = o.EncoderHiddenSize }),
        ["adapter"] = o => new BottleneckAdapter(new BottleneckConfig
        {
            AdapterType = BottleneckConfig.ParsePlacement(o.AdapterType, "adapter_type"), BottleneckSize = o.BottleneckSize,
            ReductionFactor = o.ReductionFactor, NonLinearity = o.NonLinearity, TargetModules = ParseTargets(o.TargetModules),
        }),
        ["ia3"] = o => new IA3Adapter(new IA3Config
            {
            TargetModules = ParseTargets(o.TargetModules), FeedforwardModules = ParseTargets(o.FeedforwardModules),
            ModulesToSave = ParseNames(o.ModulesToSave),
        }),
        ["loha"] = o => new LohaAdapter(new LohaConfig
        {
            R = o.LoraR, Alpha = o.LoraAlpha, RankDropout = o.RankDropout ?? 0, ModuleDropout = o.ModuleDropout ?? 0,
            TargetModules = ParseTargets(o.TargetModules), ModulesToSave = ParseNames(o.ModulesToSave),
        }),
        ["lokr"] = o => new LokrAdapter(new LokrConfig
        {
            R = o.LoraR, Alpha = o.LoraAlpha, RankDropout = o.RankDropout ?? 0, ModuleDropout = o.ModuleDropout ?? 0,
            DecomposeBoth = o.DecomposeBoth ?? false, DecomposeFactor = o.DecomposeFactor ?? -1, RankDropoutScale = o.RankDropoutScale ?? false,
            TargetModules = ParseTargets(o.TargetModules), ModulesToSave = ParseNames(o.ModulesToSave),
        }),
        ["vera"] = o => new VeraAdapter(new VeraConfig
        {
            R = o.LoraR, VeraDropout = o.VeraDropout ?? 0, DInitial = o.DInitial ?? 0.1, ProjectionPrngKey = o.ProjectionPrngKey ?? 0,
            SaveProjection = o.SaveProjection ?? true, TargetModules = ParseTargets(o.TargetModules), ModulesToSave = ParseNames(o.ModulesToSave),
        }),
        ["oft"] = o => new OftAdapter(Oft(o)),
    };

    public static IReadOnlyCollection<string> Names => ["full", .. Adapters.Keys];

    /// <summary>The adapter for <paramref name="options"/>' method, or null for full fine-tuning.</summary>
    public static IPeftAdapter? CreateAdapter(TrainingOptions options)
    {
        if (ParseNames(options.ModulesToSave).Count > 0 && options.Method.ToLowerInvariant() is not ("lora" or "dora" or "ia3" or "loha" or "lokr" or "vera" or "oft"))
            throw new ArgumentException($"modules_to_save is a LoRA/DoRA/IA3/LoHa/LoKr/VeRA/OFT setting; method '{options.Method}' does not take it" +
                                        (string.Equals(options.Method, "full", StringComparison.OrdinalIgnoreCase) ? " (full fine-tuning trains every module)" : ""));
        if (options.TrainableTokenIndices is { Count: > 0 } && options.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"trainable_token_indices (--trainable-token-indices) is a LoRA/DoRA setting; method '{options.Method}' does not take it" +
                                        (string.Equals(options.Method, "full", StringComparison.OrdinalIgnoreCase) ? " (full fine-tuning trains every row)" : ""));
        if (options.InitLoraWeights is not null && options.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"init_lora_weights is a LoRA/DoRA setting; method '{options.Method}' does not take it");
        RefuseLycorisSettings(options);
        if (string.Equals(options.Method, "full", StringComparison.OrdinalIgnoreCase)) return null;
        return Adapters.TryGetValue(options.Method, out var create)
            ? create(options)
            : throw new ArgumentException($"unknown method '{options.Method}' (choose one of: {string.Join(", ", Names)})");
    }

    /// <summary>
    /// TRL's <c>disable_dropout_in_model</c>: every dropout of <paramref name="model"/> set to p = 0 (the model's Dropout
    /// modules and LoRA's functional dropout), so the policy's forward passes are deterministic as TRL's preference
    /// trainers make them by default.
    /// </summary>
    internal static void DisableDropout(TorchSharp.torch.nn.Module model)
    {
        foreach (var module in model.modules())
        {
            if (module is TorchSharp.Modules.Dropout dropout) dropout.p = 0;
            else if (module is Peft.Lora.LoraLinear lora) lora.DisableDropout();
        }
    }

    // LoHa/LoKr/VeRA settings given to a method that would ignore them are refused, naming the option.
    private static void RefuseLycorisSettings(TrainingOptions o)
    {
        var method = o.Method.Trim().ToLowerInvariant();
        void Refuse(bool given, string option, string methods)
        {
            if (given) throw new ArgumentException($"{option} is a {methods} setting; method '{o.Method}' does not take it");
        }
        var lycoris = method is "loha" or "lokr";
        if ((lycoris || method == "vera") && o.LoraR <= 0)
            throw new ArgumentException($"lora_r (--lora-r), the r of method '{o.Method}', must be a positive integer, found {o.LoraR}");
        Refuse(o.UseRslora && lycoris, "use_rslora", "LoRA/DoRA");   // LoHa/LoKr scale by alpha / r (PEFT's LycorisConfig has no use_rslora)
        Refuse(o.UseRslora && method is "vera" or "oft", "use_rslora", "LoRA/DoRA");   // VeRA and OFT have no scaling at all
        Refuse(o.VeraDropout is not null && method != "vera", "vera_dropout (--vera-dropout)", "VeRA");
        Refuse(o.DInitial is not null && method != "vera", "d_initial (--vera-d-initial)", "VeRA");
        Refuse(o.ProjectionPrngKey is not null && method != "vera", "projection_prng_key (--projection-prng-key)", "VeRA");
        Refuse(o.SaveProjection is not null && method != "vera", "save_projection (--save-projection)", "VeRA");
        // OFT's r counts blocks and OFT has no alpha: a rank or alpha other than the defaults was meant for another method.
        var defaults = new TrainingOptions();
        if (method == "oft" && (o.LoraR != defaults.LoraR || o.LoraAlpha != defaults.LoraAlpha))
            throw new ArgumentException(
                $"lora_r (--lora-r) and lora_alpha (--lora-alpha) do not apply to method 'oft' (found {o.LoraR} and {o.LoraAlpha}): OFT has no " +
                "rank or alpha; its r is the number of blocks (oft_r, --oft-r) or give their size (oft_block_size, --oft-block-size)");
        Refuse(o.RankDropout is not null && !lycoris, "rank_dropout (--rank-dropout)", "LoHa/LoKr");
        Refuse(o.ModuleDropout is not null && !lycoris && method != "oft", "module_dropout (--module-dropout)", "LoHa/LoKr/OFT");
        Refuse(o.DecomposeBoth is not null && method != "lokr", "decompose_both (--decompose-both)", "LoKr");
        Refuse(o.DecomposeFactor is not null && method != "lokr", "decompose_factor (--decompose-factor)", "LoKr");
        Refuse(o.RankDropoutScale is not null && method != "lokr", "rank_dropout_scale (--rank-dropout-scale)", "LoKr");
        var oft = method == "oft";
        Refuse(o.OftR is not null && !oft, "oft_r (--oft-r)", "OFT");
        Refuse(o.OftBlockSize is not null && !oft, "oft_block_size (--oft-block-size)", "OFT");
        Refuse(o.UseCayleyNeumann is not null && !oft, "use_cayley_neumann (--use-cayley-neumann)", "OFT");
        Refuse(o.NumCayleyNeumannTerms is not null && !oft, "num_cayley_neumann_terms (--num-cayley-neumann-terms)", "OFT");
        Refuse(o.Coft is not null && !oft, "coft (--coft)", "OFT");
        Refuse(o.OftEps is not null && !oft, "oft_eps (--oft-eps)", "OFT");
        Refuse(o.BlockShare is not null && !oft, "block_share (--block-share)", "OFT");
        if (oft && o.OftEps is not null && o.Coft != true)
            throw new ArgumentException("oft_eps (--oft-eps) is COFT's radius and is only read with coft (--coft true); set coft or drop oft_eps");
        if (oft && o.NumCayleyNeumannTerms is not null && o.UseCayleyNeumann == false)
            throw new ArgumentException("num_cayley_neumann_terms (--num-cayley-neumann-terms) is only read with use_cayley_neumann true; drop it or use the series");
    }

    // OFT's r is PEFT's number of blocks, not a rank: it has its own option (oft_r), and --lora-r/--lora-alpha do not apply.
    // PEFT takes exactly one of r and oft_block_size; oft_block_size defaults to 32 unless oft_r is given.
    private static OftConfig Oft(TrainingOptions o) => new()
    {
        R = o.OftR ?? 0,
        OftBlockSize = o.OftBlockSize ?? (o.OftR is > 0 ? 0 : 32),
        ModuleDropout = o.ModuleDropout ?? 0,
        Coft = o.Coft ?? false,
        Eps = o.OftEps ?? 6e-5,
        BlockShare = o.BlockShare ?? false,
        UseCayleyNeumann = o.UseCayleyNeumann ?? true,
        NumCayleyNeumannTerms = o.NumCayleyNeumannTerms ?? 5,
        TargetModules = ParseTargets(o.TargetModules),
        ModulesToSave = ParseNames(o.ModulesToSave),
    };

    private static LoraConfig Lora(TrainingOptions o) => new()
    {
        R = o.LoraR,
        LoraAlpha = o.LoraAlpha,
        LoraDropout = o.LoraDropout,
        UseRsLora = o.UseRslora,
        InitLoraWeights = o.InitLoraWeights is { } init ? LoraConfig.ParseInit(init, "training options") : LoraInit.Default,
        TargetModules = ParseTargets(o.TargetModules),
        // A classification head is trained whole and saved in a SEQ_CLS adapter, as PEFT's get_peft_model does it.
        ModulesToSave = TrainingTasks.TrainsHead(o) ? SequenceClassificationRecipe.ModulesToSave(o) : ParseNames(o.ModulesToSave),
        TrainableTokenIndices = TokenIndices(o.TrainableTokenIndices),
        PeftTaskType = TrainingTasks.TrainsHead(o) ? LoraConfig.SequenceClassificationTaskType
            : TrainingTasks.Of(o) == TrainingTasks.Embedding ? LoraConfig.FeatureExtractionTaskType : LoraConfig.TaskType,
    };

    /// <summary>The ids of trainable_token_indices, once token strings are resolved (FineTuneJob does it with the tokenizer).</summary>
    private static IReadOnlyList<int> TokenIndices(IReadOnlyList<string>? entries) => (entries ?? []).Select(e =>
        int.TryParse(e, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var id) ? id
            : throw new ArgumentException($"trainable_token_indices: '{e}' is a token, not an id; the run resolves tokens with its tokenizer first")).ToArray();

    /// <summary>A comma-separated list of names (empty: none).</summary>
    public static IReadOnlyList<string> ParseNames(string? text) =>
        string.IsNullOrWhiteSpace(text) ? [] : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static PromptTuningConfig PromptTuning(TrainingOptions o) => string.IsNullOrEmpty(o.PromptTuningInitText)
        ? new() { NumVirtualTokens = o.NumVirtualTokens }
        : new()
        {
            NumVirtualTokens = o.NumVirtualTokens, PromptTuningInit = PromptTuningInit.Text,
            PromptTuningInitText = o.PromptTuningInitText, TokenizerNameOrPath = o.Model,
        };

    /// <summary>"all-linear", a comma-separated name list, or (anything with regex characters) a regex.</summary>
    public static TargetModules? ParseTargets(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (text.Trim() == "all-linear") return TargetModules.AllLinear;
        if (text.IndexOfAny(['*', '(', '[', '\\', '^', '$', '|', '?', '+']) >= 0) return TargetModules.Pattern(text.Trim());
        return TargetModules.Names(text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }
}
