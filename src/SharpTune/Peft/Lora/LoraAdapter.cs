using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// LoRA (and DoRA, rsLoRA) on a whole model: wraps the target layers (Linear, Conv1D or quantized) in
/// <see cref="LoraLinear"/>, freezes the rest, and saves/loads PEFT's key layout
/// (<c>base_model.model.&lt;path&gt;.lora_A.weight</c> …).
/// </summary>
public sealed class LoraAdapter : WrappingAdapter<LoraLinear>
{
    public LoraAdapter(LoraConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "LORA").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new LoraAdapter(LoraConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public LoraConfig Config { get; private set; }

    public override string PeftType => LoraConfig.PeftTypeName;

    protected override string MethodName => "LoRA";

    // PEFT's _prepare_adapter_config: target_modules null takes the model type's default; a model type without one is
    // refused unless target_parameters are given, in which case no module is wrapped (gpt-oss has no default).
    private TargetModules? Targets(CausalLanguageModel model)
    {
        if (Config.TargetModules is { } targets) return targets.ListedNames is { Count: 0 } ? null : targets;
        if (Config.TargetParameters.Count > 0 && !LoraConfig.HasDefaultTargetModules(model.Config.ModelType)) return null;
        return TargetModules.Names(LoraConfig.DefaultTargetModules(model.Config.ModelType));
    }

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        if (Config.PeftTaskType == LoraConfig.SequenceClassificationTaskType &&
            ModuleSurgery.NamedModules(model).All(m => m.Path != Models.SequenceClassifier.ScoreModuleName))
            throw new NotSupportedException(
                "this is a SEQ_CLS adapter (task_type) for a sequence classifier: load it on a SequenceClassifier's model " +
                "(sharptune classify score --adapter, TextClassifier.Load), not on a causal LM");
        RefuseUntiedSavedEmbedding(model);
        parameterTargets = ExpertParameterTargets.Select(model, Config.TargetParameters);   // before any change to the model
        injectionWarnings = [];
        if (Targets(model) is not { } targets)
        {
            if (parameterTargets.Count == 0)
                throw new ArgumentException(Config.TargetParameters.Count > 0
                    ? ExpertParameterTargets.NoMatch(model, Config.TargetParameters)
                    : "target_modules is empty and there are no target_parameters: the adapter would change nothing");
            savedTargets = Config.TargetModules;   // null or [], as given: only parameters are targeted
            return [];
        }
        savedTargets = targets.Expand(model);   // before wrapping: "all-linear" must name the base layers
        RefuseTiedHeadWithTrainableTokens(model, savedTargets);
        // PEFT's inject_adapter (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/tuners/tuners_utils.py,
        // lines 1024-1080): an error only when neither modules nor parameters were matched, a RuntimeWarning when one was.
        List<(string Path, nn.Module Module)> kept;
        string noModule;
        try
        {
            kept = targets.Select(model, path => MatchedName(model, path)).Where(t => Config.Keeps(t.Path, MatchedName(model, t.Path))).ToList();
            noModule = $"target_modules {targets.ToJson().ToJsonString()} selected no module once exclude_modules and layers_to_transform were applied";
        }
        catch (ArgumentException matchedNone) when (Config.TargetParameters.Count > 0)   // TargetModules.Select: no module matched
        {
            (kept, noModule) = ([], matchedNone.Message.TrimEnd('.'));
        }
        if (kept.Count == 0 && parameterTargets.Count == 0)
            throw new ArgumentException(Config.TargetParameters.Count > 0 ? $"{noModule}; and {ExpertParameterTargets.NoMatch(model, Config.TargetParameters)}" : noModule);
        if (kept.Count == 0)
            injectionWarnings = [$"{noModule}; only target_parameters are adapted (PEFT warns and goes on likewise)"];
        else if (Config.TargetParameters.Count > 0 && parameterTargets.Count == 0)
            injectionWarnings = [$"{ExpertParameterTargets.NoMatch(model, Config.TargetParameters)}; only target_modules are adapted (PEFT warns and goes on likewise)"];
        return kept;
    }

