using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// A Linear, Conv1D or quantized linear layer with an (IA)³ scaling vector, as PEFT's IA3 <c>Linear</c>: on its output,
/// y = base(x) ⊙ l with <c>ia3_l</c> (out, 1); or, for a feed-forward layer, on its input, y = base(x ⊙ l) with
/// <c>ia3_l</c> (1, in). The vector is fp32 whatever the base dtype.
/// </summary>
public sealed class IA3Linear : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    public readonly nn.Module<Tensor, Tensor> base_layer;
    public readonly Parameter ia3_l;

    /// <summary>True when the vector scales the layer's input (the MLP's intermediate activations).</summary>
    public bool IsFeedforward { get; }

    /// <summary>True when the base layer stores its weight (in, out) (GPT-2's Conv1D).</summary>
    public bool FanInFanOut => BaseLayer.FanInFanOut(base_layer);

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    private IA3Linear(nn.Module<Tensor, Tensor> baseLayer, bool isFeedforward, bool initOnes) : base(nameof(IA3Linear))
    {
        BaseLayer.Require(baseLayer, "IA3");
        base_layer = baseLayer;
        IsFeedforward = isFeedforward;
        var (inFeatures, outFeatures) = BaseLayer.Shape(baseLayer);
        var device = BaseLayer.DeviceOf(baseLayer);
        long[] shape = isFeedforward ? [1, inFeatures] : [outFeatures, 1];
        var initial = initOnes
            ? ones(shape, dtype: ScalarType.Float32, device: device)
            : randn(shape, dtype: ScalarType.Float32, device: device);   // PEFT's init_ia3_weights = false
        ia3_l = new Parameter(initial.DetachFromDisposeScope());
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/>; <paramref name="initOnes"/> is PEFT's <c>init_ia3_weights</c>.</summary>
    public static IA3Linear FromBase(nn.Module<Tensor, Tensor> baseLayer, bool isFeedforward, bool initOnes = true) =>
        new(baseLayer, isFeedforward, initOnes);

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("ia3_l", ia3_l);
    }

    public void DisposeAdapter() => ia3_l.Dispose();

    public override Tensor forward(Tensor x)
    {
        if (!Enabled) return DenseMatVec.Forward(base_layer, x);
        using var scope = NewDisposeScope();
        var scaling = ia3_l.flatten();
        if (IsFeedforward)
            return base_layer.forward((x.to(ScalarType.Float32) * scaling).to(x.dtype)).MoveToOuterDisposeScope();
        var y = DenseMatVec.Forward(base_layer, x);
        return (y.to(ScalarType.Float32) * scaling).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Folds the vector into the base weight (and, for output scaling, the bias), computed in fp32 and cast back, and
    /// returns the base layer, which no longer references this wrapper (a quantized base becomes a plain Linear).
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // (out, in) weights: ia3_l (out, 1) scales rows, (1, in) columns.
        var weight = BaseLayer.Weight(base_layer, ScalarType.Float32) * ia3_l;
        var bias = BaseLayer.Bias(base_layer);
        var scaledBias = !IsFeedforward && bias is not null ? bias.to(ScalarType.Float32) * ia3_l.reshape(bias.shape) : null;
        return BaseLayer.WithWeight(base_layer, weight, scaledBias);
    }
}
