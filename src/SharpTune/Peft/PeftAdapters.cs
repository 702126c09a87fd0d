using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft.Adapters;
using SharpTune.Peft.IA3;
using SharpTune.Peft.LoHa;
using SharpTune.Peft.LoKr;
using SharpTune.Peft.Lora;
using SharpTune.Peft.Oft;
using SharpTune.Peft.PrefixTuning;
using SharpTune.Peft.PromptTuning;
using SharpTune.Peft.Vera;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// Saving and loading adapters in PEFT's folder layout (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>),
/// with one registration line per method, keyed by <c>peft_type</c>.
/// </summary>
public static class PeftAdapters
{
    private static readonly Dictionary<string, Func<JsonObject, string, IPeftAdapter>> Methods = new()
    {
        ["LORA"] = LoraAdapter.FromConfigJson,
        ["PROMPT_TUNING"] = PromptTuningAdapter.FromConfigJson,
        ["PREFIX_TUNING"] = PrefixTuningAdapter.FromConfigJson,
        ["BOTTLENECK"] = BottleneckAdapter.FromConfigJson,
        ["IA3"] = IA3Adapter.FromConfigJson,
        ["LOHA"] = LohaAdapter.FromConfigJson,
        ["LOKR"] = LokrAdapter.FromConfigJson,
        ["VERA"] = VeraAdapter.FromConfigJson,
        ["OFT"] = OftAdapter.FromConfigJson,
        ["ADALORA"] = AdaLora.AdaLoraAdapter.FromConfigJson,
    };

    /// <summary>The <c>peft_type</c> values that can be loaded.</summary>
    public static IReadOnlyCollection<string> SupportedPeftTypes => Methods.Keys;

