using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// transformers' <c>resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing=True)</c>
/// (huggingface/transformers@040ba146759afc625c77f49d04982bb54873995f src/transformers/modeling_utils.py,
/// <c>_get_resized_embeddings</c>, <c>_get_resized_lm_head</c>, <c>_init_added_embeddings_weights_with_mean</c>): the
/// input embedding and an untied output head grow to the new size, their old rows kept as they are and the new rows
/// drawn from a multivariate normal with the old rows' mean and 1e-9 × their covariance (Hewitt's vocabulary-expansion
/// advice: new tokens start near the average token, so they change the model's predictions little), or set to the mean
/// itself when that covariance is not positive definite. A tied head reads the embedding, so it follows. A head with a
/// bias over the vocabulary (Phi's lm_head) grows it too, its old entries kept: untied, the new entries are drawn as
/// <c>_init_added_lm_head_bias_with_mean</c> draws them, from a normal with the old entries' mean and 1e-9 × their
/// (unbiased) standard deviation; tied, transformers resizes only the embedding and <c>_tie_or_clone_weights</c> then
/// pads the bias with zeros, so the new entries are 0. The config's <c>vocab_size</c> becomes the new size.
/// </summary>
public static class EmbeddingResize
{
    /// <summary>transformers' scale of the old rows' covariance for the new rows' distribution.</summary>
    public const double CovarianceScale = 1e-9;

    /// <summary>
    /// Grows the vocabulary to <paramref name="numTokens"/> rows (rounded up to a multiple of
    /// <paramref name="padToMultipleOf"/> when given). As Axolotl resizes, a model that already has the rows is left as
    /// it is (Qwen's embeddings are padded past the tokenizer), so this never shrinks one.
    /// </summary>
    /// <param name="seed">Seeds the new rows' draw, so a run's seed gives the same rows.</param>
    /// <returns>The rows the embedding had before, and has now.</returns>
    /// <exception cref="NotSupportedException">The output head is quantized or wrapped by an adapter (resize before injecting one).</exception>
    public static (int Before, int After) Resize(CausalLanguageModel model, int numTokens, int? padToMultipleOf = null, long seed = 0)
    {
        var (before, after, replaced) = Grow(model, numTokens, padToMultipleOf, seed, undoable: false);
        replaced?.Dispose();
        return (before, after);
    }

    /// <summary>
    /// <see cref="Resize"/> that keeps what it replaced, so a caller whose next step fails (an adapter that does not
    /// load) can give the model back its vocabulary with <see cref="Replaced.Restore"/>; null when nothing grew.
    /// </summary>
    internal static Replaced? ResizeUndoable(CausalLanguageModel model, int numTokens, int? padToMultipleOf = null, long seed = 0) =>
        Grow(model, numTokens, padToMultipleOf, seed, undoable: true).Replaced;

