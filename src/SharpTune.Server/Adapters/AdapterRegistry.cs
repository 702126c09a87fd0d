using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using SharpTune.Embeddings;
using SharpTune.Peft;
using SharpTune.Tokenization;

namespace SharpTune.Server.Adapters;

/// <summary>
/// The adapters served over one base model, by name. Lookups are thread-safe; <see cref="Load"/> and
/// <see cref="Unload"/> touch the model and run on the engine's model thread.
/// </summary>
/// <param name="hiddenSize">The base model's hidden size, checked against an embedding adapter's Pooling config; null = unchecked.</param>
/// <param name="baseModel">
/// The served base model: an adapter's saved token embedding and output head (found by the base's own names for them,
/// e.g. GPT-NeoX's gpt_neox.embed_in and embed_out) must not have more rows than its vocabulary; null = unchecked.
/// </param>
public sealed partial class AdapterRegistry(IAdapterActivator activator, HfTokenizer tokenizer, string baseModelName, int? hiddenSize = null,
    SharpTune.Models.CausalLanguageModel? baseModel = null) : IDisposable
{
    private readonly ConcurrentDictionary<string, ServedAdapter> adapters = new(StringComparer.Ordinal);

    /// <summary>The adapters now served, by name order.</summary>
    public IReadOnlyList<ServedAdapter> All => adapters.Values.OrderBy(a => a.Name, StringComparer.Ordinal).ToArray();

    /// <summary>The adapter named <paramref name="name"/>, if served.</summary>
    public bool TryGet(string name, out ServedAdapter adapter) => adapters.TryGetValue(name, out adapter!);

    /// <summary>
    /// Reads the PEFT folder, checks its weights fit the base model (by applying it once) and serves it as
    /// <paramref name="name"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The name is invalid or already used.</exception>
    /// <exception cref="FileNotFoundException">The folder lacks adapter_config.json or adapter_model.safetensors.</exception>
    /// <exception cref="InvalidDataException">
    /// The config or weights are malformed or do not fit the model, or the sentence-transformers files beside the adapter
    /// (modules.json, …) are malformed or name a module the embedder cannot run; the message names the file. Also an
    /// adapter trained with added tokens (its tokenizer or saved embedding larger than the base's): serve it merged.
    /// </exception>
    public ServedAdapter Load(string name, string directory)
    {
        if (!ValidName().IsMatch(name))
            throw new ArgumentException($"adapter name '{name}' is invalid: use letters, digits and . _ - : / (1-128 characters)");
        if (name == baseModelName || adapters.ContainsKey(name))
            throw new ArgumentException($"adapter name '{name}' is already in use; unload it first or choose another name");
        if (!System.IO.Directory.Exists(directory))
            throw new DirectoryNotFoundException($"adapter folder not found: {directory}");
        var method = PeftAdapters.ReadConfig(directory);
        var weightsPath = Path.Combine(directory, AdapterFiles.WeightsFileName);
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"{weightsPath}: adapter weights file not found", weightsPath);
        // Read once here, as the chat format is: a reload after retraining picks up new files, and a broken one fails the load.
        var embedding = File.Exists(Path.Combine(directory, SentenceTransformerConfig.ModulesFileName))
            ? SentenceTransformerConfig.FromDirectory(directory, hiddenSize) : null;
        var chatFormat = ChatPromptFormat.StoredWithAdapter(directory, tokenizer);
        RefuseAddedTokens(name, directory);
        var weights = AdapterFiles.DefaultStore.Read(weightsPath);
        try
        {
            RefuseGrownEmbedding(name, directory, weights);
        }
        catch
        {
            foreach (var t in weights.Values) t.Dispose();
            throw;
        }
        var served = new ServedAdapter(name, Path.GetFullPath(directory), method, weights, chatFormat, embedding);
        try
        {
            activator.Activate(served);
        }
        catch (InvalidDataException e)
        {
            served.Dispose();
            throw new InvalidDataException($"{weightsPath}: {e.Message}", e);
        }
        catch
        {
            served.Dispose();
            throw;
        }
        served.Warnings = [.. served.Adapter.Warnings];   // the first injection is where the method decides them
        adapters[name] = served;
        return served;
    }

    // An adapter trained with added tokens needs the base's vocabulary grown to its own (and its tokenizer to encode the
    // new tokens); the base is shared by every adapter and the base's own requests, so serve does not grow it.
    private void RefuseAddedTokens(string name, string directory)
    {
        if (!File.Exists(Path.Combine(directory, "tokenizer.json"))) return;
        var ids = HfTokenizer.FromDirectory(directory).IdCount;
        if (ids > tokenizer.IdCount)
            throw new InvalidDataException(AddedTokensMessage(name, directory, $"its tokenizer has {ids} ids, the served base's {tokenizer.IdCount}"));
    }

    private void RefuseGrownEmbedding(string name, string directory, IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights)
    {
        if (baseModel is null) return;
        var rows = baseModel.Config.VocabSize;
        // Saved whole (base_model.model.<name>) or under the wrapper PEFT had around it (token_adapter.base_layer, base_layer).
        var vocabularyWeights = new VocabularyKeys(baseModel).Weights.ToList();
        foreach (var (key, tensor) in weights)
            if (vocabularyWeights.Any(n => key == n || key.EndsWith("." + n, StringComparison.Ordinal))
                && tensor.dim() == 2 && tensor.size(0) > rows)
                throw new InvalidDataException(AddedTokensMessage(name, directory, $"{key} has {tensor.size(0)} rows, the served base's embedding {rows}"));
    }

    private static string AddedTokensMessage(string name, string directory, string detail) =>
        $"adapter '{name}' ({directory}) was trained with added tokens ({detail}); serve does not grow the base it shares with " +
        $"every other adapter: merge it (sharptune merge --model BASE --adapter {directory} --out MERGED) and serve the merged folder";

    /// <summary>Stops serving <paramref name="name"/>, restoring the base model if it was active; false if unknown.</summary>
    public bool Unload(string name)
    {
        if (!adapters.TryRemove(name, out var served)) return false;
        served.Removed = true;
        if (ReferenceEquals(activator.Active, served)) activator.Activate(null);
        served.Dispose();
        return true;
    }

    /// <summary>Frees every adapter's weights.</summary>
    public void Dispose()
    {
        foreach (var name in adapters.Keys.ToArray()) Unload(name);
    }

    [GeneratedRegex("^[A-Za-z0-9._:/-]{1,128}$")]
    private static partial Regex ValidName();
}
