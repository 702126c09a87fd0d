using SharpTune.Peft.Lycoris;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.LoHa;

/// <summary>
/// A Linear layer with a low-rank Hadamard-product update, as PEFT's LoHa <c>Linear</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/loha/layer.py):
/// ΔW = scale · (hada_w1_a · hada_w1_b) ⊙ (hada_w2_a · hada_w2_b), with the a factors (out, r) and the b factors (r, in).
/// The product of two rank-r matrices taken elementwise reaches rank r², with the parameters of two rank-r LoRAs.
/// </summary>
public sealed class LohaLinear : LycorisLinear
{
    public readonly Parameter hada_w1_a;   // (out, r)
    public readonly Parameter hada_w1_b;   // (r, in)
    public readonly Parameter hada_w2_a;   // (out, r)
    public readonly Parameter hada_w2_b;   // (r, in)

    private LohaLinear(nn.Module<Tensor, Tensor> baseLayer, int r, double alpha, double rankDropout, double moduleDropout, bool initWeights)
        : base(nameof(LohaLinear), baseLayer, "LoHa", r, alpha, rankDropout, moduleDropout)
    {
        var (inFeatures, outFeatures) = BaseLayer.Shape(base_layer);
        var device = BaseLayer.DeviceOf(base_layer);
        // PEFT's reset_adapter_parameters: kaiming_uniform_(a=√5) for w1_a, w1_b, w2_a and zeros for w2_b, so ΔW = 0;
        // reset_adapter_parameters_random (init_weights=False) draws w2_b like the others.
        hada_w1_a = Kaiming(outFeatures, r, device);
        hada_w1_b = Kaiming(r, inFeatures, device);
        hada_w2_a = Kaiming(outFeatures, r, device);
        hada_w2_b = initWeights ? Zeros(r, inFeatures, device) : Kaiming(r, inFeatures, device);
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> (an nn.Linear) with the given rank, alpha and dropouts.</summary>
    public static LohaLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, int r, double alpha, double rankDropout = 0,
        double moduleDropout = 0, bool initWeights = true) => new(baseLayer, r, alpha, rankDropout, moduleDropout, initWeights);

    // PEFT's LoHa divides by the kept fraction whenever it drops rows (get_delta_weight: drop /= drop.mean()).
    protected override bool RescalesRankDropout => true;

    // PEFT's HadaWeight: the backward multiplies the products again rather than autograd keeping both (out, in) products.
    protected override Tensor Product() => HadaWeight.Apply(hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b);   // (out, in)

    public override IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("hada_w1_a", hada_w1_a);
        yield return ("hada_w1_b", hada_w1_b);
        yield return ("hada_w2_a", hada_w2_a);
        yield return ("hada_w2_b", hada_w2_b);
    }
}
