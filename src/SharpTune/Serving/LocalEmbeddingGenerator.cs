using Microsoft.Extensions.AI;
using SharpTune.Embeddings;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;

namespace SharpTune.Serving;

/// <summary>
/// A local Hugging Face-layout model (optionally with a PEFT adapter) as a Microsoft.Extensions.AI
/// <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>, the in-process counterpart of the server's <c>/v1/embeddings</c>.
/// Pooling, normalisation and prompts follow the model folder's sentence-transformers files (see <see cref="TextEmbedder"/>).
/// </summary>
/// <remarks>
/// <c>EmbeddingGenerationOptions.Dimensions</c> truncates (Matryoshka) and re-normalises; the prompt comes from
/// <c>AdditionalProperties["prompt_name"]</c> (e.g. "query") or <c>AdditionalProperties["prompt"]</c> (literal text), else
/// the model's default prompt. Requests are served one at a time; concurrent callers wait their turn.
/// </remarks>
public sealed class LocalEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    /// <summary>The <c>AdditionalProperties</c> key naming a prompt of config_sentence_transformers.json.</summary>
    public const string PromptNameProperty = "prompt_name";

    /// <summary>The <c>AdditionalProperties</c> key carrying a literal prompt.</summary>
    public const string PromptProperty = "prompt";

    private readonly CausalLanguageModel model;
    private readonly ExclusiveModelAccess access = new(nameof(LocalEmbeddingGenerator));
    private readonly bool ownsModel;

    /// <summary>Wraps an already-loaded model (the caller keeps ownership) and its embedder settings.</summary>
    public LocalEmbeddingGenerator(CausalLanguageModel model, HfTokenizer tokenizer, SentenceTransformerConfig? config = null, string modelId = "local",
        IPeftAdapter? adapter = null)
        : this(new TextEmbedder(model, tokenizer, config), model, adapter, modelId, ownsModel: false)
    {
    }

    private LocalEmbeddingGenerator(TextEmbedder embedder, CausalLanguageModel model, IPeftAdapter? adapter, string modelId, bool ownsModel)
    {
        Embedder = embedder;
        this.model = model;
        this.ownsModel = ownsModel;
        Adapter = adapter;
        Metadata = new EmbeddingGeneratorMetadata("sharptune", providerUri: null, defaultModelId: modelId, defaultModelDimensions: embedder.Dimensions);
    }

    /// <summary>
    /// Loads the model in <paramref name="modelDir"/> (a Hugging Face-layout folder, or a repo id already in the local hub
    /// cache) with its sentence-transformers settings and, when given, the PEFT adapter in <paramref name="adapterDir"/>.
    /// </summary>
    /// <param name="dtype">Compute dtype, "f32" or "bf16"; null keeps the checkpoint's.</param>
    /// <param name="modelId">The id reported in metadata and results; null = the adapter folder's name, else the model folder's.</param>
    public static LocalEmbeddingGenerator Load(string modelDir, string? adapterDir = null, string? dtype = null, string? modelId = null)
    {
        var loaded = LoadedModel.Load(modelDir, adapterDir, dtype is null ? null : ModelFactory.ParseDtype(dtype));
        try
        {
            var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, adapterDir);
            var id = modelId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(adapterDir is null ? loaded.ModelDirectory : Path.GetFullPath(adapterDir)));
            return new LocalEmbeddingGenerator(embedder, loaded.Model, loaded.Adapter, id, ownsModel: true);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    /// <summary>Provider "sharptune", the model id and the full embedding width.</summary>
    public EmbeddingGeneratorMetadata Metadata { get; }

    /// <summary>The embedder (pooling, normalisation, prompts, batch size, padding side).</summary>
    public TextEmbedder Embedder { get; }

    /// <summary>The adapter applied to the model, if any.</summary>
    public IPeftAdapter? Adapter { get; }

    /// <inheritdoc />
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        ObjectDisposedException.ThrowIf(access.IsDisposed, this);
        var texts = values.ToArray();
        var request = new EmbeddingRequestOptions
        {
            Dimensions = options?.Dimensions,
            PromptName = Property(options, PromptNameProperty),
            Prompt = Property(options, PromptProperty),
        };
        EmbeddingOutput output;
        using (await EnterAsync(cancellationToken).ConfigureAwait(false))
        {
            // The forward pass is CPU-bound and synchronous: keep it off the caller's thread.
            output = await Task.Run(() => Embedder.Embed(texts, request, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        var created = DateTimeOffset.UtcNow;
        var modelId = options?.ModelId ?? Metadata.DefaultModelId;
        return new GeneratedEmbeddings<Embedding<float>>(output.Vectors.Select(v => new Embedding<float>(v) { ModelId = modelId, CreatedAt = created }))
        {
            Usage = new UsageDetails { InputTokenCount = output.TotalTokens, TotalTokenCount = output.TotalTokens },
        };
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType == typeof(TextEmbedder)) return Embedder;
        if (serviceType == typeof(CausalLanguageModel)) return model;
        if (Adapter is not null && serviceType.IsInstanceOfType(Adapter)) return Adapter;
        return null;
    }

    /// <summary>Waits for the model to be free and holds it until the result is disposed.</summary>
    /// <exception cref="ObjectDisposedException">This generator was disposed before or while the caller waited.</exception>
    internal Task<IDisposable> EnterAsync(CancellationToken cancellationToken) => access.EnterAsync(cancellationToken);

    /// <summary>
    /// Releases the model when this generator loaded it: callers still waiting for it get an
    /// <see cref="ObjectDisposedException"/>; a running call finishes first.
    /// </summary>
    public void Dispose() => access.Dispose(ownsModel ? model.Dispose : null);

    private static string? Property(EmbeddingGenerationOptions? options, string key) =>
        options?.AdditionalProperties?.TryGetValue(key, out var value) == true
            ? value as string ?? throw new ArgumentException($"EmbeddingGenerationOptions.AdditionalProperties[\"{key}\"] must be a string")
            : null;
}
