using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Quantization;

/// <summary>
/// LLM.int8's vector-wise weight quantization (bitsandbytes' <c>int8_vectorwise_quant</c> with no outlier threshold):
/// each output row keeps its absmax s (fp32) and q = round(w · (127 / s)) as int8, rounding half to even. The outlier
/// decomposition (fp16 columns above a threshold) is not done: a frozen base's weights are quantized, not activations.
/// </summary>
public static class Int8RowwiseCodec
{
    /// <summary>Quantizes an (out, in) weight (values as read in fp32).</summary>
    public static Int8Weight Quantize(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException($"expected an (out, in) weight, got {weight.dim()} dimensions");
        using var scope = NewDisposeScope();
        var w = weight.to(ScalarType.Float32);
        var rowAbsmax = w.abs().amax([1L]);                                                     // (out)
        // 127 / s as PyTorch evaluates it (reciprocal, then × 127); an all-zero row gets codes 0, not NaN.
        var scale = rowAbsmax.clamp_min(1e-38).reciprocal() * 127.0;
        var codes = (w * scale.unsqueeze(-1)).round().to(ScalarType.Int8);
        return new Int8Weight(codes.MoveToOuterDisposeScope(), rowAbsmax.MoveToOuterDisposeScope());
    }
}

/// <summary>An int8 weight with one fp32 absmax per output row: w ≈ q · s / 127.</summary>
public sealed class Int8Weight : QuantizedWeight
{
    internal Int8Weight(Tensor codes, Tensor rowAbsmax) : base(codes.shape[0], codes.shape[1])
    {
        Codes = codes.DetachFromDisposeScope();   // stored weights outlive the scope that quantized them
        RowAbsmax = rowAbsmax.DetachFromDisposeScope();
    }

    /// <summary>(out, in) int8 codes.</summary>
    public Tensor Codes { get; }

    /// <summary>(out) fp32 absmax per row.</summary>
    public Tensor RowAbsmax { get; }

    public override QuantizationType Type => QuantizationType.Int8;

    public override Device Device => Codes.device;

    public override IReadOnlyDictionary<string, Tensor> StoredTensors =>
        new Dictionary<string, Tensor> { ["weight"] = Codes, ["SCB"] = RowAbsmax };

    public override Tensor Dequantize(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        return (Codes.to(ScalarType.Float32) * (RowAbsmax / 127.0).unsqueeze(-1)).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// (x qᵀ) · s/127: the integer codes are exact in bf16/f16/f32, so the matmul runs on the codes and the row scale
    /// is applied to the output (LLM.int8's matmul dequantization), never building the scaled weight.
    /// </summary>
    public override Tensor MatmulTransposed(Tensor x)
    {
        if (Int8MatVec.Supports(x, this)) return Int8MatVec.Multiply(x, this);   // decoding on the CPU: no converted copy
        using var scope = NewDisposeScope();
        return (F.linear(x, Codes.to(x.dtype)) * (RowAbsmax / 127.0).to(x.dtype)).MoveToOuterDisposeScope();
    }

    public override Tensor BackwardInput(Tensor gradOutput)
    {
        using var scope = NewDisposeScope();
        return (gradOutput * (RowAbsmax / 127.0).to(gradOutput.dtype)).matmul(Codes.to(gradOutput.dtype)).MoveToOuterDisposeScope();
    }

    public override QuantizedWeight To(Device device) =>
        device.ToString() == Device.ToString() ? this : new Int8Weight(Codes.to(device), RowAbsmax.to(device));
}
