using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// GKD's loss for one micro-batch, as TRL's <c>GKDTrainer.compute_loss</c> (huggingface/trl@f2cd577): the student and
/// the frozen teacher read the same tokens, and the generalized JSD (<see cref="GeneralizedJsdLoss"/>, temperature 1)
/// between their next-token distributions is summed over the supervised positions; the trainer divides by the step's
/// supervised tokens (TRL's num_items_in_batch). Only supervised positions reach the heads, a chunk of rows at a time,
/// so the fp32 (tokens × vocabulary) matrices never exist whole; in training each chunk is back-propagated into the
/// student's head at once and the hidden states' gradient, gathered over the chunks, is sent through the body once.
/// </summary>
/// <param name="chunkRows">Supervised positions per chunk; null = <see cref="ChunkRowsFor"/> the vocabulary.</param>
internal sealed class GkdObjective(CausalLanguageModel teacher, double beta, long? chunkRows = null) : IBackwardObjective
{
    /// <summary>The metric holding the share of a step's micro-batches the student answered itself.</summary>
    public const string OnPolicyMetric = "on_policy";

    public string AccuracyMetric => "token_accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var (student, teacherRows, targets) = SupervisedRows(model, batch);
        var loss = zeros(1, ScalarType.Float32, student.device).sum();
        var hits = zeros(1, ScalarType.Int64, student.device).sum();
        foreach (var (start, length) in Chunks(model, targets.shape[0]))
        {
            // Each chunk's (rows × V) logits and divergence terms are freed before the next: only the running sums leave.
            using var scope = NewDisposeScope();
            var logits = model.ComputeLogits(student.narrow(0, start, length));
            (loss, hits) = (Accumulate(loss, ChunkLoss(logits, teacherRows.narrow(0, start, length))),
                Accumulate(hits, Hits(logits, targets.narrow(0, start, length))));
        }
        return Output(loss, hits, batch);
    }

    /// <summary><paramref name="sum"/> + <paramref name="part"/> in the scope outside the chunk's; the old sum is freed.</summary>
    private static Tensor Accumulate(Tensor sum, Tensor part)
    {
        var next = (sum + part).MoveToOuterDisposeScope();
        sum.Dispose();
        return next;
    }

    public ObjectiveOutput ComputeWithBackward(CausalLanguageModel model, TrainingBatch batch, double lossScale)
    {
        var (student, teacherRows, targets) = SupervisedRows(model, batch);
        var leaf = student.detach().requires_grad_(true);
        // The sums stay on the device (read once by the trainer), so no chunk waits for a device-to-host copy.
        var loss = zeros(1, ScalarType.Float32, student.device).sum();
        var hits = zeros(1, ScalarType.Int64, student.device).sum();
        foreach (var (start, length) in Chunks(model, targets.shape[0]))
        {
            using var scope = NewDisposeScope();
            var logits = model.ComputeLogits(leaf.narrow(0, start, length));
            var part = ChunkLoss(logits, teacherRows.narrow(0, start, length));
            (loss, hits) = (Accumulate(loss, part.detach()), Accumulate(hits, Hits(logits, targets.narrow(0, start, length))));
            CustomBackward.Backward(part * lossScale);   // into leaf.grad, and into the head's weights when they train
        }
        if (leaf.grad is { } gradient && student.requires_grad)
            CustomBackward.Backward((student * gradient.detach()).sum());   // the body's backward, once for all chunks
        return Output(loss, hits, batch);
    }

    /// <summary>The student's (with its graph) and the teacher's final hidden states at the supervised positions, and their targets.</summary>
    private (Tensor Student, Tensor Teacher, Tensor Targets) SupervisedRows(CausalLanguageModel model, TrainingBatch batch)
    {
        var flatTargets = batch.Targets.reshape(-1);
        var rows = flatTargets.ne(BatchCollator.IgnoreIndex).nonzero().squeeze(1);                     // (n)
        var student = Hidden(model, batch).index_select(0, rows);                                       // (n, C)
        Tensor teacherRows;
        using (no_grad()) teacherRows = Hidden(teacher, batch).index_select(0, rows);                  // (n, C_teacher)
        return (student, teacherRows, flatTargets.index_select(0, rows));
    }

    /// <summary>Final hidden states of the real tokens, flattened to (B·T, C).</summary>
    private static Tensor Hidden(CausalLanguageModel model, TrainingBatch batch)
    {
        var hidden = model.DecodeHidden(model.EmbedTokens(batch.InputIds), batch.Context);             // (B, T, C)
        var length = batch.Targets.shape[1];
        if (hidden.shape[1] != length) hidden = hidden.narrow(1, hidden.shape[1] - length, length);
        return hidden.reshape(-1, hidden.shape[2]);
    }

    private Tensor ChunkLoss(Tensor studentLogits, Tensor teacherHidden)
    {
        Tensor teacherLogits;
        using (no_grad()) teacherLogits = teacher.ComputeLogits(teacherHidden);
        return GeneralizedJsdLoss.PerRow(studentLogits, teacherLogits, beta).sum();
    }

    private static Tensor Hits(Tensor logits, Tensor targets)
    {
        using var noGrad = no_grad();
        return logits.argmax(-1).eq(targets).sum();
    }

    /// <summary>Budget for one fp32 (rows × V) tensor of a chunk.</summary>
    internal const long ChunkBytes = 64L << 20;

    /// <summary>
    /// Rows per chunk: as many as keep one fp32 (rows × V) tensor within <see cref="ChunkBytes"/> (110 rows for a 152k
    /// vocabulary, 524 for 32k), and at least 16. A chunk holds several such tensors at once (both heads' logits, their
    /// log-softmaxes, the mixture and the KL terms, and the backward's gradients), so the loss's peak stays at a few hundred
    /// MiB whatever the batch. Each chunk reads both whole (V × C) heads again, so chunks much smaller than this — the SFT
    /// head's 7 MiB jemalloc size class, 16 rows for V ≥ 115k — would make the loss a matter of re-reading the heads;
    /// GKD's per-row work is several times SFT's, so its chunks are larger.
    /// </summary>
    internal static long ChunkRowsFor(int vocabSize) => Math.Max(16, ChunkBytes / ((long)Math.Max(1, vocabSize) * sizeof(float)));

    private IEnumerable<(long Start, long Length)> Chunks(CausalLanguageModel model, long rows)
    {
        var size = chunkRows ?? ChunkRowsFor(model.Config.VocabSize);
        for (long start = 0; start < rows; start += size) yield return (start, Math.Min(size, rows - start));
    }

    private static ObjectiveOutput Output(Tensor loss, Tensor hits, TrainingBatch batch)
    {
        if (batch is not GkdBatch { Source: { } source }) return new ObjectiveOutput(loss, hits);
        var device = loss.device;
        return new ObjectiveOutput(loss, hits,
            new Dictionary<string, Tensor> { [OnPolicyMetric] = tensor(source == GkdCompletionSource.Student ? 1.0 : 0.0, device: device) })
        {
            MetricCounts = new Dictionary<string, Tensor> { [OnPolicyMetric] = tensor(1.0, device: device) },
        };
    }
}
