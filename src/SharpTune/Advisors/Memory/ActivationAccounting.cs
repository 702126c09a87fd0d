using SharpTune.Models;

namespace SharpTune.Advisors.Memory;

/// <summary>
/// Bytes a training step keeps for the backward pass, counted tensor by tensor from what our Llama implementation and
/// libtorch's autograd actually hold (in the spirit of Korthikanti et al. 2022, "Reducing Activation Recomputation in
/// Large Transformer Models", §4, adapted to this code):
/// <list type="bullet">
/// <item>Layer outputs, the embeddings and the final hidden state stay referenced by the step's dispose scope until the
/// step ends: (L + 2)·d·b per token.</item>
/// <item>RMSNorm computes in fp32: it keeps the fp32 input (a copy when b = 2), the normalised value and its output
/// (the next linear's input); Gemma's layers have two more (after attention and after the MLP).</item>
/// <item>A linear layer keeps its input whether or not its weight trains (measured: a frozen base with LoRA keeps as
/// much per layer as full fine-tuning); a LoRA layer adds A's output (r values) and, with dropout, the dropped copy of its
/// input and a byte mask; DoRA on a bf16 base also keeps an fp32 copy of the input.</item>
/// <item>Attention: rotary cos/sin (2·hd), rotated q, k and v after repeating KV heads (GQA), the SDPA output and its
/// log-sum-exp (4 bytes per head), and o_proj's input (the transposed output made contiguous).
/// libtorch's CPU SDPA for the causal, unmasked case is the flash kernel: no T×T score matrix is kept; soft-capped
/// attention (Gemma 2) runs eagerly and keeps its tanh, fp32 softmax and weights, heads·T·(2·b + 4) per token.</item>
/// <item>SwiGLU: gate and up outputs, silu(gate) and their product (4·ffn).</item>
/// <item>Loss, full fine-tuning: logits (b), their fp32 copy (b = 2) and the log-softmax (fp32) for every token are held
/// until the step ends (the 2048-token chunking bounds only the backward's transient: two fp32 gradients of one chunk).
/// With a frozen head the loss runs the head's backward per 256-token chunk, so only one chunk's worth exists.</item>
/// </list>
/// </summary>
public static class ActivationAccounting
{
    /// <summary>Bytes per token one decoder layer keeps for the backward pass (excluding its output).</summary>
    public static double LayerBytesPerToken(ModelLayout layout, EstimateSettings s, IReadOnlySet<string> loraTargets)
    {
        var c = layout.Config;
        double b = s.ComputeBytes, castCopy = s.ComputeBytes == 4 ? 0 : 4;
        double d = c.HiddenSize, attention = (double)c.NumHeads * c.HeadDim, kv = (double)c.NumKeyValueHeads * c.HeadDim;
        double ffn = c.IntermediateSize, heads = c.NumHeads, headDim = c.HeadDim;
        var kvForSdpa = c.NumHeads > c.NumKeyValueHeads ? attention : kv;    // repeated KV heads are materialised

        if (layout.LayerNormBlocks)
        {
            // GPT-2, GPT-NeoX, Phi-1/2 and StableLM: LayerNorm keeps input, mean and rstd; the fused q/k/v output holds q, k, v; GELU keeps its
            // input (and its tanh approximation's intermediates: counted as two more ffn-sized tensors). Not checked
            // against measurement.
            var norms = 4 * d * b;
            var attn = (3 * d + d + d) * b + 4 * heads;
            var mlp = 4 * ffn * b;
            return norms + attn + mlp + d * b + LoraBytes(layout, s, loraTargets);
        }

        var norm1 = castCopy * d + 2 * b * d;                                  // fp32 input copy, normalised value, output
        var norm2 = 4 * d + 2 * b * d;                                         // fp32 view of the mid residual (or its copy)
        var attn1 = b * (2 * headDim + attention + 2 * kvForSdpa + attention + attention) + 4 * heads;
        // Soft-capped scores (Gemma 2) run the eager path, not the flash kernel: for every head and key the tanh's
        // output and the attention weights (compute dtype) and the fp32 softmax are kept for the backward.
        if (c.AttnLogitSoftcapping is not null) attn1 += heads * (double)s.SequenceLength * (2 * b + 4);
        var mlp1 = MlpBytesPerToken(c, b, d);
        // Gemma 2 and 3's layers also norm the attention's and the MLP's outputs before adding them (post_attention_layernorm,
        // post_feedforward_layernorm): two more norms like the first. OLMo 2 and 3 have those two instead of the pre-norms, and
        // norms the whole projected queries and keys: counted as the same two more norms (its q/k norms are as wide as
        // the pre-norms it lacks, within the GQA share).
        var sandwichNorms = c.Architecture is "Gemma2ForCausalLM" or "Gemma3ForCausalLM" or "Olmo2ForCausalLM" or "Olmo3ForCausalLM" ? 2 * norm1 : 0;
        return norm1 + norm2 + sandwichNorms + attn1 + mlp1 + LoraBytes(layout, s, loraTargets) + ExpertLoraBytesPerToken(layout, s);
    }