    /// <summary>
    /// Writes <paramref name="adapter"/> (its <see cref="IPeftAdapter.SavedForm"/>) into <paramref name="directory"/> as PEFT does: the config with
    /// <c>base_model_name_or_path</c> and <c>inference_mode: true</c>, the tensors with header metadata {"format": "pt"}.
    /// </summary>
    public static void Save(IPeftAdapter adapter, string directory, string? baseModelNameOrPath, IAdapterTensorStore? store = null)
    {
        var tensors = AdapterFiles.Resolve(store);
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();   // frees what SavedForm creates, never the live parameters
        var (config, state) = adapter.SavedForm();
        config["base_model_name_or_path"] = baseModelNameOrPath;
        config["inference_mode"] = true;
        var sorted = new JsonObject(config.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
        File.WriteAllText(Path.Combine(directory, AdapterFiles.ConfigFileName),
            sorted.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        tensors.Write(Path.Combine(directory, AdapterFiles.WeightsFileName), state, AdapterFiles.Metadata);
    }

    /// <summary>Reads the <c>adapter_config.json</c> of <paramref name="directory"/> and builds the (not yet injected) adapter.</summary>
    public static IPeftAdapter ReadConfig(string directory)
    {
        var path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: not a PEFT adapter folder (no {AdapterFiles.ConfigFileName})", path);
        JsonObject json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new InvalidDataException($"{path}: must hold a JSON object");
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
        var peftType = json["peft_type"] is JsonValue v && v.TryGetValue<string>(out var s) ? s
            : throw new InvalidDataException($"{path}: required field 'peft_type' is missing or not a string");
        if (!Methods.TryGetValue(peftType, out var create))
            throw new NotSupportedException(
                $"{path}: peft_type '{peftType}' is not supported; supported: {string.Join(", ", Methods.Keys)}");
        return create(json, path);
    }

    /// <summary>
    /// Loads the adapter folder <paramref name="directory"/> into <paramref name="model"/> (inject + load weights).
    /// When the weights do not fit, the model is restored (a vocabulary grown for the adapter included) and the error
    /// names the file and the mismatched keys.
    /// </summary>
    public static IPeftAdapter Load(CausalLanguageModel model, string directory, IAdapterTensorStore? store = null)
    {
        var tensors = AdapterFiles.Resolve(store);
        var adapter = ReadConfig(directory);
        var weights = Path.Combine(directory, AdapterFiles.WeightsFileName);
        if (!File.Exists(weights))
            throw new FileNotFoundException(File.Exists(Path.Combine(directory, AdapterFiles.LegacyWeightsFileName))
                ? $"{directory}: only {AdapterFiles.LegacyWeightsFileName} (pickle) is present; convert it to {AdapterFiles.WeightsFileName}"
                : $"{weights}: adapter weights file not found", weights);
        var state = new Dictionary<string, Tensor>(tensors.Read(weights));
        (Tensor? Embedding, Tensor? Head, Tensor? HeadBias) vocabulary = (null, null, null);
        try
        {
            vocabulary = TakeVocabularyRows(model, state, adapter);
            var grown = GrowVocabularyToFit(model, state, adapter, vocabulary, weights);
            try
            {
                adapter.Inject(model);
                try
                {
                    adapter.LoadAdapterState(state);
                }
                catch (InvalidDataException e)
                {
                    adapter.Unload();   // leave the model as it was, not with half-loaded adapter layers
                    throw new InvalidDataException($"{weights}: {e.Message}", e);
                }
            }
            catch when (grown is not null)
            {
                grown.Restore();   // nor with a vocabulary grown for an adapter it does not hold
                throw;
            }
            grown?.Dispose();
        }
        finally
        {
            foreach (var t in state.Values) t.Dispose();
            vocabulary.Embedding?.Dispose();
            vocabulary.Head?.Dispose();
            vocabulary.HeadBias?.Dispose();
        }
        return adapter;
    }

    /// <summary>
    /// An adapter trained with added tokens carries the resized embedding (and untied head) whole, as PEFT's
    /// modules_to_save / <c>save_embedding_layers</c> write them. PEFT loads such an adapter only into a base the user
    /// resized first (<c>model.resize_token_embeddings(len(tokenizer))</c> before <c>PeftModel.from_pretrained</c>); here
    /// the base grows to the saved row count itself, and the saved values then replace every row: through the adapter's
    /// modules_to_save, or, beside <c>trainable_token_indices</c>, written into the base as its resized rows. Without
    /// saved rows, an adapter with <c>trainable_token_indices</c> grows the base to hold the highest.
    /// </summary>
    /// <returns>What the growth replaced (to undo it if the adapter then fails to load), or null when nothing grew.</returns>
    private static Models.EmbeddingResize.Replaced? GrowVocabularyToFit(CausalLanguageModel model, IReadOnlyDictionary<string, Tensor> state,
        IPeftAdapter adapter, (Tensor? Embedding, Tensor? Head, Tensor? HeadBias) vocabulary, string weights)
    {
        var rows = new VocabularyKeys(model).Weights
            .Select(key => state.TryGetValue("base_model.model." + key, out var t) && t.dim() == 2 ? (int)t.size(0) : 0)
            .Append(vocabulary.Embedding is { } e ? (int)e.size(0) : 0)
            .Append(vocabulary.Head is { } h ? (int)h.size(0) : 0)
            .Append(vocabulary.HeadBias is { } b ? (int)b.size(0) : 0)
            .Append(adapter is LoraAdapter { Config.TrainableTokenIndices: { Count: > 0 } indices } ? indices.Max() + 1 : 0).Max();
        var grown = rows > model.EmbeddingWeight.size(0) ? Models.EmbeddingResize.ResizeUndoable(model, rows) : null;
        try
        {
            using var noGrad = no_grad();
            if (vocabulary.Embedding is { } embedding) CopyRows(model.EmbeddingWeight, embedding, model.EmbeddingParameterName, weights);
            if (vocabulary.Head is { } head)
            {
                var target = model.named_parameters().FirstOrDefault(p => p.name == model.OutputHeadWeightName).parameter;
                if (target is not null) CopyRows(target, head, model.OutputHeadWeightName, weights);
                // A tied head is the embedding, which PEFT saves a second time under the head's wrapper: the same rows.
                else if (!head.shape.SequenceEqual(model.EmbeddingWeight.shape) || !head.to(model.EmbeddingWeight.dtype).equal(model.EmbeddingWeight).all().item<bool>())
                    throw new InvalidDataException($"{weights}: holds a weight for {model.OutputHeadModuleName} that differs from the token embedding, " +
                                                   "but the model ties its head to the token embedding");
            }
            if (vocabulary.HeadBias is { } bias)
                CopyRows(model.OutputHeadBias ?? throw new InvalidDataException($"{weights}: holds {model.OutputHeadModuleName}.bias but the model's head has no bias"),
                         bias, model.OutputHeadModuleName + ".bias", weights);
        }
        catch when (grown is not null)
        {
            grown.Restore();
            throw;
        }
        return grown;
    }

    private static void CopyRows(Tensor target, Tensor saved, string name, string weights)
    {
        if (!saved.shape.SequenceEqual(target.shape))
            throw new InvalidDataException($"{weights}: {name} is saved as [{string.Join(", ", saved.shape)}] but the model's is " +
                                           $"[{string.Join(", ", target.shape)}] (an adapter for another base model?)");
        target.copy_(saved.to(target.dtype, target.device));
    }

    /// <summary>
    /// Beside <c>trainable_token_indices</c>, the whole embedding (and head, with its bias over the vocabulary) an adapter
    /// saved because its run grew the vocabulary (PEFT's <c>save_embedding_layers</c>), under any of the names
    /// <see cref="VocabularyKeys"/> lists: removed from <paramref name="state"/>, since they are the base's resized rows,
    /// not adapter weights. A tied head's copies of the embedding's weight and delta are checked against it and dropped. PEFT's own buffers of the trainable rows' starting values
    /// (<c>trainable_tokens_original</c>, <c>token_indices</c>) are dropped: the config holds the indices, and the
    /// resized rows hold the starting values.
    /// </summary>
    private static (Tensor? Embedding, Tensor? Head, Tensor? HeadBias) TakeVocabularyRows(CausalLanguageModel model, Dictionary<string, Tensor> state, IPeftAdapter adapter)
    {
        if (adapter is not LoraAdapter { Config: { TrainableTokenIndices.Count: > 0 } config }) return (null, null, null);
        foreach (var key in state.Keys.Where(k => k.EndsWith(".trainable_tokens_original", StringComparison.Ordinal)
                                                  || k.EndsWith(".token_indices", StringComparison.Ordinal)).ToList())
        {
            state[key].Dispose();
            state.Remove(key);
        }
        const string prefix = "base_model.model.";
        Tensor? Take(IReadOnlyList<string> names)
        {
            Tensor? found = null;
            foreach (var name in names)
                if (state.Remove(prefix + name, out var t))
                {
                    if (found is not null) throw new InvalidDataException($"adapter tensors hold '{prefix}{names[0]}' twice");
                    found = t;
                }
            return found;
        }
        void DropCopy(string copyName, string ownName)
        {
            if (!state.Remove(prefix + copyName, out var copy)) return;
            var own = state.GetValueOrDefault(prefix + ownName);
            using (copy)
                if (own is null || !copy.shape.SequenceEqual(own.shape) || !copy.to(own.dtype).equal(own).all().item<bool>())
                    throw new InvalidDataException($"adapter tensors hold {prefix}{copyName}, which differs from {prefix}{ownName} (the module to save it copies)");
        }
        var keys = new VocabularyKeys(model);
        var embedding = Take(keys.Embedding);
        Tensor? head, headBias;
        if (config.ModulesToSave.Contains(model.OutputHeadModuleName))
        {
            // A head in modules_to_save is the adapter's own lm_head.weight/.bias; PEFT's wrapper also lists the base head
            // (original_module: the resized base rows) and the trained copy again (modules_to_save: checked, dropped).
            head = Take([keys.SavedHeadOriginal.Weight]);
            headBias = Take([keys.SavedHeadOriginal.Bias]);
            DropCopy(keys.SavedHeadCopy.Weight, keys.HeadModule + ".weight");
            DropCopy(keys.SavedHeadCopy.Bias, keys.HeadModule + ".bias");
        }
        else
        {
            head = Take(keys.HeadWeight);
            headBias = Take(keys.HeadBias);   // a head's bias over the vocabulary (Phi's)
        }
        if (keys.TiedHeadDelta is { } tiedDelta && state.Remove(prefix + tiedDelta, out var copy))
        {
            // PEFT's tied head lists the embedding's trained rows again; they must be the same rows.
            var own = state.GetValueOrDefault(prefix + model.EmbeddingParameterName[..^".weight".Length] + "." + TrainableTokens.SavedSuffix);
            using (copy)
                if (own is null || !copy.shape.SequenceEqual(own.shape) || !copy.to(own.dtype).equal(own).all().item<bool>())
                    throw new InvalidDataException($"adapter tensors hold {prefix}{tiedDelta}, which differs from the embedding's " +
                                                   $"{TrainableTokens.SavedSuffix}, but the model ties its head to the embedding");
        }
        return (embedding, head, headBias);
    }
}
