using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// gpt-oss's mixture-of-experts block (GptOssMLP): the <c>router</c> scores the experts per token with a biased linear
/// map, the top k logits are kept and softmaxed among themselves, and each chosen expert's output is weighted and added
/// back per token.
/// </summary>
/// <remarks>
/// As huggingface/transformers@00d4b3d2 (models/gpt_oss/modeling_gpt_oss.py, GptOssTopKRouter and GptOssExperts): top-k
/// over the raw logits, softmax over those k (unlike Mixtral's softmax over all experts first). The experts run only on
/// the tokens routed to them (transformers' training loop; its inference path runs every expert on every token and
/// weights the unchosen ones by zero: the same sums). The raw router logits (N, E) are what a recording keeps for the
/// load-balancing loss, as transformers@0261a467 (modular_gpt_oss.py) records GptOssTopKRouter's first output.
/// </remarks>
public sealed class GptOssMlp : nn.Module<Tensor, Tensor>
{
    public readonly GptOssRouter router;
    public readonly GptOssExperts experts;
    private readonly int topK;
    private readonly RouterLogitsRecorder? recorder;

    internal GptOssMlp(ModelConfig config, MixtureOfExperts settings, RouterLogitsRecorder? recorder) : base(nameof(GptOssMlp))
    {
        router = new GptOssRouter(config.HiddenSize, settings.ExpertCount);
        experts = new GptOssExperts(config.HiddenSize, settings);
        topK = settings.ExpertsPerToken;
        this.recorder = recorder;
        RegisterComponents();
    }

    /// <summary>Hidden states (…, C) → (…, C).</summary>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var flat = hidden.reshape(-1, hidden.size(-1));                                        // (N, C)
        var routerLogits = router.forward(flat);                                               // (N, E)
        recorder?.Record(routerLogits);
        var (topLogits, selected) = routerLogits.topk(topK, dim: -1);                          // (N, k)
        // In the logits' dtype, as GptOssTopKRouter (softmax(…, dtype=router_top_value.dtype)); libtorch accumulates a
        // bf16 softmax in float32 and rounds once, as the CUDA/CPU kernels transformers calls do.
        var weights = F.softmax(topLogits, -1);                                                // (N, k)
        var output = SparseMoeBlock.Dispatch(flat, selected, weights, experts.Count, experts.Forward);   // (N, C)
        return output.reshape(hidden.shape).MoveToOuterDisposeScope();
    }
}

/// <summary>GptOssTopKRouter's weights: router logits = x·weightᵀ + bias over the experts (not an nn.Linear, as in transformers).</summary>
public sealed class GptOssRouter : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;   // (E, C)
    public readonly Parameter bias;     // (E)

    internal GptOssRouter(int hiddenSize, int expertCount) : base(nameof(GptOssRouter))
    {
        weight = new Parameter(zeros(expertCount, hiddenSize));
        bias = new Parameter(zeros(expertCount));
        RegisterComponents();
    }

    /// <summary>(N, C) → router logits (N, E).</summary>
    public override Tensor forward(Tensor x) => F.linear(x, weight, bias);
}

/// <summary>
/// GptOssExperts: every expert's weights fused into 3D parameters — <c>gate_up_proj</c> (E, C, 2·I) whose even columns
/// are the gate and odd columns the up projection, <c>down_proj</c> (E, I, C), and their biases — and the clamped SwiGLU
/// out = ((clamp(up, ±limit) + 1) · g·σ(alpha·g)) with g = min(gate, limit).
/// </summary>
public sealed class GptOssExperts : nn.Module
{
    public readonly Parameter gate_up_proj;        // (E, C, 2·I), gate and up interleaved
    public readonly Parameter gate_up_proj_bias;   // (E, 2·I)
    public readonly Parameter down_proj;           // (E, I, C)
    public readonly Parameter down_proj_bias;      // (E, C)
    private readonly double alpha;
    private readonly double limit;

    internal GptOssExperts(int hiddenSize, MixtureOfExperts settings) : base(nameof(GptOssExperts))
    {
        var (e, i) = (settings.ExpertCount, settings.ExpertIntermediateSize);
        gate_up_proj = new Parameter(zeros(e, hiddenSize, 2 * i));
        gate_up_proj_bias = new Parameter(zeros(e, 2 * i));
        down_proj = new Parameter(zeros(e, i, hiddenSize));
        down_proj_bias = new Parameter(zeros(e, hiddenSize));
        alpha = settings.SwigluAlpha;
        limit = settings.SwigluLimit;
        RegisterComponents();
    }

    /// <summary>The number of experts.</summary>
    public int Count => (int)gate_up_proj.size(0);

    /// <summary>
    /// A change added to the fused weights as the experts read them, one expert at a time (an adapter's update, as
    /// PEFT's ParamWrapper parametrizes a targeted nn.Parameter); null = the stored weights as they are.
    /// </summary>
    internal IExpertWeightUpdate? WeightUpdate { get; set; }

    /// <summary>x (n, in) times expert <paramref name="expert"/>'s slice of <paramref name="parameterName"/>, as updated.</summary>
    private Tensor Project(Tensor x, Parameter weight, string parameterName, int expert) =>
        WeightUpdate is { } update ? update.Project(parameterName, expert, x, weight[expert]) : matmul(x, weight[expert]);

    /// <summary>Expert <paramref name="expert"/> on its tokens: (n, C) → (n, C).</summary>
    public Tensor Forward(int expert, Tensor x)
    {
        using var scope = NewDisposeScope();
        var gateUp = Project(x, gate_up_proj, nameof(gate_up_proj), expert) + gate_up_proj_bias[expert];             // (n, 2·I)
        var width = gateUp.size(-1);
        var gate = gateUp.slice(-1, 0, width, 2).clamp_max(limit);                             // columns 0, 2, 4…
        var up = gateUp.slice(-1, 1, width, 2).clamp(-limit, limit);                            // columns 1, 3, 5…
        var glu = gate * (gate * alpha).sigmoid();
        var y = Project((up + 1) * glu, down_proj, nameof(down_proj), expert) + down_proj_bias[expert];            // (n, C)
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>Changes a fused expert parameter's slice as it is read (see <see cref="GptOssExperts.WeightUpdate"/>).</summary>
internal interface IExpertWeightUpdate
{
    /// <summary>
    /// x (n, in) times <paramref name="weight"/>, expert <paramref name="expert"/>'s (in, out) slice of
    /// <paramref name="parameterName"/>, with the change applied to it (x·weight when the parameter is not changed).
    /// </summary>
    Tensor Project(string parameterName, int expert, Tensor x, Tensor weight);
}
