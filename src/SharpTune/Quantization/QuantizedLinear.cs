using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// A frozen linear layer whose weight is stored quantized (bitsandbytes' <c>Linear4bit</c> / <c>Linear8bitLt</c>):
/// y = x · deq(W)ᵀ + b, with the input cast to the compute dtype and the output cast back, as bitsandbytes does. The
/// weight is dequantized inside the forward pass and again in the backward (never kept between them), so a full-
/// precision copy exists for one layer at a time; inside a checkpointed layer's recomputation, where autograd's saved
/// tensors already live for one layer only, the dequantized weight is kept for the backward instead of made again.
/// The bias stays a (frozen) parameter in the compute dtype.
/// </summary>
public sealed class QuantizedLinear : nn.Module<Tensor, Tensor>
{
    public readonly Parameter? bias;   // (out), compute dtype
    private QuantizedWeight weight;

    private QuantizedLinear(QuantizedWeight weight, Tensor? bias, ScalarType computeDtype, QuantizationOptions options)
        : base(nameof(QuantizedLinear))
    {
        this.weight = weight;
        ComputeDtype = computeDtype;
        Options = options;
        if (bias is not null) this.bias = new Parameter(bias.to(computeDtype).detach().clone().DetachFromDisposeScope(), requires_grad: false);
        RegisterComponents();
    }

    /// <summary>
    /// Quantizes <paramref name="weight"/> (out, in) with <paramref name="options"/>; <paramref name="bias"/> (out) is
    /// kept in the compute dtype. The inputs are not disposed.
    /// </summary>
    public static QuantizedLinear Quantize(Tensor weight, Tensor? bias, QuantizationOptions options)
    {
        options.Validated();
        using var noGrad = no_grad();
        QuantizedWeight stored = options.IsFourBit
            ? FourBitCodec.For(options.Type).Quantize(weight, options.DoubleQuant)
            : Int8RowwiseCodec.Quantize(weight);
        // bitsandbytes records the dtype it quantized from (quant_state dtype) and dequantizes to it before the compute dtype.
        if (stored is FourBitWeight fourBit && weight.dtype is ScalarType.BFloat16 or ScalarType.Float16) fourBit.QuantizedFrom = weight.dtype;
        return new QuantizedLinear(stored, bias, options.ComputeDtype, options);
    }

    /// <summary>A layer over an already quantized weight (read from a pre-quantized checkpoint); <paramref name="bias"/> is copied.</summary>
    internal static QuantizedLinear FromStored(QuantizedWeight weight, Tensor? bias, QuantizationOptions options) =>
        new(weight, bias, options.ComputeDtype, options.Validated());

    /// <summary>Quantizes a loaded nn.Linear or GPT-2 Conv1D (whose (in, out) weight is transposed first).</summary>
    public static QuantizedLinear FromLinear(nn.Module<Tensor, Tensor> layer, QuantizationOptions options) => layer switch
    {
        Linear linear => Quantize(linear.weight!, linear.bias, options),
        Conv1D conv => Quantize(conv.weight.t(), conv.bias, options),
        _ => throw new ArgumentException($"only Linear and Conv1D layers can be quantized, not {layer.GetType().Name}"),
    };

    /// <summary>
    /// Where the full-precision weight this layer was quantized from is stored, when it was quantized while loading a
    /// full-precision checkpoint (<see cref="ModelQuantizer.Load"/>); null otherwise. LoftQ reads it back, as PEFT's
    /// <c>replace_lora_weights_loftq</c> streams the weights from the model's safetensors files.
    /// </summary>
    internal QuantizedWeightOrigin? Origin { get; set; }

    /// <summary>The quantized weight (codes and statistics).</summary>
    public QuantizedWeight Weight => weight;

    /// <summary>The options the layer was quantized with.</summary>
    public QuantizationOptions Options { get; }

    /// <summary>The dtype the weight is dequantized to and the product computed in.</summary>
    public ScalarType ComputeDtype { get; }

    public long InFeatures => weight.InFeatures;
    public long OutFeatures => weight.OutFeatures;

    /// <summary>Bytes of the stored weight, bias included.</summary>
    public long StorageBytes => weight.StorageBytes + (bias is null ? 0 : bias.numel() * bias.ElementSize);

