using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Runtime;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// sentence-transformers' CachedMultipleNegativesRankingLoss, GradCache (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f,
/// sentence_transformers/losses/CachedMultipleNegativesRankingLoss.py, <c>forward</c>, <c>calculate_loss_and_cache_gradients</c>
/// and <c>_backward_hook</c>): the loss and gradients of <see cref="EmbeddingObjective"/> on the whole micro-batch, with
/// only <paramref name="miniBatchSize"/> texts' activations alive at once. (1) Every text is embedded without gradients,
/// <paramref name="miniBatchSize"/> texts per forward, each piece under a seed of its own; (2) MNRL (or MatryoshkaLoss
/// around it) on all the embeddings together, differentiated with respect to the embeddings alone; (3) each piece embedded
/// again with gradients under the same seed — the same dropout masks — and back-propagated with the cached gradient of
/// its embeddings (the surrogate Σ e·∂L/∂e). sentence-transformers saves and restores the CPU and CUDA generators' states
/// around each piece (<c>RandContext</c>); TorchSharp can read back only the CPU generator's state, so each piece is seeded
/// instead, the CPU generator and every GPU's (<see cref="DeviceRandom.SeedAll"/>: TorchSharp's <c>manual_seed</c> alone
/// seeds only the CPU's), from a base drawn from the step's own seeded generator. By the chain rule the parameters' gradients are those of the
/// loss on the whole micro-batch. Pieces run over the micro-batch's texts in order (anchors, positives, negatives), not
/// column by column; each text's embedding does not depend on its neighbours, so the grouping changes nothing but memory.
/// The score matrix is taken whole rather than in anchor pieces (it is P × N floats, small beside the activations).
/// </summary>
internal sealed class CachedEmbeddingObjective(SentenceTransformerConfig pooling, double scale, int miniBatchSize, MatryoshkaSettings? matryoshka = null)
    : IBackwardObjective
{
    /// <summary>sentence-transformers' default mini_batch_size.</summary>
    public const int DefaultMiniBatchSize = 32;

    public string AccuracyMetric => "accuracy";

    /// <summary>Evaluation: the loss from the pieces' embeddings, without gradients (sentence-transformers' <c>calculate_loss</c>).</summary>
    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var rows = Rows(batch);
        using var noGrad = no_grad();
        var embeddings = cat(Pieces(rows).Select(piece => Embed(model, rows, piece)).ToArray());   // (B, D)
        return EmbeddingObjective.Loss(embeddings, rows.Anchors, scale, matryoshka);
    }

    public ObjectiveOutput ComputeWithBackward(CausalLanguageModel model, TrainingBatch batch, double lossScale)
    {
        var rows = Rows(batch);
        var pieces = Pieces(rows).ToArray();
        // (1) Embeddings without a graph, each piece under its own seed (the role of sentence-transformers' RandContext).
        // The first pass runs the operations the second will, so the cached embeddings are the ones the gradients flow from.
        var firstSeed = FirstPieceSeed();
        var embedded = new Tensor[pieces.Length];
        using (no_grad())
        using (InferenceShortcuts.DisableInexact())
        {
            for (var i = 0; i < pieces.Length; i++)
            {
                DeviceRandom.SeedAll(firstSeed + i);
                embedded[i] = Embed(model, rows, pieces[i]);
            }
        }
        // (2) The loss on every embedding at once, and its gradient with respect to the embeddings alone.
        var leaf = cat(embedded).detach().requires_grad_(true);   // (B, D)
        var output = EmbeddingObjective.Loss(leaf, rows.Anchors, scale, matryoshka);
        CustomBackward.Backward(output.LossSum * lossScale);
        var cached = leaf.grad!.detach();
        // (3) Each piece again with gradients under its seed; its embeddings' cached gradient flows on into the model.
        for (var i = 0; i < pieces.Length; i++)
        {
            using var scope = NewDisposeScope();
            DeviceRandom.SeedAll(firstSeed + i);
            var embeddings = Embed(model, rows, pieces[i]);   // (n, D)
            CustomBackward.Backward((embeddings * cached.narrow(0, pieces[i].Start, pieces[i].Count)).sum());
        }
        return output with { LossSum = output.LossSum.detach() };
    }

    /// <summary>
    /// The first piece's seed (piece i takes this + i), drawn from the CPU generator: the trainer seeds it for each step,
    /// so the masks are a function of the step, as everywhere in training, and a resumed run draws the same ones.
    /// </summary>
    internal static long FirstPieceSeed() => DeviceRandom.DrawSeed();

    private static EmbeddingBatch Rows(TrainingBatch batch) =>
        batch as EmbeddingBatch ?? throw new ArgumentException("the cached MNRL objective needs embedding batches", nameof(batch));

    private IEnumerable<(int Start, int Count)> Pieces(EmbeddingBatch rows)
    {
        var total = (int)rows.InputIds.shape[0];
        for (var start = 0; start < total; start += miniBatchSize) yield return (start, Math.Min(miniBatchSize, total - start));
    }

    /// <summary>(n, D): the piece's texts embedded in one forward, cut to its own longest text (the rest is right padding).</summary>
    private Tensor Embed(CausalLanguageModel model, EmbeddingBatch rows, (int Start, int Count) piece)
    {
        using var scope = NewDisposeScope();
        var spans = rows.Rows.Skip(piece.Start).Take(piece.Count).ToArray();
        var length = spans.Max(s => s.Start + s.Length);
        var ids = rows.InputIds.narrow(0, piece.Start, piece.Count).narrow(1, 0, length);   // (n, T')
        var context = ForwardContext.Causal(piece.Count, length, ids.device);
        return TextEmbedder.Encode(model, ids, context, spans, pooling).MoveToOuterDisposeScope();
    }
}