    // What PEFT warns about while injecting (a target list that matched nothing beside one that matched).
    private IReadOnlyList<string> injectionWarnings = [];

    // A LoRA on expert parameters leaves no LoraLinear in the tree: the experts' WeightUpdate shows it.
    private protected override bool CarriesOwnParameterAdapter(CausalLanguageModel model) =>
        ModuleSurgery.NamedModules(model).Any(m => m.Module is GptOssExperts { WeightUpdate: LoraExpertParameters });

    // target_parameters resolved against the model: the experts modules by path, with the parameter names each holds.
    private IReadOnlyList<(string Path, GptOssExperts Experts, IReadOnlyList<string> Names)> parameterTargets = [];

    // PEFT's _create_and_replace: rank_pattern and alpha_pattern are matched against the parameter's full name.
    private protected override IReadOnlyList<(string Path, IParameterAdapter Adapter)> AttachParameterAdapters(CausalLanguageModel model) =>
        parameterTargets.Select(t => (t.Path, (IParameterAdapter)new LoraExpertParameters(t.Experts, t.Names,
            name => (Config.RankFor($"{t.Path}.{name}"), Config.ScalingFor($"{t.Path}.{name}")), Config.InitLoraWeights))).ToList();

    // PEFT (tuners_utils.py, ensure_weight_tying false) trains a copy of a saved embedding while the tied head keeps
    // reading the base weights; SharpTune's saved embedding is the head too, so such a file would compute differently.
    private void RefuseUntiedSavedEmbedding(CausalLanguageModel model)
    {
        if (Config.EnsureWeightTying == false && SavesTiedEmbedding(model))
            throw new NotSupportedException(
                "ensure_weight_tying = false with the token embedding in modules_to_save of a model whose output head is tied to it: " +
                "PEFT then keeps the head at the base weights while the embedding is trained, which SharpTune does not support " +
                "(it trains them as one); set ensure_weight_tying to true if the adapter was trained that way");
    }

    // transformers keeps an lm_head module over the tied weight, which PEFT's LoRA wraps; trainable_token_indices then
    // wraps every module tied to the embedding in a TrainableTokensWrapper, and its check_module refuses a LoRA layer
    // (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/utils/other.py lines 357-360, 1665-1680). A tied
    // SharpTune model has no lm_head module to wrap, so the name would select nothing and the adapter would silently
    // differ from what the config says: refused by name.
    private void RefuseTiedHeadWithTrainableTokens(CausalLanguageModel model, TargetModules targets)
    {
        if (Config.TrainableTokenIndices.Count == 0 || model.UntiedOutputHead is not null
            || Config.PeftTaskType == LoraConfig.FeatureExtractionTaskType) return;   // PEFT's headless model has no lm_head
        var head = model.OutputHeadModuleName;
        if (!targets.Matches(head)) return;
        throw new NotSupportedException(
            $"LoRA: target_modules {targets.ToJson().ToJsonString()} selects {head}, which this model ties to the token embedding " +
            $"({model.EmbeddingParameterName}), together with trainable_token_indices: PEFT refuses the pair (trainable_token_indices " +
            $"cannot wrap the LoRA layer on the tied {head}), and SharpTune's tied head is the embedding itself, with no {head} layer " +
            $"to wrap. Leave {head} out of target_modules: the tied head already reads the trainable rows");
    }

    private bool SavesTiedEmbedding(CausalLanguageModel model) => SavedModules.SavesTiedEmbedding(model, Config.ModulesToSave);

    protected override LoraLinear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        LoraLinear.FromBase(baseLayer, Config.RankFor(path), Config.ScalingFor(path), Config.LoraDropout, Config.UseDora, Config.InitLoraWeights);

