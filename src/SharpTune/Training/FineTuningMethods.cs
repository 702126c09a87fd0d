using SharpTune.Peft;
using SharpTune.Peft.AdaLora;
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
/// Adding a method is one entry here plus its folder under Peft/.
/// </summary>
public static class FineTuningMethods
{
    // Which of the options shared with LoRA (lora_r, lora_alpha, lora_dropout) a method reads.
    [Flags]
    private enum Reads { None = 0, R = 1, Alpha = 2, Dropout = 4 }

    // A method: how it becomes an adapter, which shared options it reads, whether it takes modules_to_save, and whether a
    // trainer checkpoint (parameters named by module path) is its PEFT adapter once PEFT's prefix is added.
    private sealed record Method(Func<TrainingOptions, IPeftAdapter> Create, Reads Reads = Reads.None, bool ModulesToSave = false,
        bool CheckpointIsAdapter = false);

    private static readonly Dictionary<string, Method> Methods = new(StringComparer.OrdinalIgnoreCase)
    {
        ["lora"] = new(o => new LoraAdapter(Lora(o)), Reads.R | Reads.Alpha | Reads.Dropout, ModulesToSave: true, CheckpointIsAdapter: true),
        ["dora"] = new(o => new LoraAdapter(Lora(o) with { UseDora = true }), Reads.R | Reads.Alpha | Reads.Dropout, ModulesToSave: true, CheckpointIsAdapter: true),
        ["prompt-tuning"] = new(o => new PromptTuningAdapter(PromptTuning(o))),
        ["prefix-tuning"] = new(o => new PrefixTuningAdapter(new PrefixTuningConfig
            { NumVirtualTokens = o.NumVirtualTokens, PrefixProjection = o.PrefixProjection, EncoderHiddenSize = o.EncoderHiddenSize })),
        ["adapter"] = new(o => new BottleneckAdapter(new BottleneckConfig
        {
            AdapterType = BottleneckConfig.ParsePlacement(o.AdapterType, "adapter_type"), BottleneckSize = o.BottleneckSize,
            ReductionFactor = o.ReductionFactor, NonLinearity = o.NonLinearity, TargetModules = ParseTargets(o.TargetModules),
        })),
        ["ia3"] = new(o => new IA3Adapter(new IA3Config
        {
            TargetModules = ParseTargets(o.TargetModules), FeedforwardModules = ParseTargets(o.FeedforwardModules),
            ModulesToSave = ParseNames(o.ModulesToSave),
        }), ModulesToSave: true),
        ["loha"] = new(o => new LohaAdapter(new LohaConfig
        {
            R = o.LoraR ?? DefaultLoraR, Alpha = o.LoraAlpha ?? DefaultLoraAlpha, RankDropout = o.RankDropout ?? 0, ModuleDropout = o.ModuleDropout ?? 0,
            TargetModules = ParseTargets(o.TargetModules), ModulesToSave = ParseNames(o.ModulesToSave),
        }), Reads.R | Reads.Alpha, ModulesToSave: true, CheckpointIsAdapter: true),
        ["lokr"] = new(o => new LokrAdapter(new LokrConfig
        {
            R = o.LoraR ?? DefaultLoraR, Alpha = o.LoraAlpha ?? DefaultLoraAlpha, RankDropout = o.RankDropout ?? 0, ModuleDropout = o.ModuleDropout ?? 0,
            DecomposeBoth = o.DecomposeBoth ?? false, DecomposeFactor = o.DecomposeFactor ?? -1, RankDropoutScale = o.RankDropoutScale ?? false,
            TargetModules = ParseTargets(o.TargetModules), ModulesToSave = ParseNames(o.ModulesToSave),
        }), Reads.R | Reads.Alpha, ModulesToSave: true, CheckpointIsAdapter: true),
        // VeRA's r defaults to PEFT's VeraConfig default (256), not LoRA's.
        ["vera"] = new(o => new VeraAdapter(new VeraConfig
        {
            R = o.LoraR ?? new VeraConfig().R, VeraDropout = o.VeraDropout ?? 0, DInitial = o.DInitial ?? 0.1, ProjectionPrngKey = o.ProjectionPrngKey ?? 0,
            SaveProjection = o.SaveProjection ?? true, TargetModules = ParseTargets(o.TargetModules), ModulesToSave = ParseNames(o.ModulesToSave),
        }), Reads.R, ModulesToSave: true, CheckpointIsAdapter: true),
        ["oft"] = new(o => new OftAdapter(Oft(o)), ModulesToSave: true, CheckpointIsAdapter: true),
        // AdaLoRA's checkpoints hold every layer at init_r (masked singular values zero) and its config needs total_step and
        // the rank pattern, so they are not exported as adapters; its rank is init_r (--adalora-init-r), not --lora-r.
        ["adalora"] = new(o => new AdaLoraAdapter(AdaLora(o)), Reads.Alpha | Reads.Dropout, ModulesToSave: true),
    };

