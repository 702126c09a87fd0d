using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training;

/// <summary>Next-token cross-entropy, summed over supervised tokens (the caller divides by the step's token count).</summary>
public static class CausalLmLoss
{
    /// <summary>
    /// Sum of −log p(target) over supervised positions and the number of correctly predicted ones. Logits are made
    /// and reduced in sequence chunks, so the fp32 [tokens × vocab] matrix is never whole in memory at once.
    /// </summary>
    public static (Tensor LossSum, Tensor Correct) Compute(CausalLanguageModel model, TrainingBatch batch, Tensor? inputsEmbeds = null,
        int chunkTokens = 2048)
    {
        var hiddenStates = Hidden(model, batch, inputsEmbeds);
        if (is_grad_enabled() && hiddenStates.requires_grad && !model.HeadIsTrainable)
            return ChunkedHeadBackward(model, hiddenStates, batch.Targets.reshape(-1),
                FrozenHeadChunkTokensFor(model.Config.VocabSize, (int)model.EmbeddingWeight.ElementSize));
        return Plain(model, hiddenStates, batch.Targets.reshape(-1), chunkTokens);
    }

    /// <summary>
    /// Tokens per chunk when the head's backward runs chunk by chunk: as many as keep one chunk's logits, at
    /// <paramref name="bytesPerLogit"/> (the head's dtype), within 7 MiB — 114 tokens for a 32k vocabulary in bf16, 57 in
    /// fp32 — between 16 and 256. 7 MiB is jemalloc's largest size class below its 8 MiB oversize threshold: a larger
    /// block comes from the separate arena jemalloc keeps for oversize requests, whose pages no other tensor of the step
    /// reuses, so the chunks' logits would add resident pages of their own at the loss (measured on M, LoRA with 8 MiB
    /// chunks: 11 MB more at the peak, on an NF4 base and on a bf16 one alike; docs/benchmarks.md).
    /// </summary>
    public static int FrozenHeadChunkTokensFor(int vocabSize, int bytesPerLogit) =>
        (int)Math.Clamp(LargestOrdinaryBlockBytes / ((long)Math.Max(1, vocabSize) * Math.Max(1, bytesPerLogit)), 16, 256);

    /// <summary>jemalloc's largest size class below its default oversize threshold (opt.oversize_threshold, 8 MiB).</summary>
    private const long LargestOrdinaryBlockBytes = 7L << 20;

    /// <summary>
    /// Rows of a chunk whose logits are converted to fp32 at a time, at least: about 1M values (4 MiB) — 32 rows for a
    /// 32k vocabulary, 4 for Gemma's 262k — and at least 2. A chunk is split into blocks of equal size, each under twice
    /// this; with the chunks of <see cref="FrozenHeadChunkTokensFor"/> about 1.2 times it (38 rows, 4.9 MB, on a 32k
    /// vocabulary in bf16), within the 7 MiB that keeps a block out of jemalloc's separate arena.
    /// </summary>
    public static int FrozenHeadBlockRowsFor(int vocabSize) => Math.Max(2, (1 << 20) / Math.Max(1, vocabSize));

    /// <summary>Final hidden states of the real tokens, flattened to (tokens, C).</summary>
    private static Tensor Hidden(CausalLanguageModel model, TrainingBatch batch, Tensor? inputsEmbeds)
    {
        var hidden = model.DecodeHidden(inputsEmbeds ?? model.EmbedTokens(batch.InputIds), batch.Context);   // (B, T, C)
        var targets = batch.Targets;
        if (hidden.shape[1] != targets.shape[1])   // defensive: DecodeHidden already returns only the real tokens' states
            hidden = hidden.narrow(1, hidden.shape[1] - targets.shape[1], targets.shape[1]);
        return hidden.reshape(-1, hidden.shape[2]);
    }

    private static (Tensor LossSum, Tensor Correct) Plain(CausalLanguageModel model, Tensor flatHidden, Tensor flatTargets, int chunkTokens)
    {
        var total = (long)flatTargets.shape[0];
        Tensor? loss = null;
        Tensor? correct = null;
        for (long start = 0; start < total; start += chunkTokens)
        {
            var n = Math.Min(chunkTokens, total - start);
            var logits = model.ComputeLogits(flatHidden.narrow(0, start, n)).to(ScalarType.Float32);   // (n, V)
            var chunkTargets = flatTargets.narrow(0, start, n);
            var part = F.cross_entropy(logits, chunkTargets, ignore_index: BatchCollator.IgnoreIndex, reduction: nn.Reduction.Sum);
            using (no_grad())
            {
                var hits = logits.argmax(-1).eq(chunkTargets).logical_and(chunkTargets.ne(BatchCollator.IgnoreIndex)).sum();
                correct = correct is null ? hits : correct + hits;
            }
            loss = loss is null ? part : loss + part;
        }
        return (loss!, correct!);
    }

