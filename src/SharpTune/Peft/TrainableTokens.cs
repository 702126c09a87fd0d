using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// PEFT's trainable tokens as LoRA's <c>trainable_token_indices</c> uses them (huggingface/peft@1948110ce61086030772abf36aa9396c5c3e6739
/// src/peft/tuners/trainable_tokens/layer.py, <c>TrainableTokensLayer</c>): only the chosen rows of the token embedding
/// train, as a (n, C) parameter <c>trainable_tokens_delta</c> that starts as those rows and replaces them in every use
/// (<c>weight.index_copy(0, indices, delta)</c>; despite its name it holds the rows' values, not a difference), so the
/// frozen weight gets no gradient and every other row stays exactly as it was. A tied head reads the same replaced
/// weight, as PEFT's tied adapter does. Merging copies the rows into the weight.
/// </summary>
internal sealed class TrainableTokens : IDisposable
{
    /// <summary>The key suffix PEFT saves the rows under, after the embedding's module path.</summary>
    public const string SavedSuffix = "token_adapter.trainable_tokens_delta";

    private readonly TokenEmbedding embedding;
    private readonly long[] indices;
    private Tensor? indexTensor;
    private bool enabled = true;
    private Func<Tensor, Tensor>? installed;

    private TrainableTokens(TokenEmbedding embedding, string path, long[] indices)
    {
        this.embedding = embedding;
        this.indices = indices;
        Path = path;
    }

    /// <summary>The embedding's module path (<c>model.embed_tokens</c>).</summary>
    public string Path { get; }

    /// <summary>The trainable rows (n, C), fp32 as every trainable parameter here; null before <see cref="Inject"/>.</summary>
    public Parameter? Delta { get; private set; }

    /// <summary>Checks <paramref name="indices"/> against <paramref name="model"/>'s vocabulary.</summary>
    /// <exception cref="ArgumentException">An index is outside the embedding's rows, or one is given twice.</exception>
    public static TrainableTokens Select(CausalLanguageModel model, IReadOnlyList<int> indices)
    {
        var embedding = model.InputEmbedding;
        var rows = embedding.NumEmbeddings;
        foreach (var index in indices)
            if (index < 0 || index >= rows)
                throw new ArgumentException($"trainable_token_indices: token id {index} is outside the vocabulary of {rows} embedding rows " +
                                            "(add the tokens first, or resize the model's embeddings)");
        if (indices.Distinct().Count() != indices.Count)
            throw new ArgumentException($"trainable_token_indices: [{string.Join(", ", indices)}] names a token more than once");
        var path = model.EmbeddingParameterName[..^".weight".Length];
        return new TrainableTokens(embedding, path, indices.Select(i => (long)i).ToArray());
    }

    /// <summary>Starts the rows at their current values and routes the embedding (and a tied head) through them.</summary>
    public void Inject()
    {
        var weight = embedding.weight;
        indexTensor = tensor(indices, ScalarType.Int64, weight.device).DetachFromDisposeScope();
        using (no_grad())
            Delta = new Parameter(weight.detach().index_select(0, indexTensor).to(ScalarType.Float32).clone(), requires_grad: true);
        Delta.DetachFromDisposeScope();
        installed = Apply;
        embedding.WeightOverride = installed;
    }

    private Tensor Apply(Tensor weight) => enabled ? weight.index_copy(0, indexTensor!, Delta!.to(weight.dtype)) : weight.alias();

    public void SetEnabled(bool value) => enabled = value;

    /// <summary>Gives the embedding back: with <paramref name="merge"/> the trained rows written into its weight (PEFT's merge).</summary>
    public void Restore(bool merge)
    {
        if (installed is not null && ReferenceEquals(embedding.WeightOverride, installed)) embedding.WeightOverride = null;
        installed = null;
        if (merge && Delta is not null)
            using (no_grad())
                embedding.weight.index_copy_(0, indexTensor!, Delta.to(embedding.weight.dtype));
        Dispose();
    }

    public void Dispose()
    {
        if (installed is not null && ReferenceEquals(embedding.WeightOverride, installed)) embedding.WeightOverride = null;
        installed = null;
        Delta?.Dispose();
        indexTensor?.Dispose();
        Delta = null;
        indexTensor = null;
    }
}