    /// <summary>LoRA's rank, alpha and dropout when not given (also LoHa's and LoKr's rank and alpha).</summary>
    public const int DefaultLoraR = 8;
    /// <inheritdoc cref="DefaultLoraR"/>
    public const double DefaultLoraAlpha = 16, DefaultLoraDropout = 0.05;

    public static IReadOnlyCollection<string> Names => ["full", .. Methods.Keys];

    /// <summary>
    /// Whether a trainer checkpoint of <paramref name="method"/> (parameters named by module path) is its PEFT adapter
    /// once PEFT's <c>base_model.model.</c> prefix is added, so the jobs API can serve every checkpoint.
    /// </summary>
    public static bool CheckpointIsAdapter(string method) => Methods.TryGetValue(method.Trim(), out var m) && m.CheckpointIsAdapter;

    /// <summary>Whether <paramref name="method"/> reads lora_r (a rank); lora_alpha too when <paramref name="alpha"/>.</summary>
    internal static bool ReadsRank(string method, bool alpha = false) =>
        Methods.TryGetValue(method.Trim(), out var m) && m.Reads.HasFlag(Reads.R) && (!alpha || m.Reads.HasFlag(Reads.Alpha));

    /// <summary>The adapter for <paramref name="options"/>' method, or null for full fine-tuning.</summary>
    public static IPeftAdapter? CreateAdapter(TrainingOptions options)
    {
        var known = Methods.TryGetValue(options.Method.Trim(), out var method);
        var full = string.Equals(options.Method.Trim(), "full", StringComparison.OrdinalIgnoreCase);
        if (ParseNames(options.ModulesToSave).Count > 0 && known && !method!.ModulesToSave || ParseNames(options.ModulesToSave).Count > 0 && full)
            throw new ArgumentException($"modules_to_save is a {MethodsWith(m => m.ModulesToSave)} setting; method '{options.Method}' does not take it" +
                                        (full ? " (full fine-tuning trains every module)" : ""));
        if (options.TrainableTokenIndices is { Count: > 0 } && options.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"trainable_token_indices (--trainable-token-indices) is a LoRA/DoRA setting; method '{options.Method}' does not take it" +
                                        (full ? " (full fine-tuning trains every row)" : ""));
        if (ParseNames(options.TargetParameters).Count > 0 && options.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"target_parameters (--target-parameters) is a LoRA setting; method '{options.Method}' does not take it");
        if (options.InitLoraWeights is not null && options.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"init_lora_weights is a LoRA/DoRA setting; method '{options.Method}' does not take it");
        RefuseLycorisSettings(options);
        if (known) RefuseUnreadLoraSettings(options, method!.Reads);
        if (full) return null;
        return known
            ? method!.Create(options)
            : throw new ArgumentException($"unknown method '{options.Method}' (choose one of: {string.Join(", ", Names)})");
    }

    // The method names (as the docs spell them) of the entries matching a predicate, for error messages.
    private static string MethodsWith(Func<Method, bool> predicate) => string.Join("/", Methods.Where(m => predicate(m.Value)).Select(m => m.Key switch
    {
        "lora" => "LoRA", "dora" => "DoRA", "ia3" => "IA3", "loha" => "LoHa", "lokr" => "LoKr", "vera" => "VeRA", "oft" => "OFT",
        "adalora" => "AdaLoRA", var name => name,
    }));