    // PEFT sets fan_in_fan_out for Conv1D targets itself; the saved config says what the layers really are.
    private TargetModules? savedTargets;

    protected override void OnInjected(CausalLanguageModel model) =>
        Config = Config with
        {
            TargetModules = savedTargets, FanInFanOut = Layers.Any(l => l.Layer.FanInFanOut),
            EnsureWeightTying = SavesTiedEmbedding(model) ? true : Config.EnsureWeightTying,   // SharpTune trains them as one
        };

    /// <summary>
    /// LoftQ with a scaling other than 1: PEFT assigns the residual's factors without dividing by lora_alpha / r, so the
    /// adapter starts at s times the rank-r part of the quantization error instead of cancelling it. Also a target list
    /// that matched nothing beside one that matched (PEFT's RuntimeWarning).
    /// </summary>
    public override IReadOnlyList<string> Warnings =>
        Config.InitLoraWeights == LoraInit.Loftq && Layers.Select(l => l.Layer).FirstOrDefault(l => Math.Abs(l.Scaling - 1) > 1e-12) is { } scaled
            ? [.. injectionWarnings,
               $"LoftQ: the adapter starts at {scaled.Scaling:0.###} × the quantization error's rank-r part (lora_alpha / r ≠ 1), " +
               "as PEFT's replace_lora_weights_loftq does; set lora_alpha equal to r (--lora-alpha) for it to cancel that error"]
            : injectionWarnings;

    protected override nn.Module<Tensor, Tensor> Fuse(LoraLinear layer) => layer.Fuse();

    protected override nn.Module<Tensor, Tensor> Unwrap(LoraLinear layer) => layer.Unwrap();

    /// <summary>
    /// For PiSSA/OLoRA, the ordinary LoRA for the ORIGINAL base that computes the same model (PEFT's save_pretrained
    /// with path_initial_model_for_weight_conversion and LoraModel.subtract_mutated_init): W_res + s·BA = W + s·(BA − B0A0)
    /// = W + s·[B, −B0]·[A; A0], saved as lora_A = [A; A0] (2r, in) and lora_B = [B, −B0] (out, 2r) with the config of
    /// <see cref="LoraConfig.AsConvertedLora"/>. PEFT's conversion returns only the lora_A/lora_B tensors; DoRA's
    /// magnitude and modules_to_save are kept here, since the file would otherwise not reproduce the trained model.
    /// </summary>
    public override (JsonObject Config, IReadOnlyDictionary<string, Tensor> Tensors) SavedForm()
    {
        if (!Config.MutatesBase) return base.SavedForm();
        var state = new Dictionary<string, Tensor>(AdapterStateDict());
        using (no_grad())
            foreach (var (path, layer) in Layers)
            {
                var (a0, b0) = layer.InitialFactors
                    ?? throw new InvalidOperationException($"{path}: the {Config.InitLoraWeights} starting factors are missing");
                state[SavedKey(path, "lora_A.weight")] = torch.cat([layer.lora_A.weight!, a0], 0);
                state[SavedKey(path, "lora_B.weight")] = torch.cat([layer.lora_B.weight!, -b0], 1);
            }
        return (Config.AsConvertedLora().ToJson(), state);
    }

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;

    protected override IReadOnlyList<int> TrainableTokenIndices => Config.TrainableTokenIndices;

    // PEFT's names for the embedding layers (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40
    // src/peft/utils/constants.py line 402, EMBEDDING_LAYER_NAMES).
    private static readonly string[] EmbeddingLayerNames = ["embed_tokens", "lm_head"];