    /// <summary>The (out, in) weight dequantized to <paramref name="dtype"/> (a new tensor the caller owns).</summary>
    public Tensor DequantizedWeight(ScalarType dtype)
    {
        using var noGrad = no_grad();
        return weight.Dequantize(dtype);
    }

    public override Tensor forward(Tensor x)
    {
        if (!is_grad_enabled() && x.dtype == ComputeDtype)
        {
            // Generation and evaluation: no conversions, which a decode step's small products notice. The scope still
            // frees what a product outside the kernels makes (a whole dequantized weight).
            using var fastScope = NewDisposeScope();
            var product = weight.MatmulTransposed(x);
            return (bias is null ? product : product.add_(bias)).MoveToOuterDisposeScope();
        }
        using var scope = NewDisposeScope();
        var input = x.dtype == ComputeDtype ? x : x.to(ComputeDtype);
        Tensor y;
        if (!input.requires_grad || !is_grad_enabled()) y = MatmulWithoutGrad(input);
        else y = QuantizedMatmul.Apply(input, weight);
        if (bias is not null) y = y + bias;
        return (y.dtype == x.dtype ? y : y.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// ∂L/∂x for ∂L/∂y = <paramref name="gradOutput"/> (…, out): the product with the weight dequantized once more, in the
    /// compute dtype, returned in the gradient's own dtype (as <see cref="forward"/> casts its input and output).
    /// </summary>
    internal Tensor InputGradient(Tensor gradOutput)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grad = gradOutput.dtype == ComputeDtype ? gradOutput : gradOutput.to(ComputeDtype);
        var input = weight.BackwardInput(grad);
        return (input.dtype == gradOutput.dtype ? input : input.to(gradOutput.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>A plain nn.Linear in <paramref name="dtype"/> holding <paramref name="fullWeight"/> (out, in) and this bias.</summary>
    public Linear ToLinear(Tensor fullWeight, ScalarType dtype)
    {
        using var noGrad = no_grad();
        var linear = nn.Linear(InFeatures, OutFeatures, hasBias: bias is not null, device: fullWeight.device, dtype: dtype);
        linear.weight!.copy_(fullWeight);
        if (bias is not null) linear.bias!.copy_(bias);
        linear.weight.requires_grad = false;
        if (linear.bias is not null) linear.bias.requires_grad = false;
        linear.train(training);
        return linear;
    }

    private Tensor MatmulWithoutGrad(Tensor input)
    {
        using var noGrad = no_grad();
        return weight.MatmulTransposed(input);
    }

    // Module.to(device) moves registered tensors; the quantized codes are not registered (they are not parameters and
    // must keep their integer dtype), so they move here. A dtype change leaves them alone: the compute dtype is fixed.
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        if (device is null) return;
        var moved = weight.To(device);
        if (!ReferenceEquals(moved, weight))
        {
            weight.Dispose();
            weight = moved;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) weight.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>
/// x · deq(W)ᵀ as an autograd function that keeps only x's shape for the backward, not the dequantized weight
/// (bitsandbytes' MatMul4Bit): the backward dequantizes again. The weight itself never takes a gradient. A checkpointed
/// layer's recomputation runs through it too: keeping the recomputed layer's dequantized weights for its backward
/// instead (plain autograd) spared one dequantization per weight and step (~0.7 % of an M step on the CPU) but held
/// them, 11 MB on M, at the step's peak, which is what a quantized base is chosen to lower.
/// </summary>
internal sealed class QuantizedMatmul : autograd.SingleTensorFunction<QuantizedMatmul>
{
    public override string Name => nameof(QuantizedMatmul);

    public static Tensor Apply(Tensor input, QuantizedWeight weight) => CustomFunctionOutputs.Apply(() => apply(input, weight));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var weight = (QuantizedWeight)vars[1];
        CustomFunctionOutputs.Record(ctx);
        ctx.save_data("weight", weight);
        using var noGrad = no_grad();
        return weight.MatmulTransposed(input);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var weight = (QuantizedWeight)ctx.get_data("weight");
        // In a scope of its own: the dequantized weight and the gradient handles must not live until the step ends.
        var inputGradient = CustomBackward.Run(gradOutput, grad =>
        {
            using var noGrad = no_grad();
            return weight.BackwardInput(grad);
        });
        return [inputGradient, null!];
    }
}