    /// <summary>
    /// lora_r, lora_alpha and lora_dropout given to VeRA, IA3, OFT (and lora_dropout to LoHa/LoKr), which would ignore them,
    /// are refused naming the option. The values every config.yaml held before these options became optional (8, 16, 0.05)
    /// are accepted, so older run folders still resume; VeRA, which reads lora_r, takes 8 as its r, as those runs did.
    /// </summary>
    private static void RefuseUnreadLoraSettings(TrainingOptions o, Reads reads)
    {
        var method = o.Method.Trim().ToLowerInvariant();
        if (method is not ("vera" or "ia3" or "oft" or "loha" or "lokr" or "adalora")) return;
        var why = method switch
        {
            "vera" => "VeRA has no scaling and its dropout is vera_dropout (--vera-dropout)",
            "ia3" => "IA3 learns scaling vectors: it has no rank, alpha or dropout",
            "oft" => "OFT has no rank or alpha; its r is the number of blocks (oft_r, --oft-r) or give their size (oft_block_size, --oft-block-size), and its dropout is module_dropout",
            "adalora" => "AdaLoRA's starting rank is init_r (adalora_init_r, --adalora-init-r) and its final average rank target_r (--adalora-target-r)",
            _ => "LoHa/LoKr drop ranks or whole modules instead (rank_dropout, module_dropout)",
        };
        void Refuse(bool given, string option, object? value)
        {
            if (given) throw new ArgumentException($"{option} does not apply to method '{o.Method}' (found {value}): {why}");
        }
        Refuse(!reads.HasFlag(Reads.R) && o.LoraR is { } r && r != DefaultLoraR, "lora_r (--lora-r)", o.LoraR);
        Refuse(!reads.HasFlag(Reads.Alpha) && o.LoraAlpha is { } a && a != DefaultLoraAlpha, "lora_alpha (--lora-alpha)", o.LoraAlpha);
        Refuse(!reads.HasFlag(Reads.Dropout) && o.LoraDropout is { } d && d != DefaultLoraDropout, "lora_dropout", o.LoraDropout);
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
            else if (module is SvdLinear svd) svd.DisableDropout();
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
        if ((lycoris || method == "vera") && o.LoraR is <= 0)
            throw new ArgumentException($"lora_r (--lora-r), the r of method '{o.Method}', must be a positive integer, found {o.LoraR}");
        // LoHa/LoKr scale by alpha / r (PEFT's LycorisConfig has no use_rslora); VeRA and OFT have no scaling at all.
        Refuse(o.UseRslora && (lycoris || method is "vera" or "oft"), "use_rslora", "LoRA/DoRA");
        Refuse(o.VeraDropout is not null && method != "vera", "vera_dropout (--vera-dropout)", "VeRA");
        Refuse(o.DInitial is not null && method != "vera", "d_initial (--vera-d-initial)", "VeRA");
        Refuse(o.ProjectionPrngKey is not null && method != "vera", "projection_prng_key (--projection-prng-key)", "VeRA");
        Refuse(o.SaveProjection is not null && method != "vera", "save_projection (--save-projection)", "VeRA");
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
        var adalora = method == "adalora";
        Refuse(o.AdaloraTargetR is not null && !adalora, "adalora_target_r (--adalora-target-r)", "AdaLoRA");
        Refuse(o.AdaloraInitR is not null && !adalora, "adalora_init_r (--adalora-init-r)", "AdaLoRA");
        Refuse(o.AdaloraTinit is not null && !adalora, "adalora_tinit (--adalora-tinit)", "AdaLoRA");
        Refuse(o.AdaloraTfinal is not null && !adalora, "adalora_tfinal (--adalora-tfinal)", "AdaLoRA");
        Refuse(o.AdaloraDeltaT is not null && !adalora, "adalora_delta_t (--adalora-delta-t)", "AdaLoRA");
        Refuse(o.AdaloraBeta1 is not null && !adalora, "adalora_beta1 (--adalora-beta1)", "AdaLoRA");
        Refuse(o.AdaloraBeta2 is not null && !adalora, "adalora_beta2 (--adalora-beta2)", "AdaLoRA");
        Refuse(o.AdaloraOrthRegWeight is not null && !adalora, "adalora_orth_reg_weight (--adalora-orth-reg-weight)", "AdaLoRA");
        Refuse(o.AdaloraTotalStep is not null && !adalora, "adalora_total_step (--adalora-total-step)", "AdaLoRA");
        Refuse(o.UseRslora && adalora, "use_rslora", "LoRA/DoRA");
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

    // AdaLoRA reads lora_alpha and lora_dropout with PEFT's LoraConfig defaults (8 and 0), not SharpTune's LoRA defaults;
    // total_step left empty is filled with the run's total steps by the trainer.
    private static AdaLoraConfig AdaLora(TrainingOptions o) => new()
    {
        TargetR = o.AdaloraTargetR ?? 8,
        InitR = o.AdaloraInitR ?? 12,
        Tinit = o.AdaloraTinit ?? 0,
        Tfinal = o.AdaloraTfinal ?? 0,
        DeltaT = o.AdaloraDeltaT ?? 1,
        Beta1 = o.AdaloraBeta1 ?? 0.85,
        Beta2 = o.AdaloraBeta2 ?? 0.85,
        OrthRegWeight = o.AdaloraOrthRegWeight ?? 0.5,
        TotalStep = o.AdaloraTotalStep,
        LoraAlpha = o.LoraAlpha ?? 8,
        LoraDropout = o.LoraDropout ?? 0,
        TargetModules = ParseTargets(o.TargetModules),
        ModulesToSave = ParseNames(o.ModulesToSave),
    };

    private static LoraConfig Lora(TrainingOptions o) => new()
    {
        R = o.LoraR ?? DefaultLoraR,
        LoraAlpha = o.LoraAlpha ?? DefaultLoraAlpha,
        // PEFT's ParamWrapper refuses dropout, so LoRA on parameters defaults to none (a value given is still checked).
        LoraDropout = o.LoraDropout ?? (ParseNames(o.TargetParameters).Count > 0 ? 0 : DefaultLoraDropout),
        UseRsLora = o.UseRslora,
        InitLoraWeights = o.InitLoraWeights is { } init ? LoraConfig.ParseInit(init, "training options") : LoraInit.Default,
        TargetModules = ParseTargets(o.TargetModules),
        TargetParameters = ParseNames(o.TargetParameters),
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
