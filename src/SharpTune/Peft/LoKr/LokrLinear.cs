using SharpTune.Peft.Lycoris;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.LoKr;

/// <summary>
/// A Linear layer with a Kronecker-product update, as PEFT's LoKr <c>Linear</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/lokr/layer.py): ΔW = scale · kron(w1, w2) with
/// w1 (a, c) and w2 (b, d) from <see cref="LokrShapes"/>, each either one full matrix (<c>lokr_w1</c>, <c>lokr_w2</c>)
/// or a rank-r product (<c>lokr_w1_a · lokr_w1_b</c>, <c>lokr_w2_a · lokr_w2_b</c>).
/// </summary>
public sealed class LokrLinear : LycorisLinear
{
    public readonly Parameter? lokr_w1;     // (a, c)
    public readonly Parameter? lokr_w1_a;   // (a, r)
    public readonly Parameter? lokr_w1_b;   // (r, c)
    public readonly Parameter? lokr_w2;     // (b, d)
    public readonly Parameter? lokr_w2_a;   // (b, r)
    public readonly Parameter? lokr_w2_b;   // (r, d)
    private readonly bool rescalesRankDropout;

    /// <summary>The Kronecker split of this layer's weight.</summary>
    public LokrShapes Shapes { get; }

    private LokrLinear(nn.Module<Tensor, Tensor> baseLayer, int r, double alpha, double rankDropout, double moduleDropout,
        bool rankDropoutScale, bool decomposeBoth, int decomposeFactor, LokrInit init)
        : base(nameof(LokrLinear), baseLayer, "LoKr", r, alpha, rankDropout, moduleDropout)
    {
        rescalesRankDropout = rankDropoutScale;
        var (inFeatures, outFeatures) = BaseLayer.Shape(base_layer);
        var device = BaseLayer.DeviceOf(base_layer);
        Shapes = LokrShapes.For(inFeatures, outFeatures, r, decomposeBoth, decomposeFactor);
        var (a, b, c, d) = (Shapes.OutLeft, Shapes.OutRight, Shapes.InLeft, Shapes.InRight);
        // PEFT's reset_adapter_parameters (true): w1 (or w1_a) zero, w1_b, w2 (or w2_a, w2_b) kaiming; the "lycoris" way:
        // w1 (or w1_a, w1_b) and w2_a kaiming, w2 (or w2_b) zero; random (false): every factor kaiming.
        if (Shapes.UseW1)
            lokr_w1 = init == LokrInit.Default ? Zeros(a, c, device) : Kaiming(a, c, device);
        else
        {
            lokr_w1_a = init == LokrInit.Default ? Zeros(a, r, device) : Kaiming(a, r, device);
            lokr_w1_b = Kaiming(r, c, device);
        }
        if (Shapes.UseW2)
            lokr_w2 = init == LokrInit.Lycoris ? Zeros(b, d, device) : Kaiming(b, d, device);
        else
        {
            lokr_w2_a = Kaiming(b, r, device);
            lokr_w2_b = init == LokrInit.Lycoris ? Zeros(r, d, device) : Kaiming(r, d, device);
        }
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> (an nn.Linear) with the settings of <paramref name="config"/> at rank <paramref name="r"/> and <paramref name="alpha"/>.</summary>
    public static LokrLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, LokrConfig config, int r, double alpha) =>
        new(baseLayer, r, alpha, config.RankDropout, config.ModuleDropout, config.RankDropoutScale, config.DecomposeBoth,
            config.DecomposeFactor, config.InitWeights);

    protected override bool RescalesRankDropout => rescalesRankDropout;

    // get_delta_weight + make_kron: kron((a, c), (b, d)) is (a·b, c·d) = (out, in), row i·b + j of block (i, k) ↦ w1[i, k]·w2.
    protected override Tensor Product()
    {
        var w1 = lokr_w1 ?? torch.matmul(lokr_w1_a!, lokr_w1_b!);   // (a, c)
        var w2 = lokr_w2 ?? torch.matmul(lokr_w2_a!, lokr_w2_b!);   // (b, d)
        return torch.kron(w1, w2.contiguous());                      // (out, in)
    }

    public override IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        if (lokr_w1 is not null) yield return ("lokr_w1", lokr_w1);
        if (lokr_w1_a is not null) yield return ("lokr_w1_a", lokr_w1_a);
        if (lokr_w1_b is not null) yield return ("lokr_w1_b", lokr_w1_b);
        if (lokr_w2 is not null) yield return ("lokr_w2", lokr_w2);
        if (lokr_w2_a is not null) yield return ("lokr_w2_a", lokr_w2_a);
        if (lokr_w2_b is not null) yield return ("lokr_w2_b", lokr_w2_b);
    }
}