    /// <summary>
    /// What LoRA on fused expert parameters keeps per token in one decoder layer (averaged over the layers). While
    /// gradients are recorded LoraExpertParameters.Project computes x·W_e + s·(x·A_eᵀ)·B_eᵀ for each expert on its own
    /// rows. The base product of a frozen weight keeps only that weight (libtorch saves a product's input for the
    /// weight's gradient alone), and nothing else keeps the expert's input (its gathered rows, or the GLU product
    /// down_proj reads); x·A_eᵀ keeps it for ∂A, and x·A_eᵀ itself (r values) is kept for ∂B; scaling and the sum keep
    /// nothing. A token runs through k experts: k·(in + r) values in the activations' dtype per targeted parameter.
    /// Checked by difference against measured steps (EstimatorVsMeasuredTests).
    /// </summary>
    internal static double ExpertLoraBytesPerToken(ModelLayout layout, EstimateSettings s)
    {
        var targeted = TrainingEstimator.SelectExpertParameters(layout, s);
        if (targeted.Count == 0) return 0;
        var k = layout.Config.Experts?.ExpertsPerToken ?? 0;
        return targeted.Sum(p => (double)k * (p.InFeatures + s.LoraR)) * s.ComputeBytes / Math.Max(1, layout.Config.NumLayers);
    }

    /// <summary>
    /// Bytes of the factor copies LoRA on fused expert parameters keeps over the whole model: on a reduced-precision base
    /// each expert's fp32 slices A_e (r, in) and B_e (out, r) are cast to the activations' dtype and kept by the two
    /// products for ∂x (counted for every expert, as any may receive a token); on fp32 they are views of the factors.
    /// </summary>
    internal static double ExpertFactorCopyBytes(ModelLayout layout, EstimateSettings s) =>
        s.ComputeBytes == 4 ? 0
            : TrainingEstimator.SelectExpertParameters(layout, s).Sum(p => (double)s.LoraR * p.Experts * (p.InFeatures + p.OutFeatures)) * s.ComputeBytes;

    /// <summary>
    /// A SwiGLU MLP's 4·ffn per token; averaged over the layers of a mixture-of-experts model, whose sparse layers keep per
    /// token k experts' 4·moe_ffn, the k gathered inputs and weighted outputs (2·k·d) and the fp32 router probabilities.
    /// </summary>
    private static double MlpBytesPerToken(ModelConfig c, double b, double d)
    {
        var dense = 4.0 * c.IntermediateSize * b;
        if (c.Experts is not { } moe) return dense;
        var sparse = moe.ExpertsPerToken * (4.0 * moe.ExpertIntermediateSize + 2 * d) * b + 2 * 4.0 * moe.ExpertCount;
        var sparseLayers = Enumerable.Range(0, c.NumLayers).Count(moe.IsSparse);
        return (sparseLayers * sparse + (c.NumLayers - sparseLayers) * dense) / Math.Max(1, c.NumLayers);
    }

    /// <summary>
    /// Bytes per token a recomputed layer that keeps its MLP products holds from the forward until its backward: the gate
    /// and up products (2·ffn in the compute dtype). Only Llama-family layers with a separate, frozen gate and up keep
    /// them (not GPT-2, Phi-3's fused gate_up or Gemma's layer; not when those projections train or carry LoRA).
    /// </summary>
    public static double KeptMlpProductBytesPerToken(ModelLayout layout, EstimateSettings s, IReadOnlySet<string> loraTargets)
    {
        var architecture = layout.Config.Architecture;
        if (layout.LayerNormBlocks || architecture is "Phi3ForCausalLM" or "Gemma2ForCausalLM" or "Gemma3ForCausalLM" || s.IsFull) return 0;
        if (loraTargets.Contains("gate_proj") || loraTargets.Contains("up_proj")) return 0;
        // A mixture-of-experts model's sparse layers keep nothing; its dense ones do.
        var c = layout.Config;
        var keeping = c.Experts is { } moe ? Enumerable.Range(0, c.NumLayers).Count(i => !moe.IsSparse(i)) / (double)Math.Max(1, c.NumLayers) : 1.0;
        return keeping * 2.0 * c.IntermediateSize * s.ComputeBytes;
    }

