using System.Buffers;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// What the integer decode kernels (<see cref="Int8MatVec"/>, <see cref="FourBitMatVec"/>) share around their inner
/// loops: each input row of x (…, in) read in its own dtype and rounded once to int16 on its own scale, and an output
/// (…, out) made directly in x's dtype (fp32 sums rounded as libtorch's conversion rounds), so a call makes no
/// converted copies of its input or output. A decode step calls these some fifty times for products of a few hundred
/// kilobytes, where every libtorch call (a conversion, a reshape, a copy) costs a visible share.
/// fp32 and bf16 inputs are read in place; fp16 goes through one conversion.
/// </summary>
internal sealed unsafe class DecodeKernelCall : IDisposable
{
    private readonly short[] quantized;
    private readonly float[]? widened;   // bf16 inputs as fp32
    private readonly float[] scales;
    private readonly Tensor? converted;
    private readonly ScalarType dtype;
    private readonly Tensor output;

    public DecodeKernelCall(Tensor x, long inFeatures, long outFeatures)
    {
        var shape = x.Sizes();
        Rows = (int)(x.numel() / inFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        dtype = x.dtype;
        // fp16 (and a non-contiguous input) is converted once; bf16 and fp32 are read where they are.
        converted = dtype is ScalarType.Float32 or ScalarType.BFloat16 ? (x.is_contiguous() ? null : x.contiguous()) : x.to(ScalarType.Float32).contiguous();
        var source = converted ?? x;
        var sourceDtype = source.dtype;
        shape[^1] = outFeatures;
        OutputDtype = dtype is ScalarType.Float32 or ScalarType.BFloat16 ? dtype : ScalarType.Float32;
        output = empty(shape, OutputDtype);
        var count = Rows * (int)inFeatures;
        quantized = ArrayPool<short>.Shared.Rent(count);   // scratch of every decode step: pooled
        widened = sourceDtype == ScalarType.BFloat16 ? ArrayPool<float>.Shared.Rent(count) : null;
        scales = ArrayPool<float>.Shared.Rent(Rows);
        fixed (byte* xs = source.bytes)
        fixed (float* wide = widened)
        fixed (short* xq = quantized)
        fixed (float* xScales = scales)
            QuantizeRows((nint)xs, sourceDtype == ScalarType.BFloat16, Rows, inFeatures, wide, xq, xScales);
    }

    /// <summary>
    /// Raw buffers: each of <paramref name="rows"/> input rows (bf16 when <paramref name="brain"/>, else fp32) rounded to
    /// int16 on its own scale; bf16 rows are widened into <paramref name="widened"/> first (rows·in fp32 values).
    /// </summary>
    internal static void QuantizeRows(nint x, bool brain, int rows, long inFeatures, float* widened, short* quantized, float* scales)
    {
        var rowsAsFloat = (float*)x;
        if (brain)
        {
            BFloat16Bits.Widen((ushort*)x, widened, rows * inFeatures);
            rowsAsFloat = widened;
        }
        for (var i = 0; i < rows; i++) scales[i] = Int8MatVec.RoundToInt16(rowsAsFloat + i * inFeatures, quantized + i * inFeatures, inFeatures);
    }

    public int Rows { get; }
    public long InFeatures { get; }
    public long OutFeatures { get; }

    /// <summary>The dtype the kernel writes (x's, or fp32 for an fp16 x, converted back by <see cref="Result"/>).</summary>
    public ScalarType OutputDtype { get; }

    /// <summary>Input row i rounded to int16 (InFeatures values).</summary>
    public Span<short> Quantized => quantized.AsSpan(0, Rows * (int)InFeatures);

    /// <summary>The factor that turns input row i's int16 values back into its own values.</summary>
    public ReadOnlySpan<float> Scales => scales.AsSpan(0, Rows);

    /// <summary>The output buffer the kernel writes through <see cref="Store"/>.</summary>
    public Tensor Output => output;

    /// <summary>Writes the fp32 sum for output element index in the output's dtype (bf16: rounded to nearest even).</summary>
    public static void Store(byte* y, bool brain, long index, float value)
    {
        if (brain) ((ushort*)y)[index] = BFloat16Bits.Round(value);
        else ((float*)y)[index] = value;
    }

    /// <summary>The product in x's dtype.</summary>
    public Tensor Result() => OutputDtype == dtype ? output : output.to(dtype);

    public void Dispose()
    {
        converted?.Dispose();
        ArrayPool<short>.Shared.Return(quantized);
        if (widened is not null) ArrayPool<float>.Shared.Return(widened);
        ArrayPool<float>.Shared.Return(scales);
    }
}
