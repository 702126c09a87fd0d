using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Peft.Lycoris;

/// <summary>
/// What LoHa and LoKr layers share, as PEFT's <c>LycorisLayer</c> and their <c>Linear</c> classes
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/lycoris_utils.py, tuners/loha/layer.py,
/// tuners/lokr/layer.py): y = base(x) + x·ΔWᵀ with ΔW = scale·(the method's product), scale = alpha / r. In training,
/// module_dropout skips the whole update with that probability and rank_dropout zeroes output rows of ΔW. The factors
/// are fp32 whatever the base dtype; ΔW is built in fp32 and cast to the activations' dtype.
/// </summary>
public abstract class LycorisLinear : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    /// <summary>The wrapped layer (PEFT's field name).</summary>
    public readonly Linear base_layer;

    /// <summary>alpha / r.</summary>
    public double Scaling { get; }

    /// <summary>The probability of dropping an output row of ΔW in training.</summary>
    public double RankDropout { get; }

    /// <summary>The probability of skipping the update in a training forward pass.</summary>
    public double ModuleDropout { get; }

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Whether the kept rows of a rank dropout are divided by the fraction kept (LoHa always; LoKr with rank_dropout_scale).</summary>
    protected abstract bool RescalesRankDropout { get; }

    protected LycorisLinear(string name, nn.Module<Tensor, Tensor> baseLayer, string method, int r, double alpha, double rankDropout,
        double moduleDropout) : base(name)
    {
        // PEFT's layers_mapping holds nn.Linear, Conv1d and Conv2d: transformers' Conv1D (GPT-2) raises "Target module …
        // not supported" there. bitsandbytes' quantized linears subclass nn.Linear, so PEFT wraps them; SharpTune does not.
        base_layer = baseLayer as Linear ?? throw new NotSupportedException(
            $"{method} wraps nn.Linear layers only (SharpTune's {method} refuses GPT-2's Conv1D, as PEFT, and quantized layers), not {baseLayer.GetType().Name}");
        if (r <= 0) throw new ArgumentException($"{method}: r must be a positive integer, found {r}");
        Scaling = alpha / r;
        RankDropout = rankDropout;
        ModuleDropout = moduleDropout;
    }

    /// <summary>The method's product before scaling, (out, in) in fp32 (LoHa's Hadamard product, LoKr's Kronecker product).</summary>
    protected abstract Tensor Product();

    /// <summary>
    /// PEFT's get_delta_weight: scale · <see cref="Product"/>, (out, in) fp32, with rank dropout when
    /// <paramref name="training"/> (a fresh mask per call).
    /// </summary>
    public Tensor DeltaWeight(bool training = false)
    {
        var weight = Product() * Scaling;
        if (!training || RankDropout <= 0) return weight;
        // Drawn on the CPU and moved, as PEFT (loha/layer.py:212-213, lokr/layer.py:282-283): ActivationCheckpoint
        // replays only the CPU generator, so a mask drawn on a GPU would differ when a layer is recomputed.
        var keep = (torch.rand(weight.shape[0]) > RankDropout).to(ScalarType.Float32).to(weight.device);   // (out)
        if (RescalesRankDropout) keep = keep / keep.mean();
        return weight * keep.view(-1, 1);
    }

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public abstract IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters();

    public void DisposeAdapter()
    {
        foreach (var (_, parameter) in AdapterParameters()) parameter.Dispose();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = DenseMatVec.Forward(base_layer, x);                                   // (…, out)
        if (!Enabled) return y.MoveToOuterDisposeScope();
        // PEFT adds the update when torch.rand(1) > module_dropout, so it skips it with probability module_dropout.
        if (training && ModuleDropout > 0 && torch.rand(1).item<float>() <= ModuleDropout) return y.MoveToOuterDisposeScope();
        var delta = DeltaWeight(training);                                            // (out, in) fp32
        return (y + F.linear(x, delta.to(x.dtype)).to(y.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's merge: W + ΔW (no dropout), computed in fp32 and written into the base weight in its own dtype. Returns the
    /// base layer, which no longer references this wrapper.
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return BaseLayer.WithWeight(base_layer, BaseLayer.Weight(base_layer, ScalarType.Float32) + DeltaWeight());
    }

    /// <summary>PEFT's <c>reset_adapter_parameters</c> building block: kaiming_uniform_(a = √5), as nn.Linear's weight.</summary>
    protected static Parameter Kaiming(long rows, long columns, Device device)
    {
        var parameter = new Parameter(torch.empty(rows, columns, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope());
        using var noGrad = no_grad();
        nn.init.kaiming_uniform_(parameter, a: Math.Sqrt(5));
        return parameter;
    }

    /// <summary>A zero factor (PEFT's nn.init.zeros_).</summary>
    protected static Parameter Zeros(long rows, long columns, Device device) =>
        new(torch.zeros(rows, columns, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope());
}
