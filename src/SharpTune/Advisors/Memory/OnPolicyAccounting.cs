namespace SharpTune.Advisors.Memory;

/// <summary>
/// The phases of a GRPO, RLOO or online DPO step, counted from what <c>GrpoTrainer</c> and <c>GrpoRolloutMaker</c> hold.
/// None of them overlaps another, and no gradient exists before the update (<c>AdamWOptimizer.ZeroGrad</c> drops them),
/// so the step's peak is the largest phase above the weights and the optimizer state:
/// <list type="bullet">
/// <item>Rollout (<c>TokenGenerator.Generate</c>, once per generation batch): the generation batch's
/// micro_batch × grad_accum completions (TRL's generation_batch_size with steps_per_generation = gradient_accumulation_steps,
/// trl/trainer/grpo_config.py @ f2cd577) sampled together: prompts × num_generations rows, left-padded. Its
/// <c>KvCache</c> is allocated whole, keys and values for every layer, row and position of prompt + max completion, in
/// the weights' dtype; the prefill runs every prompt position at once without autograd (one layer's widest tensors,
/// as the inference estimate counts them); each step's last-position logits and the sampler's fp32 copies of them.</item>
/// <item>Scoring passes (<c>GrpoRolloutMaker.WithLogProbs</c>), micro-batch by micro-batch, without gradients: the
/// reference's log-probs when a reference is needed (GRPO β ≠ 0, RLOO β ≠ 0, online DPO always; adapter disabled, or the
/// frozen copy <see cref="ObjectiveAccounting.ReferenceWeightBytes"/> counts) and the sampling policy's with μ &gt; 1.
/// Each holds one layer's widest tensors and one <c>TokenLogProbs</c> chunk: its logits, their fp32 copy and the
/// cross-entropy's log-softmax. Only per-token floats leave it (kept on the CPU as arrays: negligible).</item>
/// <item>Update (<c>GrpoTrainer.Optimise</c>, <c>OnlineDpoUpdate.Optimise</c>): per micro-batch the policy forward over
/// prompt + completion rows through <c>TokenLogProbs</c>, which keeps each token's fp32 log-softmax (the paired objectives'
/// accounting, over micro_batch rows of the whole row length: every completion counted at its maximum length, an
/// upper bound); GRPO and RLOO also take each chunk's entropy without gradient, a transient of the chunk's logits, their
/// fp32 copy and three fp32 (rows × V) tensors (log-softmax, its exponential, their product) beside the held log-softmax.
/// With grad_accum &gt; 1 the gradients of the earlier micro-batches exist during the later ones' forwards.</item>
/// </list>
/// A model-based reward (<c>--reward reward-model</c>) loads a second model for the run; the estimate does not read its
/// config and says so in its note.
/// </summary>
internal static class OnPolicyAccounting
{
    /// <summary>Completions sampled at once: micro_batch × grad_accum.</summary>
    public static long GenerationRows(EstimateSettings s) => (long)s.MicroBatchSize * s.GradientAccumulation;

    /// <summary>Bytes of the rollout's KV cache: K and V, every layer, every generated row at prompt + max completion positions.</summary>
    public static double KvCacheBytes(ModelLayout layout, EstimateSettings s)
    {
        var c = layout.Config;
        return 2.0 * c.NumLayers * c.NumKeyValueHeads * c.HeadDim * GenerationRows(s) * s.RowLength * s.ComputeBytes;
    }

