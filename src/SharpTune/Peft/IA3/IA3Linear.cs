using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// A Linear or Conv1D layer with an (IA)³ scaling vector, as PEFT's IA3 <c>Linear</c>: on its output,
/// y = base(x) ⊙ l with <c>ia3_l</c> (out, 1); or, for a feed-forward layer, on its input, y = base(x ⊙ l) with
/// <c>ia3_l</c> (1, in). The vector is fp32 whatever the base dtype.
/// </summary>
public sealed class IA3Linear : nn.Module<Tensor, Tensor>
{
    public readonly nn.Module<Tensor, Tensor> base_layer;
    public readonly Parameter ia3_l;

    /// <summary>True when the vector scales the layer's input (the MLP's intermediate activations).</summary>
    public bool IsFeedforward { get; }

    /// <summary>True when the base layer stores its weight (in, out) (GPT-2's Conv1D).</summary>
    public bool FanInFanOut => base_layer is Conv1D;

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    private IA3Linear(nn.Module<Tensor, Tensor> baseLayer, bool isFeedforward, bool initOnes) : base(nameof(IA3Linear))
    {
        base_layer = baseLayer;
        IsFeedforward = isFeedforward;
        var (inFeatures, outFeatures, weight) = baseLayer switch
        {
            Linear linear => (linear.in_features, linear.out_features, linear.weight!),
            Conv1D conv => (conv.InFeatures, conv.OutFeatures, (Tensor)conv.weight),
            _ => throw new ArgumentException($"IA3 wraps Linear or Conv1D layers, not {baseLayer.GetType().Name}"),
        };
        long[] shape = isFeedforward ? [1, inFeatures] : [outFeatures, 1];
        var initial = initOnes
            ? ones(shape, dtype: ScalarType.Float32, device: weight.device)
            : randn(shape, dtype: ScalarType.Float32, device: weight.device);   // PEFT's init_ia3_weights = false
        ia3_l = new Parameter(initial.DetachFromDisposeScope());
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/>; <paramref name="initOnes"/> is PEFT's <c>init_ia3_weights</c>.</summary>
    public static IA3Linear FromBase(nn.Module<Tensor, Tensor> baseLayer, bool isFeedforward, bool initOnes = true) =>
        new(baseLayer, isFeedforward, initOnes);

    public override Tensor forward(Tensor x)
    {
        if (!Enabled) return base_layer.forward(x);
        using var scope = NewDisposeScope();
        var scaling = ia3_l.flatten();
        if (IsFeedforward)
            return base_layer.forward((x.to(ScalarType.Float32) * scaling).to(x.dtype)).MoveToOuterDisposeScope();
        var y = base_layer.forward(x);
        return (y.to(ScalarType.Float32) * scaling).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Folds the vector into the base weight (and, for output scaling, the bias), computed in fp32 and cast back, and
    /// returns the base layer, which no longer references this wrapper.
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (weight, bias) = base_layer switch
        {
            Linear linear => (linear.weight!, linear.bias),
            Conv1D conv => ((Tensor)conv.weight, (Tensor?)conv.bias),
            _ => throw new InvalidOperationException($"unsupported base layer {base_layer.GetType().Name}"),
        };
        // Linear weights are (out, in): ia3_l (out, 1) scales rows, (1, in) columns; Conv1D's (in, out) takes the transpose.
        var factor = FanInFanOut ? ia3_l.t() : ia3_l;
        weight.copy_(weight.to(ScalarType.Float32) * factor);
        if (!IsFeedforward && bias is not null)
            bias.copy_(bias.to(ScalarType.Float32) * ia3_l.reshape(bias.shape));
        return base_layer;
    }
}
