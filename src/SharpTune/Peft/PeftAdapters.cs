using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft.Adapters;
using SharpTune.Peft.IA3;
using SharpTune.Peft.LoHa;
using SharpTune.Peft.LoKr;
using SharpTune.Peft.Lora;
using SharpTune.Peft.PrefixTuning;
using SharpTune.Peft.PromptTuning;
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
    /// When the weights do not fit, the model is restored and the error names the file and the mismatched keys.
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
        var state = tensors.Read(weights);
        try
        {
            GrowVocabularyToFit(model, state, adapter);
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
        finally
        {
            foreach (var t in state.Values) t.Dispose();
        }
        return adapter;
    }

    /// <summary>
    /// An adapter trained with added tokens carries the resized embedding (and untied head) whole, as PEFT's
    /// modules_to_save / <c>save_embedding_layers</c> write them. PEFT loads such an adapter only into a base the user
    /// resized first (<c>model.resize_token_embeddings(len(tokenizer))</c> before <c>PeftModel.from_pretrained</c>); here
    /// the base grows to the saved row count itself, and the adapter's values then replace every row.
    /// </summary>
    /// <remarks>An adapter with <c>trainable_token_indices</c> saves only its rows: the base grows to hold the highest.</remarks>
    private static void GrowVocabularyToFit(CausalLanguageModel model, IReadOnlyDictionary<string, Tensor> state, IPeftAdapter adapter)
    {
        var rows = new[] { "base_model.model." + model.EmbeddingParameterName, "base_model.model." + CausalLanguageModel.OutputHeadParameterName }
            .Select(key => state.TryGetValue(key, out var t) && t.dim() == 2 ? (int)t.size(0) : 0)
            .Append(adapter is LoraAdapter { Config.TrainableTokenIndices: { Count: > 0 } indices } ? indices.Max() + 1 : 0).Max();
        if (rows > model.EmbeddingWeight.size(0)) Models.EmbeddingResize.Resize(model, rows);
    }
}
