using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// A sparse mixture-of-experts feed-forward block (transformers' Qwen3MoeSparseMoeBlock, and MixtralSparseMoeBlock with
/// the probabilities always renormalised): a bias-free router <c>gate</c> scores the experts per token, the top k are
/// kept, and each expert runs only on the tokens routed to it, its output weighted and added back per token.
/// </summary>
/// <remarks>
/// As transformers@16b6c53c (models/qwen3_moe/modeling_qwen3_moe.py, Qwen3MoeSparseMoeBlock.forward): softmax over the
/// router logits in fp32, top-k, divide by the k weights' sum when norm_topk_prob, cast back to the hidden dtype, then
/// per expert in ascending order expert(x[tokens]) · weight added into the output with index_add_. The experts are
/// plain modules (<see cref="LlamaMlp"/>), so adapters wrap their projections like any other.
/// </remarks>
public sealed class SparseMoeBlock : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate;
    public readonly ModuleList<nn.Module<Tensor, Tensor>> experts;
    private readonly int topK;
    private readonly bool normalize;
    private readonly RouterLogitsRecorder? recorder;
    private readonly double jitter;

    internal SparseMoeBlock(ModelConfig config, MixtureOfExperts settings, bool normalize, Func<nn.Module<Tensor, Tensor>> expert,
        RouterLogitsRecorder? recorder) : base(nameof(SparseMoeBlock))
    {
        if (settings.ExpertsPerToken < 1 || settings.ExpertsPerToken > settings.ExpertCount)
            throw new ArgumentException(
                $"num_experts_per_tok = {settings.ExpertsPerToken} must be between 1 and num_experts = {settings.ExpertCount}");
        gate = nn.Linear(config.HiddenSize, settings.ExpertCount, hasBias: false);
        experts = new ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, settings.ExpertCount).Select(_ => expert()).ToArray());
        topK = settings.ExpertsPerToken;
        this.normalize = normalize;
        this.recorder = recorder;
        jitter = settings.RouterJitterNoise;
        RegisterComponents();
    }

    /// <summary>Hidden states (…, C) → (…, C).</summary>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        // Mixtral's router_jitter_noise while training: the router and the experts both read the jittered input.
        // The noise is drawn from the CPU generator, the one a checkpointed layer's recomputation replays
        // (ActivationCheckpoint saves get_rng_state()): on an accelerator its own generator would draw other noise the
        // second time, route tokens to other experts, and give gradients of a forward pass that never happened.
        if (training && jitter > 0)
            hidden = hidden * empty(hidden.shape, dtype: hidden.dtype, device: CPU).uniform_(1.0 - jitter, 1.0 + jitter).to(hidden.device);
        var flat = hidden.reshape(-1, hidden.size(-1));                                         // (N, C)
        var routerLogits = gate.forward(flat);                                                  // (N, E)
        recorder?.Record(routerLogits);
        var (weights, selected) = Route(routerLogits, topK, normalize);                         // (N, k) fp32, (N, k) int64
        var output = Dispatch(flat, selected, weights.to(flat.dtype), experts.Count, (e, tokens) => experts[e].forward(tokens));
        return output.reshape(hidden.shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Router logits (N, E) → the top-k routing weights (N, k) in fp32 and the chosen experts (N, k): softmax in fp32,
    /// top-k, then, when <paramref name="normalize"/>, each row divided by its sum.
    /// </summary>
    internal static (Tensor Weights, Tensor Experts) Route(Tensor routerLogits, int topK, bool normalize)
    {
        var probabilities = F.softmax(routerLogits.to(ScalarType.Float32), 1);                  // (N, E)
        var (weights, selected) = probabilities.topk(topK, dim: -1);                            // (N, k)
        if (normalize) weights = weights / weights.sum(-1, keepdim: true);
        return (weights, selected);
    }

    /// <summary>
    /// Runs each expert on the tokens routed to it: the (token, slot) pairs are sorted by expert, so expert e reads one
    /// contiguous run of token indices, gathers those rows (index_select), and adds its weighted output back into them
    /// (index_add_). Experts no token chose are not run. One host read (the per-expert counts) per call.
    /// <paramref name="runExpert"/> maps (expert index, its rows (n, C)) to that expert's output (n, C); the weighted
    /// output is cast to <paramref name="flat"/>'s dtype before it is added.
    /// </summary>
    internal static Tensor Dispatch(Tensor flat, Tensor selected, Tensor weights, int expertCount, Func<int, Tensor, Tensor> runExpert)
    {
        var topK = selected.size(1);
        var slotExperts = selected.reshape(-1);                                                 // (N·k): slot s = token·k + j
        var order = slotExperts.argsort();                                                      // slots grouped by expert
        var counts = slotExperts.bincount(null, expertCount).cpu().data<long>().ToArray();      // (E)
        var tokenOfSlot = order.div(topK, RoundingMode.floor);                                  // (N·k)
        var weightOfSlot = weights.reshape(-1).index_select(0, order).unsqueeze(1);             // (N·k, 1)
        var output = zeros_like(flat);                                                          // (N, C)
        long start = 0;
        for (var e = 0; e < counts.Length; e++)
        {
            var n = counts[e];
            if (n == 0) continue;
            using var expertScope = NewDisposeScope();
            var tokens = tokenOfSlot.narrow(0, start, n);                                       // (n)
            var expertOutput = runExpert(e, flat.index_select(0, tokens)) * weightOfSlot.narrow(0, start, n);   // (n, C)
            output.index_add_(0, tokens, expertOutput.to(flat.dtype), 1);
            start += n;
        }
        return output;
    }
}