    private static (int Before, int After, Replaced? Replaced) Grow(CausalLanguageModel model, int numTokens, int? padToMultipleOf, long seed, bool undoable)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numTokens, 1);
        if (padToMultipleOf is { } multiple)
        {
            if (multiple < 1) throw new ArgumentOutOfRangeException(nameof(padToMultipleOf), multiple, "pad_to_multiple_of must be at least 1");
            numTokens = (numTokens + multiple - 1) / multiple * multiple;   // transformers rounds new_num_tokens up the same way
        }
        var embedding = model.InputEmbedding;
        var before = (int)embedding.NumEmbeddings;
        if (numTokens <= before) return (before, before, null);

        var head = model.UntiedOutputHead;
        if (head is not null and not Linear)
            throw new NotSupportedException($"the output head is a {head.GetType().Name}: only a plain linear head can be resized " +
                                            "(resize before quantizing it or wrapping it in an adapter)");
        // Setting a Linear's weight disposes the old one, so an undoable resize keeps a copy of the head.
        var keptHead = undoable && head is Linear { weight: { } headWeight } ? headWeight.detach().clone().DetachFromDisposeScope() : null;
        var bias = model.OutputHeadBias;
        var keptBias = undoable && bias is not null ? bias.detach().clone().DetachFromDisposeScope() : null;
        var replaced = new Replaced(model, embedding.weight, keptHead, (head as Linear)?.weight?.requires_grad ?? false,
                                    keptBias, bias?.requires_grad ?? false, before);
        using var generator = new Generator((ulong)seed, embedding.weight.device);
        // The new parameters outlive any dispose scope the caller is in, as the model's own parameters do.
        var grown = new Parameter(GrowRows(embedding.weight, numTokens, generator), embedding.weight.requires_grad).DetachFromDisposeScope();
        embedding.ReplaceWeight((Parameter)grown, disposeOld: false);
        if (head is Linear linear)
        {
            // _get_resized_lm_head initialises the head's new rows with the same function, from the head's own rows.
            linear.weight = (Parameter)new Parameter(GrowRows(linear.weight!, numTokens, generator), linear.weight!.requires_grad).DetachFromDisposeScope();
            linear.out_features = numTokens;
        }
        if (bias is not null)
        {
            var grownBias = head is null ? PadWithZeros(bias, numTokens) : GrowBias(bias, numTokens, generator);
            model.ReplaceOutputHeadBias((Parameter)new Parameter(grownBias, bias.requires_grad).DetachFromDisposeScope());
        }
        model.SetVocabSize(numTokens);
        return (before, numTokens, replaced);
    }

    /// <summary>The embedding (and untied head) weights a resize replaced, and the row count they had.</summary>
    internal sealed class Replaced(CausalLanguageModel model, Parameter embedding, Tensor? head, bool headRequiresGrad,
                                   Tensor? bias, bool biasRequiresGrad, int rows) : IDisposable
    {
        private bool kept = true;

        /// <summary>Puts the old weights and vocabulary size back (the grown weights are disposed).</summary>
        public void Restore()
        {
            if (!kept) throw new InvalidOperationException("the replaced weights were already restored or disposed");
            // A head an adapter wraps now (the resize refused one) cannot take its weight and bias back: refused before
            // anything changes, so the model keeps one vocabulary size throughout.
            if ((head is not null || bias is not null) && model.UntiedOutputHead is { } wrapped and not Linear)
                throw new InvalidOperationException($"the output head is a {wrapped.GetType().Name} now: unload the adapter before undoing the resize");
            kept = false;
            model.InputEmbedding.ReplaceWeight(embedding);
            if (head is not null && model.UntiedOutputHead is Linear linear)
            {
                linear.weight = new Parameter(head, headRequiresGrad);   // disposes the grown one
                linear.out_features = rows;
            }
            if (bias is not null) model.ReplaceOutputHeadBias(new Parameter(bias, biasRequiresGrad));   // frees the grown one
            model.SetVocabSize(rows);
        }

        /// <summary>Frees the old weights (the resize stands).</summary>
        public void Dispose()
        {
            if (!kept) return;
            kept = false;
            embedding.Dispose();
            head?.Dispose();
            bias?.Dispose();
        }
    }

    /// <summary>
    /// An untied head's <paramref name="bias"/> (V) with entries appended up to <paramref name="rows"/>, drawn as
    /// <c>_init_added_lm_head_bias_with_mean</c> draws them: normal with the old entries' mean (in fp32) and 1e-9 × their
    /// standard deviation (torch.std's default, over V − 1), the same scale <see cref="CovarianceScale"/> gives the rows.
    /// </summary>
    internal static Tensor GrowBias(Tensor bias, int rows, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var old = bias.detach();
        var values = old.to(ScalarType.Float32);
        var mean = values.mean();
        var std = values.std(unbiased: true);
        var added = randn([rows - old.size(0)], dtype: ScalarType.Float32, device: old.device, generator: generator) * (CovarianceScale * std) + mean;
        return cat([old, added.to(old.dtype)], 0).MoveToOuterDisposeScope();
    }

    /// <summary>A tied head's <paramref name="bias"/> (V) padded with zeros up to <paramref name="rows"/>, as <c>_tie_or_clone_weights</c> pads it.</summary>
    internal static Tensor PadWithZeros(Tensor bias, int rows)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var old = bias.detach();
        return cat([old, zeros([rows - old.size(0)], dtype: old.dtype, device: old.device)], 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <paramref name="weight"/> (V, C) with rows appended up to <paramref name="rows"/>, drawn as
    /// <c>_init_added_embeddings_weights_with_mean</c> draws them: statistics in fp32, the covariance over V (not V − 1),
    /// positive-definiteness by a Cholesky factorisation (torch's <c>constraints.positive_definite</c>), a sample as
    /// <c>MultivariateNormal.sample</c> makes it (mean + L·z, z standard normal, L the Cholesky factor).
    /// </summary>
    internal static Tensor GrowRows(Tensor weight, int rows, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var old = weight.detach();
        var (oldRows, dim) = (old.size(0), old.size(1));
        var values = old.to(ScalarType.Float32);
        var mean = values.mean([0]);                                            // (C)
        var centered = values - mean;                                           // (V, C)
        var covariance = centered.t().matmul(centered) / oldRows;              // (C, C)
        var (factor, info) = linalg.cholesky_ex(covariance * CovarianceScale);
        var added = rows - oldRows;
        var isPositiveDefinite = info.item<int>() == 0;
        var newRows = isPositiveDefinite
            ? mean + randn([added, dim], dtype: ScalarType.Float32, device: old.device, generator: generator).matmul(factor.t())   // (added, C)
            : mean.unsqueeze(0).expand(added, dim);
        return cat([old, newRows.to(old.dtype)], 0).MoveToOuterDisposeScope();
    }
}
