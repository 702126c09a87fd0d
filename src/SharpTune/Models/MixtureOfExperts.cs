namespace SharpTune.Models;

/// <summary>
/// The sparse mixture-of-experts settings of a config.json (Qwen3MoeConfig's names; MixtralConfig's num_local_experts is
/// the expert count, and every Mixtral layer is sparse): each token is routed to
/// <see cref="ExpertsPerToken"/> of <see cref="ExpertCount"/> SwiGLU experts of width <see cref="ExpertIntermediateSize"/>.
/// </summary>
/// <param name="ExpertCount">num_experts: routed experts per sparse layer.</param>
/// <param name="ExpertsPerToken">num_experts_per_tok: the top-k a token is sent to.</param>
/// <param name="ExpertIntermediateSize">moe_intermediate_size: each expert's hidden width.</param>
/// <param name="NormalizeTopKProbabilities">norm_topk_prob: the k routing weights are divided by their sum.</param>
/// <param name="DecoderSparseStep">decoder_sparse_step: layer i is sparse when (i + 1) % step == 0.</param>
/// <param name="DenseLayers">mlp_only_layers: layers that keep a dense MLP of intermediate_size whatever the step says.</param>
/// <param name="RouterAuxLossCoefficient">router_aux_loss_coef: the load-balancing loss's weight in the training loss.</param>
/// <param name="OutputRouterLogits">output_router_logits: whether the load-balancing loss is added while training.</param>
public sealed record MixtureOfExperts(
    int ExpertCount,
    int ExpertsPerToken,
    int ExpertIntermediateSize,
    bool NormalizeTopKProbabilities,
    int DecoderSparseStep,
    IReadOnlyList<int> DenseLayers,
    double RouterAuxLossCoefficient,
    bool OutputRouterLogits)
{
    /// <summary>
    /// Mixtral's router_jitter_noise: while training, the block's input is multiplied by uniform noise in [1 − j, 1 + j]
    /// before the router and the experts read it (MixtralSparseMoeBlock); 0 = none.
    /// </summary>
    public double RouterJitterNoise { get; init; }

    /// <summary>gpt-oss's swiglu_alpha: its experts' activation is gate·σ(alpha·gate) (GptOssExperts: 1.702).</summary>
    public double SwigluAlpha { get; init; } = 1.702;

    /// <summary>gpt-oss's swiglu_limit: its experts clamp the gate to at most this and the up projection to ±this.</summary>
    public double SwigluLimit { get; init; } = 7.0;

    /// <summary>
    /// Whether layer <paramref name="layer"/> holds the sparse block, as Qwen3MoeDecoderLayer decides it
    /// (transformers@16b6c53c modeling_qwen3_moe.py): not in mlp_only_layers, and num_experts > 0 and
    /// (layer + 1) % decoder_sparse_step == 0.
    /// </summary>
    public bool IsSparse(int layer) => !DenseLayers.Contains(layer) && ExpertCount > 0 && (layer + 1) % DecoderSparseStep == 0;
}
