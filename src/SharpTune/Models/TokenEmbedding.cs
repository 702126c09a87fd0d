using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A lookup table of embeddings (transformers' <c>nn.Embedding</c> without padding_idx, max_norm or sparse gradients,
/// which none of our architectures use): ids (…) → rows of <see cref="weight"/> (…, dim). TorchSharp's own
/// <c>nn.Embedding</c> is a native module whose constructor allocates and initialises a CPU weight even when the model
/// is built on the meta device (≈100 MB for a 32k × 768 vocabulary), and keeps it; this one allocates its weight with the
/// default device and dtype like every other parameter, so a quantized load never holds a second embedding table.
/// </summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    // (num embeddings, dim); public and named as in transformers: the state-dict key. A field, not a property, so
    // Module.to(dtype) sets it when it replaces the parameter; not readonly, so a resized vocabulary can replace it.
    public Parameter weight;

    public TokenEmbedding(long numEmbeddings, long embeddingDim) : base("Embedding")
    {
        weight = new Parameter(empty(numEmbeddings, embeddingDim));
        if (weight.device_type != DeviceType.META)
            using (no_grad()) weight.normal_();   // nn.Embedding's own initialisation, N(0, 1)
        RegisterComponents();
    }

    /// <summary>Puts <paramref name="replacement"/> in the old weight's place (a resized vocabulary) and frees the old one.</summary>
    internal void ReplaceWeight(Parameter replacement, bool disposeOld = true)
    {
        var old = weight;
        weight = replacement;
        ConditionallyRegisterParameter(nameof(weight), replacement);
        if (disposeOld) old.Dispose();
    }

    public long NumEmbeddings => weight.size(0);
    public long EmbeddingDim => weight.size(1);

    /// <summary>
    /// Replaces some rows of the weight in every use (PEFT's trainable tokens: <c>weight.index_copy(0, indices, rows)</c>,
    /// whose gradient reaches only the replacement rows); null: the weight as it is.
    /// </summary>
    internal Func<Tensor, Tensor>? WeightOverride { get; set; }

    /// <summary>The weight as the forward uses it: a new tensor when <see cref="WeightOverride"/> is set, else <see cref="weight"/>.</summary>
    internal Tensor CurrentWeight() => WeightOverride?.Invoke(weight) ?? weight;

    /// <summary>
    /// Logits through an output head tied to this embedding: hidden (…, dim) · weightᵀ (+ bias) → (…, num embeddings),
    /// with the trainable tokens' rows when <see cref="WeightOverride"/> is set (they reach the tied head too).
    /// </summary>
    internal Tensor TiedLogits(Tensor hidden, Tensor? bias = null)
    {
        if (WeightOverride is null) return DenseMatVec.Linear(hidden, weight, bias);
        using var tied = CurrentWeight();   // a new tensor here, never the parameter itself
        return DenseMatVec.Linear(hidden, tied, bias);
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var rows = CurrentWeight().index_select(0, ids.reshape(-1));         // (n, dim)
        return rows.view([.. ids.Sizes(), EmbeddingDim]).MoveToOuterDisposeScope();
    }
}