    /// <summary>What LoRA layers keep per token in one decoder layer: fp32 inputs, A's output, DoRA's extra terms.</summary>
    private static double LoraBytes(ModelLayout layout, EstimateSettings s, IReadOnlySet<string> targets)
    {
        if (s.IsFull || targets.Count == 0) return 0;
        // Summed over every layer and averaged: layers may differ (a mixture-of-experts model's dense layers per
        // mlp_only_layers / decoder_sparse_step have other targets than its sparse ones).
        var layerLinears = layout.Linears.Where(l => l.Path.StartsWith(layout.LayerPrefix, StringComparison.Ordinal)
                                                    && targets.Contains(l.LeafName)).ToArray();
        double bytes = 0;
        var moe = layout.Config.Experts;
        foreach (var l in layerLinears)
        {
            // A token passes through k of an MoE layer's E experts.
            var share = moe is not null && l.Path.Contains(".experts.", StringComparison.Ordinal) ? moe.ExpertsPerToken / (double)moe.ExpertCount : 1.0;
            // On a reduced-precision base, plain LoRA runs its low-rank path in the activations' dtype and shares the base
            // layer's input; DoRA (and an fp32 base) computes it in fp32 on an fp32 copy of the input.
            var lowRankInFp32 = s.IsDora || s.ComputeBytes == 4;
            var elementBytes = lowRankInFp32 ? 4.0 : s.ComputeBytes;
            bytes += share * elementBytes * s.LoraR;                                   // A's output, kept for ∂B
            if (s.EffectiveLoraDropout > 0) bytes += share * (elementBytes + 1) * l.InFeatures; // dropped copy + bool mask
            else if (lowRankInFp32 && s.ComputeBytes != 4) bytes += share * 4.0 * l.InFeatures;   // the fp32 copy of the input
            if (s.IsDora) bytes += share * 8.0 * l.OutFeatures;                        // fp32 base output and scaled update
        }
        return bytes / Math.Max(1, layout.Config.NumLayers);
    }

    /// <summary>Bytes per token held outside the layers: embeddings, every layer's output, the final norm's output and internals.</summary>
    public static double HeldBytesPerToken(ModelLayout layout, EstimateSettings s)
    {
        double b = s.ComputeBytes, d = layout.Config.HiddenSize;
        var finalNorm = (s.ComputeBytes == 4 ? 0 : 4) * d + b * d;
        return (layout.Config.NumLayers + 2) * d * b + finalNorm;
    }

    /// <summary>
    /// Bytes per token of a forward without autograd. The layer loops free each layer's input once its output exists
    /// (LayerInputRelease), but a layer keeps its intermediates in its dispose scope until it returns: about what it keeps
    /// for a backward (<see cref="LayerBytesPerToken"/> without adapters: norms, q/k/v with the grouped-query heads
    /// repeated, the attention and MLP products), plus its input, its output and the loop's first input. Checked against
    /// a measured 64-layer no-grad prefill (LayerInputReleaseTests: 37 MB estimated, 46 MB measured).
    /// </summary>
    public static double InferenceWorkingBytesPerToken(ModelLayout layout, EstimateSettings s) =>
        LayerBytesPerToken(layout, s with { TargetParameters = null }, NoAdapters) + 3.0 * layout.Config.HiddenSize * s.ComputeBytes;

    private static readonly IReadOnlySet<string> NoAdapters = new HashSet<string>();

    /// <summary>Bytes per token the loss holds until the step ends: logits, their fp32 copy, the log-softmax.</summary>
    public static double LogitsBytesPerToken(ModelLayout layout, EstimateSettings s) =>
        (double)layout.Config.VocabSize * (s.ComputeBytes + (s.ComputeBytes == 4 ? 0 : 4) + 4);

    /// <summary>The backward's transient for one loss chunk: the fp32 gradients of the log-softmax and of the logits.</summary>
    public static double LossBackwardTransientBytes(ModelLayout layout, EstimateSettings s, long tokens) =>
        (double)Math.Min(tokens, s.LossChunkTokens) * layout.Config.VocabSize * (8 + (s.ComputeBytes == 4 ? 0 : s.ComputeBytes));
}
