using System.Runtime.Intrinsics.X86;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Scratch a projection of <see cref="DecodeLayerStack"/> may use: fp32 and int16 buffers of rows·in values, and per-row scales.</summary>
internal readonly record struct DecodeScratch(nint Floats, nint Shorts, nint MoreShorts, nint Scales);

/// <summary>
/// One projection of a <see cref="DecodeLayerStack"/> step over raw buffers, through the kernel its module's decode step
/// uses: a dense bf16/fp32 weight (<see cref="DenseMatVec"/>) or quantized codes (<see cref="Int8MatVec"/>,
/// <see cref="FourBitMatVec"/>), with the same roundings.
/// </summary>
internal abstract class DecodeProjection
{
    public abstract long InFeatures { get; }
    public abstract long OutFeatures { get; }

    /// <summary>Whether the weight is a plain bf16/fp32 matrix (not quantized codes).</summary>
    public virtual bool IsDense => false;

    /// <summary>Whether the kernel serves activations of <paramref name="dtype"/> (checked before the step writes anything).</summary>
    public abstract bool Serves(ScalarType dtype);

    /// <summary>y (rows, out) = x (rows, in)·Wᵀ + b, both in the activations' dtype (bf16 when <paramref name="brain"/>).</summary>
    public abstract unsafe void Multiply(nint x, nint y, int rows, bool brain, in DecodeScratch scratch);

    /// <summary>A plain or quantized linear layer's projection; null for anything else (an adapter wraps it).</summary>
    public static DecodeProjection? Of(nn.Module<Tensor, Tensor> layer) => layer switch
    {
        Linear linear => new Dense(linear.weight!, linear.bias),
        QuantizedLinear quantized => new Quantized(quantized.Weight, quantized.bias, quantized.ComputeDtype),
        _ => null,
    };

    /// <summary>Sibling layers' fused projection (q/k/v, gate/up) from <paramref name="fusion"/>; null when they run one by one.</summary>
    public static DecodeProjection? Fused(FusedLinear fusion, params ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        if (fusion.TryDenseWeights(layers) is { } dense) return new Dense(dense.Weight, dense.Bias);
        return fusion.TryQuantizedWeights(layers) is { } quantized ? new Quantized(quantized.Weight, quantized.Bias, quantized.ComputeDtype) : null;
    }

    private sealed class Dense(Tensor weight, Tensor? bias) : DecodeProjection
    {
        public override long InFeatures => weight.size(1);
        public override long OutFeatures => weight.size(0);
        public override bool IsDense => true;

        public override bool Serves(ScalarType dtype) => DenseMatVec.ServesBuffers(weight, bias, dtype);

        public override unsafe void Multiply(nint x, nint y, int rows, bool brain, in DecodeScratch scratch) =>
            DenseMatVec.MultiplyRows(x, DecodeLayerStack.Pointer(weight), bias is null ? 0 : DecodeLayerStack.Pointer(bias), y, InFeatures,
                OutFeatures, rows, brain, (float*)scratch.Floats);
    }

    /// <summary>The module's decode step: the kernel's product rounded to the activations' dtype, then the bias added and rounded.</summary>
    private sealed class Quantized(QuantizedWeight weight, Tensor? bias, ScalarType computeDtype) : DecodeProjection
    {
        public override long InFeatures => weight.InFeatures;
        public override long OutFeatures => weight.OutFeatures;

        public override bool Serves(ScalarType dtype)
        {
            if (computeDtype != dtype || !is_inference_mode_enabled() || weight.Device.type != TorchSharp.DeviceType.CPU ||
                (bias is not null && (bias.dtype != dtype || bias.numel() != weight.OutFeatures || !bias.is_contiguous()))) return false;
            return weight switch
            {
                Int8Weight w => w.Codes.is_contiguous(),
                FourBitWeight w => Avx512BW.IsSupported && w.InFeatures % FourBitCodec.BlockSize == 0 && w.Packed.is_contiguous(),
                _ => false,
            };
        }

        public override unsafe void Multiply(nint x, nint y, int rows, bool brain, in DecodeScratch scratch)
        {
            if (weight is Int8Weight int8)
                Int8MatVec.MultiplyRows(x, brain, int8, y, rows, (float*)scratch.Floats, (short*)scratch.Shorts, (float*)scratch.Scales);
            else
                FourBitMatVec.MultiplyRows(x, brain, (FourBitWeight)weight, y, rows, (float*)scratch.Floats, (short*)scratch.Shorts,
                    (short*)scratch.MoreShorts, (float*)scratch.Scales);
            if (bias is null) return;
            var (b, rowBytes) = (DecodeLayerStack.Pointer(bias), OutFeatures * (brain ? 2 : 4));
            for (var r = 0; r < rows; r++) DecodeLayerStack.AddInPlace(y + (nint)(r * rowBytes), b, OutFeatures, brain);
        }
    }
}
