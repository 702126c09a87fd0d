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
    public static Int8Weight Quantize(Tensor weight) => Quantize(weight, FourBitCodec.ChunkElements);

    /// <summary>As above, whole rows of about <paramref name="chunkElements"/> elements at a time (bounded temporaries).</summary>
    internal static Int8Weight Quantize(Tensor weight, long chunkElements)
    {
        if (weight.dim() != 2) throw new ArgumentException($"expected an (out, in) weight, got {weight.dim()} dimensions");
        using var scope = NewDisposeScope();
        var (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1]);
        var codes = empty(outFeatures, inFeatures, ScalarType.Int8, device: weight.device);
        var rowAbsmax = empty(outFeatures, ScalarType.Float32, device: weight.device);
        var rowsPerChunk = Math.Max(1, chunkElements / Math.Max(1, inFeatures));
        for (long row = 0; row < outFeatures; row += rowsPerChunk)
        {
            using var chunkScope = NewDisposeScope();
            var rows = Math.Min(rowsPerChunk, outFeatures - row);
            var w = weight.narrow(0, row, rows).to(ScalarType.Float32);
            var absmax = w.abs().amax([1L]);                                                        // (rows)
            // 127 / s as PyTorch evaluates it (reciprocal, then × 127); an all-zero row gets codes 0, not NaN.
            var scale = absmax.clamp_min(1e-38).reciprocal() * 127.0;
            codes.narrow(0, row, rows).copy_((w * scale.unsqueeze(-1)).round().to(ScalarType.Int8));
            rowAbsmax.narrow(0, row, rows).copy_(absmax);
        }
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

    private Tensor? rowScales;   // the decode kernel's fp32 contiguous row absmax, made on first use

    /// <summary>The row absmax as the decode kernel reads it (fp32, contiguous): the stored tensor itself when it already is.</summary>
    internal Tensor RowAbsmaxFloat32()
    {
        if (rowScales is null)
        {
            using var scope = NewDisposeScope();
            using var normal = inference_mode(false);   // first read may be in a decode step; training reads it later
            rowScales = RowAbsmax.to(ScalarType.Float32).contiguous().alias().DetachFromDisposeScope();
        }
        return rowScales;
    }

    protected override void ReleaseCaches()
    {
        rowScales?.Dispose();
        rowScales = null;
    }

    public override Device Device => Codes.device;

    public override IReadOnlyDictionary<string, Tensor> StoredTensors =>
        new Dictionary<string, Tensor> { ["weight"] = Codes, ["SCB"] = RowAbsmax };

    public override Tensor Dequantize(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        // bitsandbytes' int8_vectorwise_dequant: (q · s) · 7.874015718698502e-3 (its fp32 1/127), in that order.
        return (Codes.to(ScalarType.Float32) * RowAbsmax.unsqueeze(-1) * 7.874015718698502e-3).to(dtype).MoveToOuterDisposeScope();
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