    /// <summary>
    /// With a frozen head (any adapter method), the head and loss are differentiated chunk by chunk right here, so only
    /// one chunk's logits ever exist (as Liger's fused linear cross-entropy does). The loss's gradient with respect to
    /// the logits is written by hand — softmax − one-hot for supervised rows, 0 for ignored ones, the exact derivative
    /// of the summed cross-entropy — instead of running autograd's log-softmax, its gradient and the cross-entropy's.
    /// The fp32 work runs a block of rows at a time (<see cref="FrozenHeadBlockRowsFor"/>, about 4 MiB), each row exactly
    /// as a whole chunk would compute it, and its gradient is written over the block's logits, which nothing reads again.
    /// So a chunk holds its logits and one small fp32 block: 18 MB on a 32k vocabulary (26 MB with a separate gradient)
    /// instead of the 42 MB of a whole-chunk fp32 copy and its exponentials, and no block of 8 MiB or more, which
    /// jemalloc would serve from a separate arena whose pages the training step's other tensors never reuse. The returned
    /// loss has the summed value and, through a surrogate term, exactly the gradient the whole-sequence loss would send
    /// into the hidden states when the caller back-propagates it.
    /// </summary>
    internal static (Tensor LossSum, Tensor Correct) ChunkedHeadBackward(CausalLanguageModel model, Tensor flatHidden, Tensor flatTargets,
        int chunkTokens, int? blockRows = null)
    {
        var leaf = flatHidden.detach().requires_grad_(true);
        var total = (long)flatTargets.shape[0];
        var rowsPerBlock = blockRows ?? FrozenHeadBlockRowsFor(model.Config.VocabSize);
        double lossValue = 0;
        long hits = 0;
        for (long start = 0; start < total; start += chunkTokens)
        {
            using var scope = NewDisposeScope();
            var n = Math.Min(chunkTokens, total - start);
            var logits = model.ComputeLogits(leaf.narrow(0, start, n));                                   // (n, V)
            // The logits' own storage, each block overwritten by its gradient once read. The head's backward never reads its
            // output (a soft cap's tanh keeps its own, not the returned product); one that did would fail autograd's in-place check.
            var gradLogits = logits.detach();                                                             // (n, V)
            using (no_grad())
            {
                var chunkTargets = flatTargets.narrow(0, start, n);
                var rowLosses = empty(n, ScalarType.Float32, logits.device);                              // (n)
                // Blocks of equal size (±1), so none is a lone row unless the chunk is: libtorch splits a single row's
                // sum between threads, and several rows' sums by rows, so a lone row could round differently.
                var blocks = Math.Max(1, n / rowsPerBlock);
                for (long index = 0, row = 0, rows; index < blocks; index++, row += rows)
                {
                    using var blockScope = NewDisposeScope();
                    rows = n / blocks + (index < n % blocks ? 1 : 0);
                    var targets = chunkTargets.narrow(0, row, rows);
                    var supervised = targets.ne(BatchCollator.IgnoreIndex);                               // (r)
                    var safeTargets = targets.masked_fill(supervised.logical_not(), 0).unsqueeze(1);     // (r, 1)
                    // fp32 logits are worked on in place (their rows become the gradient anyway); others through an fp32 copy.
                    var block = gradLogits.narrow(0, row, rows);
                    var values = block.dtype == ScalarType.Float32 ? block : block.to(ScalarType.Float32);   // (r, V)
                    var logSumExp = values.logsumexp(1, keepdim: true);                                   // (r, 1)
                    var targetLogit = values.gather(1, safeTargets);                                      // (r, 1)
                    rowLosses.narrow(0, row, rows).copy_((logSumExp - targetLogit).squeeze(1).masked_fill(supervised.logical_not(), 0));
                    hits += values.argmax(-1).eq(targets).logical_and(supervised).sum().item<long>();
                    values.sub_(logSumExp).exp_();                                                        // softmax
                    values.scatter_add_(1, safeTargets, ones_like(targetLogit).neg_());                   // − one-hot
                    values.mul_(supervised.unsqueeze(1).to(ScalarType.Float32));                          // ignored rows: 0
                    if (!ReferenceEquals(values, block)) block.copy_(values);
                }
                lossValue += rowLosses.sum().to(ScalarType.Float64).item<double>();
            }
            logits.backward([gradLogits]);                                                                // into leaf.grad
        }
        var gradient = leaf.grad!.detach();
        var surrogate = (flatHidden * gradient).sum();                                                    // ∂/∂hidden = gradient
        var loss = surrogate - surrogate.detach() + tensor(lossValue, dtype: ScalarType.Float32, device: flatHidden.device);
        return (loss, tensor(hits, device: flatHidden.device));
    }
}