    /// <summary>
    /// The rollout's bytes above the weights: the KV cache, the prefill's working tensors over every prompt position, and
    /// one decode step's logits of every row (compute dtype) with TokenSampler's fp32 copies at top_p 1 (TokenSampler.Process:
    /// the fp32 cast below fp32, the quotient by the temperature, then the softmax Draw samples from; top_p &lt; 1 would add
    /// a sort and a cumulative sum, which the estimate does not take). On a GPU only the logits and their fp32 cast stay
    /// on the device (Process copies them to the CPU); the rest is host memory, counted here as on a CPU run.
    /// </summary>
    public static double RolloutBytes(ModelLayout layout, EstimateSettings s)
    {
        var rows = GenerationRows(s);
        var prefill = ActivationAccounting.InferenceWorkingBytesPerToken(layout, s) * rows * s.SequenceLength;
        var sampling = rows * (double)layout.Config.VocabSize * (s.ComputeBytes + (s.ComputeBytes == 4 ? 0 : 4) + 2 * 4);
        return KvCacheBytes(layout, s) + prefill + sampling;
    }

    /// <summary>
    /// A scoring pass's bytes (the reference's, or the sampling policy's with μ &gt; 1), 0 when there is none: a
    /// micro-batch's no-grad forward over the whole row length, one layer's widest tensors at a time, and one
    /// <c>TokenLogProbs</c> chunk's logits (compute dtype), their fp32 copy and the log-softmax (fp32).
    /// </summary>
    public static double ScoringPassBytes(ModelLayout layout, EstimateSettings s)
    {
        var onPolicy = s.OnPolicySettings()!;
        var scored = onPolicy.NeedsReference || onPolicy.NumIterations > 1;
        if (!scored) return 0;
        var tokens = (long)s.MicroBatchSize * s.RowLength;
        var chunk = Math.Min(tokens, Training.Objectives.TokenLogProbs.DefaultChunkTokens);
        return ActivationAccounting.InferenceWorkingBytesPerToken(layout, s) * tokens + chunk * ActivationAccounting.LogitsBytesPerToken(layout, s);
    }

    /// <summary>
    /// GRPO's and RLOO's entropy in the update's forward (<c>TokenLogProbs</c> with entropy): the last chunk's logits,
    /// their fp32 copy, and the no-grad log-softmax, exponential and product (fp32), while all activations exist; 0 for
    /// online DPO, which takes no entropy.
    /// </summary>
    public static double EntropyChunkBytes(ModelLayout layout, EstimateSettings s, long tokens)
    {
        if (s.ObjectiveName == "online-dpo") return 0;
        double b = s.ComputeBytes, cast = s.ComputeBytes == 4 ? 0 : 4;
        return Math.Min(tokens, Training.Objectives.TokenLogProbs.DefaultChunkTokens) * (double)layout.Config.VocabSize * (b + cast + 3 * 4);
    }

    /// <summary>The estimate's note: the generation batch, its KV cache, the reference, the phase the peak falls in.</summary>
    public static string Note(EstimateSettings s, ModelLayout layout)
    {
        var onPolicy = s.OnPolicySettings()!;
        var rows = GenerationRows(s);
        var reference = !onPolicy.NeedsReference ? "no reference (β = 0)"
            : s.IsFull ? "reference log-probs from a frozen copy of the base (its weights counted)"
            : "reference log-probs from the base with the adapter disabled (no extra weights)";
        return $"Objective {s.ObjectiveName}: a generation batch of {rows} completions ({rows / onPolicy.NumGenerations} prompts × {onPolicy.NumGenerations}), " +
               $"each of a {s.SequenceLength}-token prompt and up to {onPolicy.Loss.MaxCompletionLength} completion tokens, sampled at once into a " +
               $"{KvCacheBytes(layout, s) / (1L << 30):F3} GiB KV cache (rollout phase {RolloutBytes(layout, s) / (1L << 30):F3} GiB above the weights); " +
               $"{reference}; the update trains {s.MicroBatchSize} rows of {s.RowLength} tokens per micro-batch (every completion counted at its maximum). " +
               "The peak is the largest of the rollout, the scoring passes and the update. A reward-model reward's weights are not counted. " +
               "The time counts the rollout's FLOPs only: a lower bound, since decoding one token at a time is bound by memory bandwidth.";
    }
}
