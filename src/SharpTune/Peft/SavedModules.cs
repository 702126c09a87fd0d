using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// PEFT's <c>modules_to_save</c>: whole modules (the token embedding, an untied LM head) trained beside an adapter and
/// saved with it under their own path (<c>base_model.model.model.embed_tokens.weight</c>, PEFT's key once it strips
/// its <c>modules_to_save.default</c> wrapper). A base model is often fine-tuned into a chat or tool-call format whose
/// markup its tokenizer spells with tokens pre-training hardly saw — byte-fallback pieces such as <c>&lt;</c> or
/// <c>_</c>; low-rank updates of the linear layers leave those rows (and, with a tied head, their output rows) as they
/// are, so the model keeps confusing them, and training the embedding is the known cure (PEFT and Unsloth
/// advise it for chat templates). With a tied head, the embedding is the head too, as in the base model.
/// <para>
/// The module keeps its parameter object: the base values are kept aside while the adapter is injected and copied
/// back when it is disabled or unloaded, so code that holds the parameter (a tied head, the optimizer) sees one tensor.
/// Modules whose parameters are <c>weight</c> and optionally <c>bias</c> qualify (embeddings, linear layers, a head
/// with a bias over the vocabulary such as Phi's lm_head): PEFT's <c>ModulesToSaveWrapper</c> deep-copies the whole
/// module, so its bias trains and is saved beside the weight, under <c>base_model.model.lm_head.bias</c>
/// (huggingface/peft@5d602fdb src/peft/utils/other.py, <c>ModulesToSaveWrapper.adapter_state_dict</c>: every key of the
/// copied module's state dict; save_and_load.py prefixes each with the module's path).
/// </para>
/// </summary>
internal sealed class SavedModules : IDisposable
{
    // One entry per saved parameter, named by its module path plus .weight or .bias.
    private readonly List<(string Name, Parameter Parameter, Tensor Base)> modules = [];
    private readonly Dictionary<Parameter, Tensor> trainedWhileDisabled = [];

    /// <summary>Selects the modules named by <paramref name="names"/> (each the end of a module path, as PEFT matches them).</summary>
    /// <param name="optional">Names that may match nothing (PEFT's SEQ_CLS task adds "classifier" and "score" to every
    /// config, whichever of them the model has).</param>
    public static SavedModules Select(CausalLanguageModel model, IReadOnlyList<string> names, string method, IReadOnlyCollection<string>? optional = null)
    {
        var saved = new SavedModules();
        if (names.Count == 0) return saved;
        var all = ModuleSurgery.NamedModules(model).ToList();
        foreach (var name in names)
        {
            var named = TargetModules.Names([name]);   // a path or its last segments, as target_modules names match
            var matches = all.Where(m => named.Matches(m.Path)).ToList();
            if (matches.Count == 0 && optional?.Contains(name) == true) continue;
            if (matches.Count == 0)
            {
                var tied = name == model.OutputHeadModuleName && model.named_parameters().All(p => p.name != model.OutputHeadWeightName);
                throw new ArgumentException(tied
                    ? $"modules_to_save: this model ties its output head to the token embedding, so '{name}' has no weights of its own; save '{EmbeddingModuleName(model)}' (it is the head too)"
                    : $"modules_to_save: no module of the model is named '{name}' (e.g. {EmbeddingModuleName(model)} or {model.OutputHeadModuleName})");
            }
            foreach (var (path, module) in matches)
            {
                var parameters = module.named_parameters().ToList();
                if (parameters.All(p => p.name != "weight") || parameters.Any(p => p.name is not ("weight" or "bias")))
                    throw new ArgumentException($"modules_to_save: '{path}' holds parameters {string.Join(", ", parameters.Select(p => p.name))}; " +
                                                $"{method} can save only modules whose parameters are 'weight' and an optional 'bias' " +
                                                "(embeddings, linear layers; a head tied to the embedding has no weight of its own)");
                foreach (var (leaf, parameter) in parameters)
                    if (saved.modules.All(m => m.Name != $"{path}.{leaf}"))
                        saved.modules.Add(($"{path}.{leaf}", parameter, null!));
            }
        }
        return saved;
    }

    /// <summary>Keeps the base values aside and makes the modules trainable (call after the base is frozen).</summary>
    public void Inject()
    {
        for (var i = 0; i < modules.Count; i++)
        {
            var (name, parameter, _) = modules[i];
            modules[i] = (name, parameter, parameter.detach().clone());
            parameter.requires_grad = true;
        }
    }

    /// <summary>
    /// Whether <paramref name="names"/> save the token embedding of a model whose output head is tied to it. PEFT trains
    /// such an embedding as the head too only for a LoRA config with <c>ensure_weight_tying: true</c> (tuners_utils.py);
    /// otherwise its head keeps reading the base weights, which SharpTune, training them as one, does not compute.
    /// </summary>
    public static bool SavesTiedEmbedding(CausalLanguageModel model, IReadOnlyList<string> names) =>
        names.Count > 0
        && model.named_parameters().All(p => p.name != model.OutputHeadWeightName)
        && TargetModules.Names(names).Matches(model.EmbeddingParameterName[..^".weight".Length]);

    /// <summary>The trainable parameters by their module path plus <c>.weight</c> or <c>.bias</c>.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> Parameters => modules.Select(m => (m.Name, m.Parameter));

    /// <summary>The base values of the saved parameter <paramref name="name"/> (module path plus .weight or .bias), or null if not saved.</summary>
    public Tensor? BaseOf(string name) => modules.FirstOrDefault(m => m.Name == name).Base;

    /// <summary>Switches the modules between the trained values (true) and the base values (false).</summary>
    public void SetEnabled(bool enabled)
    {
        using var noGrad = no_grad();
        foreach (var (_, weight, original) in modules)
        {
            if (!enabled && !trainedWhileDisabled.ContainsKey(weight))
            {
                trainedWhileDisabled[weight] = weight.detach().clone();
                weight.copy_(original);
            }
            else if (enabled && trainedWhileDisabled.Remove(weight, out var trained))
            {
                weight.copy_(trained);
                trained.Dispose();
            }
        }
    }

    /// <summary>Gives the modules back: with <paramref name="merge"/> keeping the trained values, else the base ones.</summary>
    public void Restore(bool merge)
    {
        SetEnabled(true);
        using (no_grad())
            foreach (var (_, weight, original) in modules)
            {
                if (!merge) weight.copy_(original);
                weight.requires_grad = false;   // the adapter's FrozenBase then gives back what was trainable before
            }
        Dispose();
    }

    public void Dispose()
    {
        foreach (var (_, _, original) in modules) original?.Dispose();
        foreach (var trained in trainedWhileDisabled.Values) trained.Dispose();
        trainedWhileDisabled.Clear();
        modules.Clear();
    }

    // The token embedding's leaf name as modules_to_save lists it (embed_tokens, wte, embed_in).
    private static string EmbeddingModuleName(CausalLanguageModel model)
    {
        var path = model.EmbeddingParameterName[..^".weight".Length];
        return path[(path.LastIndexOf('.') + 1)..];
    }
}
