using SharpTune.Embeddings;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Server.Adapters;

/// <summary>
/// An adapter the server can apply to its base model: the method (not injected while inactive), a private copy of its
/// weights, and the chat format and embedding settings stored with it, if any.
/// </summary>
public sealed class ServedAdapter : IDisposable
{
    internal ServedAdapter(string name, string directory, IPeftAdapter adapter, IReadOnlyDictionary<string, Tensor> weights,
        ChatPromptFormat? chatFormat, SentenceTransformerConfig? embeddingConfig = null)
    {
        Name = name;
        Directory = directory;
        Adapter = adapter;
        Weights = weights;
        ChatFormat = chatFormat;
        EmbeddingConfig = embeddingConfig;
    }

    /// <summary>The name clients request it by (the <c>model</c> field).</summary>
    public string Name { get; }

    /// <summary>The PEFT folder it was read from.</summary>
    public string Directory { get; }

    /// <summary>The method; injected into the base model only while active.</summary>
    public IPeftAdapter Adapter { get; }

    /// <summary>The saved tensors under PEFT's key names, kept so the adapter can be re-applied after being swapped out.</summary>
    public IReadOnlyDictionary<string, Tensor> Weights { get; }

    /// <summary>The chat format stored with the adapter (null: use the base model's).</summary>
    public ChatPromptFormat? ChatFormat { get; }

    /// <summary>
    /// The pooling, normalisation, prompts and max_seq_length of the sentence-transformers files saved beside the adapter
    /// (what <c>train --task embedding</c> writes), read when it was loaded; null: it embeds with the model's.
    /// </summary>
    public SentenceTransformerConfig? EmbeddingConfig { get; }

    /// <summary>
    /// What the adapter's method changed when it was first applied, where PEFT warns and goes on (see
    /// <see cref="IPeftAdapter.Warnings"/>): returned by /admin/adapters and printed by <c>serve</c>.
    /// </summary>
    public IReadOnlyList<string> Warnings { get; internal set; } = [];

    /// <summary>Unix time the adapter was loaded (the <c>created</c> field of /v1/models).</summary>
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Set once the adapter is unloaded: requests still queued for it fail with model_not_found.</summary>
    public bool Removed { get; internal set; }

    /// <summary>Frees the weight copy.</summary>
    public void Dispose()
    {
        foreach (var t in Weights.Values) t.Dispose();
    }
}