    // save_and_load.py lines 211-223: a target_modules list targets the embedding layers when it holds one of those names
    // as it is; a regex, when it matches a module so named (transformers keeps an lm_head module even when it is tied).
    private protected override bool TargetsEmbeddingLayers(CausalLanguageModel model)
    {
        var targets = Config.TargetModules?.ToJson();
        if (targets is JsonArray list)
            return list.Any(n => n is JsonValue v && v.TryGetValue<string>(out var name) && EmbeddingLayerNames.Contains(name));
        if (targets is null || Config.TargetModules is not { } pattern) return false;
        var modules = new[] { MatchedName(model, model.EmbeddingParameterName[..^".weight".Length]), model.OutputHeadModuleName };
        return modules.Any(m => EmbeddingLayerNames.Contains(m[(m.LastIndexOf('.') + 1)..]) && pattern.Matches(m));
    }

    // PEFT's PeftModelForFeatureExtraction wraps transformers' AutoModel (LlamaModel: layers.0…, no "model." and no head),
    // so a FEATURE_EXTRACTION adapter's keys are base_model.model.layers.0.self_attn.q_proj.lora_A.weight.
    protected override string SavedPath(string path) => InjectedModel is { } model ? MatchedName(model, path) : path;

    // The module's name as PEFT sees it: for FEATURE_EXTRACTION the headless model's (layers.0.self_attn.q_proj), which
    // is what PEFT's check_target_module_exists matches target_modules and exclude_modules against (re.fullmatch on the
    // wrapped model's named_modules keys, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/tuners_utils.py)
    // and what the saved keys are built from, so a config selects the same layers here and in PEFT.
    private string MatchedName(CausalLanguageModel model, string path)
    {
        if (Config.PeftTaskType != LoraConfig.FeatureExtractionTaskType || model.BaseModelPrefix is not { Length: > 0 } prefix) return path;
        return path.StartsWith(prefix + ".", StringComparison.Ordinal) ? path[(prefix.Length + 1)..] : path;
    }

    // PEFT's PeftModelForSequenceClassification (peft_model.py, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40)
    // adds "classifier" and "score" to every SEQ_CLS config; SharpTune's
    // classifiers name their head score, so "classifier" matches nothing, as it matches nothing in PEFT's Llama.
    protected override IReadOnlyCollection<string> OptionalModulesToSave =>
        Config.PeftTaskType == LoraConfig.SequenceClassificationTaskType ? ["classifier"] : [];

    // Recent PEFT versions may write DoRA's magnitude as "...lora_magnitude_vector.weight"; both spellings load. A
    // FEATURE_EXTRACTION adapter made on a *ForCausalLM model keeps the base-model prefix ("model."): it loads too.
    protected override string NormaliseKey(string key)
    {
        if (key.EndsWith(".lora_magnitude_vector.weight", StringComparison.Ordinal)) key = key[..^".weight".Length];
        const string prefix = "base_model.model.";
        if (Config.PeftTaskType == LoraConfig.FeatureExtractionTaskType && InjectedModel?.BaseModelPrefix is { Length: > 0 } basePrefix
            && key.StartsWith(prefix + basePrefix + ".", StringComparison.Ordinal))
            key = prefix + key[(prefix.Length + basePrefix.Length + 1)..];
        return key;
    }

    // PEFT 0.19 saves expert factors with in and out swapped under one transformers version or the other (see
    // SwappedExpertFactors): such files are converted to the layout read here, or refused where the layout cannot be known.
    protected override IReadOnlyDictionary<string, Tensor> BeforeLoad(Dictionary<string, Tensor> state)
    {
        var pairs = ParameterAdapters.SelectMany(p => ((LoraExpertParameters)p.Adapter).Targeted.Select(f => new SwappedExpertFactors.Pair(
            SavedKey(p.Path, f.KeyPrefix + "lora_A.weight"), SavedKey(p.Path, f.KeyPrefix + "lora_B.weight"),
            ((LoraExpertParameters)p.Adapter).ExpertCount, f.Rank, f.A.size(1), f.B.size(0)))).ToList();
        SwappedExpertFactors.Normalise(state, pairs, Config.PeftVersion);
        return state;
    }

    public override JsonObject AdapterConfigJson() => Config.ToJson();
}
