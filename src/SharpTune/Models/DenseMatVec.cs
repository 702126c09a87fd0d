using System.Runtime.CompilerServices;
using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// y = x·Wᵀ + b for a handful of input rows (a decode step) against a bf16 or fp32 weight: a decode step is nothing
/// but weight streaming, and libtorch's matrix–vector products stream well below the memory bandwidth on this class of
/// CPU (measured with M's 219 MB of bf16 weights: 15–21 GB/s through libtorch, ~40 GB/s here; fp32 ~20 against ~60).
/// A bf16 weight is read as 16 (even, odd) pairs per 32-bit lane: a shift and a mask turn them into two fp32 vectors
/// exactly (bf16 is the top half of an fp32), multiplied with the inputs split the same way once per call and
/// accumulated in fp32; the sum is rounded to bf16 as libtorch rounds (to nearest, ties to even). Rows are read front
/// to back, one stream for the hardware prefetcher (four rows at a time measured slower), with software prefetches a few
/// rows ahead. Output rows are split over
/// <see cref="RowParallel"/>'s threads. CPU tensors on AVX-512 machines, input width a multiple of 32, at most
/// <see cref="Int8MatVec.MaxRows"/> input rows and no gradient recorded; everything else goes through libtorch.
/// </summary>
internal static class DenseMatVec
{
    private const int Lanes = 32;   // weights per 64-byte vector

    /// <summary>
    /// Rows ahead (<see cref="WeightPrefetch"/>) asked for within the dot product, two cache lines per step
    /// (<see cref="WeightPrefetch.Step"/>), so the requests are spread over the row.
    /// </summary>
    private const long PrefetchRows = WeightPrefetch.RowsAhead;

    /// <summary>
    /// Smaller weights stay with libtorch: a call here costs some microseconds before the first multiply (shape reads,
    /// the output, the hand-off), more than libtorch needs for a matrix of a few thousand weights (stories260K's).
    /// </summary>
    internal const long MinWeights = 1 << 16;

    /// <summary>The layer's output for x, through the kernel when it applies, else through the layer itself.</summary>
    public static Tensor Forward(nn.Module<Tensor, Tensor> layer, Tensor x) =>
        layer is Linear linear && TryMultiply(x, linear.weight!, linear.bias) is { } y ? y : layer.forward(x);

    /// <summary><c>F.linear(x, weight, bias)</c>, through the kernel when it applies.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null) =>
        TryMultiply(x, weight, bias) ?? TorchSharp.torch.nn.functional.linear(x, weight, bias);

    /// <summary>Whether the kernel serves products of weights of this dtype on this machine.</summary>
    public static bool Available(ScalarType dtype) =>
        Avx512F.IsSupported && InferenceShortcuts.Enabled && dtype is ScalarType.BFloat16 or ScalarType.Float32;

    /// <summary>x (…, in) → (…, out) in the weight's dtype, accumulated in fp32.</summary>
    public static Tensor Multiply(Tensor x, Tensor weight, Tensor? bias) =>
        TryMultiply(x, weight, bias) ?? throw new ArgumentException("the matrix–vector kernel does not serve these tensors", nameof(x));

    /// <summary>
    /// Whether the kernel multiplies activations of <paramref name="dtype"/> by this weight (and bias): same dtype, on the
    /// CPU, contiguous, an input width of whole vectors and enough weights to be worth the call.
    /// </summary>
    internal static bool Serves(Tensor weight, Tensor? bias, ScalarType dtype) =>
        ServesBuffers(weight, bias, dtype) && weight.size(1) % Lanes == 0 && weight.size(0) * weight.size(1) >= MinWeights;

    /// <summary>
    /// x·wᵀ + b through the kernel, or null when it does not apply. Shapes are read once: each read is a native call
    /// that allocates, and this runs some fifty times a decode step.
    /// </summary>
    private static Tensor? TryMultiply(Tensor x, Tensor weight, Tensor? bias)
    {
        if (!InferenceShortcuts.ForCpuKernel(x) || !Serves(weight, bias, x.dtype)) return null;
        var (outFeatures, inFeatures) = (weight.size(0), weight.size(1));
        var shape = x.Sizes();
        var rows = 1L;
        for (var d = 0; d < shape.Length - 1; d++) rows *= shape[d];
        if (shape[^1] != inFeatures || rows > Int8MatVec.MaxRows) return null;
        shape[^1] = outFeatures;
        var brain = weight.dtype == ScalarType.BFloat16;
        var count = (int)rows;
        var output = empty(shape, weight.dtype);
        using var input = x.is_contiguous() ? null : x.contiguous();
        var split = brain ? ArrayPool<float>.Shared.Rent(count * (int)inFeatures) : null;
        try
        {
            unsafe
            {
                fixed (byte* xs = (input ?? x).bytes)
                fixed (float* sp = split)
                fixed (byte* ws = weight.bytes)
                fixed (byte* ys = output.bytes)
                fixed (byte* bp = bias is null ? default : bias.bytes)
                    MultiplyRows((nint)xs, (nint)ws, (nint)bp, (nint)ys, inFeatures, outFeatures, count, brain, sp);
            }
        }
        finally
        {
            if (split is not null) ArrayPool<float>.Shared.Return(split);
        }
        return output;
    }

    /// <summary>
    /// y (rows, out) = x (rows, in)·wᵀ + b over raw buffers, all in the weight's dtype (bf16 when <paramref name="brain"/>,
    /// else fp32); b may be 0. bf16 inputs are first split into <paramref name="split"/> (rows·in fp32 values; unused for
    /// fp32). The caller has checked what <see cref="ServesBuffers"/> checks. Products below <see cref="MinWeights"/> run on
    /// the calling thread: handing a few thousand multiply–adds to a helper costs more than it saves.
    /// </summary>
    internal static unsafe void MultiplyRows(nint x, nint weight, nint bias, nint y, long inFeatures, long outFeatures, int rows, bool brain,
        float* split)
    {
        var small = inFeatures * outFeatures < MinWeights;
        if (brain)
        {
            SplitPairs((uint*)x, split, rows * inFeatures);
            var s = (nint)split;
            if (small) BrainRows((uint*)weight, split, (ushort*)bias, (ushort*)y, inFeatures, outFeatures, rows, 0, outFeatures);
            else
                RowParallel.For(outFeatures, (from, to) =>
                    BrainRows((uint*)weight, (float*)s, (ushort*)bias, (ushort*)y, inFeatures, outFeatures, rows, from, to));
        }
        else if (small) SmallRows((float*)weight, (float*)x, (float*)bias, (float*)y, inFeatures, outFeatures, rows);
        else
            RowParallel.For(outFeatures, (from, to) =>
                SingleRows((float*)weight, (float*)x, (float*)bias, (float*)y, inFeatures, outFeatures, rows, from, to));
    }

    /// <summary>
    /// Whether <see cref="MultiplyRows"/> serves this weight (and bias) for activations of <paramref name="dtype"/> at any
    /// size: a caller with no tensor to allocate per product (<see cref="DecodeLayerStack"/>) gains even on small ones.
    /// fp32 rows of any width (the last few weights of a row are added one by one), bf16 rows of whole vectors.
    /// </summary>
    internal static bool ServesBuffers(Tensor weight, Tensor? bias, ScalarType dtype)
    {
        if (weight.dtype != dtype || (bias is not null && bias.dtype != dtype) || !Available(dtype) ||
            weight.device_type != TorchSharp.DeviceType.CPU || weight.dim() != 2) return false;
        var (outFeatures, inFeatures) = (weight.size(0), weight.size(1));
        return (dtype == ScalarType.Float32 || inFeatures % Lanes == 0) && weight.is_contiguous() &&
               (bias is null || (bias.numel() == outFeatures && bias.is_contiguous()));
    }

    private static unsafe void SingleRows(float* weights, float* x, float* bias, float* y, long inFeatures, long outFeatures, int rows,
        long from, long to)
    {
        var ahead = PrefetchRows * inFeatures;
        var end = weights + to * inFeatures;
        var whole = inFeatures / Lanes * Lanes;
        // Output by output, every input row against it: a weight row comes from memory once a step however many input
        // rows there are (from L1 for the others); four input rows per pass over it, each with the accumulators and order
        // a row alone gets.
        for (var r = from; r < to; r++)
        {
            var w = weights + r * inFeatures;
            var i = 0;
            for (; i + 4 <= rows; i += 4)
            {
                float* x0 = x + i * inFeatures, x1 = x0 + inFeatures, x2 = x1 + inFeatures, x3 = x2 + inFeatures;
                var stop = i == 0 ? end : weights;
                Vector512<float> a00 = Vector512<float>.Zero, a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
                for (long j = 0; j < whole; j += Lanes)
                {
                    WeightPrefetch.Step((byte*)(w + j + ahead), (byte*)stop);
                    var (v0, v1) = (Avx512F.LoadVector512(w + j), Avx512F.LoadVector512(w + j + 16));
                    a00 = Avx512F.FusedMultiplyAdd(v0, Avx512F.LoadVector512(x0 + j), a00);
                    a01 = Avx512F.FusedMultiplyAdd(v1, Avx512F.LoadVector512(x0 + j + 16), a01);
                    a10 = Avx512F.FusedMultiplyAdd(v0, Avx512F.LoadVector512(x1 + j), a10);
                    a11 = Avx512F.FusedMultiplyAdd(v1, Avx512F.LoadVector512(x1 + j + 16), a11);
                    a20 = Avx512F.FusedMultiplyAdd(v0, Avx512F.LoadVector512(x2 + j), a20);
                    a21 = Avx512F.FusedMultiplyAdd(v1, Avx512F.LoadVector512(x2 + j + 16), a21);
                    a30 = Avx512F.FusedMultiplyAdd(v0, Avx512F.LoadVector512(x3 + j), a30);
                    a31 = Avx512F.FusedMultiplyAdd(v1, Avx512F.LoadVector512(x3 + j + 16), a31);
                }
                var sums = (Vector512.Sum(a00 + a01), Vector512.Sum(a10 + a11), Vector512.Sum(a20 + a21), Vector512.Sum(a30 + a31));
                for (var j = whole; j < inFeatures; j++)   // rows of any width
                    sums = (MathF.FusedMultiplyAdd(w[j], x0[j], sums.Item1), MathF.FusedMultiplyAdd(w[j], x1[j], sums.Item2),
                        MathF.FusedMultiplyAdd(w[j], x2[j], sums.Item3), MathF.FusedMultiplyAdd(w[j], x3[j], sums.Item4));
                var b = bias == null ? 0f : bias[r];
                (y[i * outFeatures + r], y[(i + 1) * outFeatures + r], y[(i + 2) * outFeatures + r], y[(i + 3) * outFeatures + r]) =
                    (sums.Item1 + b, sums.Item2 + b, sums.Item3 + b, sums.Item4 + b);
            }
            for (; i < rows; i++)
            {
                var xs = x + i * inFeatures;
                var stop = i == 0 ? end : weights;   // the first row's pass asks for the rows ahead; the others need not
                Vector512<float> a0 = Vector512<float>.Zero, a1 = a0;
                for (long j = 0; j < whole; j += Lanes)
                {
                    WeightPrefetch.Step((byte*)(w + j + ahead), (byte*)stop);
                    a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + j), Avx512F.LoadVector512(xs + j), a0);
                    a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + j + 16), Avx512F.LoadVector512(xs + j + 16), a1);
                }
                var sum = Vector512.Sum(a0 + a1);
                for (var j = whole; j < inFeatures; j++) sum = MathF.FusedMultiplyAdd(w[j], xs[j], sum);   // rows of any width
                y[i * outFeatures + r] = sum + (bias == null ? 0f : bias[r]);
            }
        }
    }

    /// <summary>
    /// fp32 products below <see cref="MinWeights"/> (a small model's, all in the cache): four outputs at a time, their
    /// four accumulators summed across lanes together (two levels of in-lane shuffles, then the four 128-bit lanes), where
    /// one output at a time spent more on its horizontal sum than on its multiply–adds at 64 inputs. The last few inputs of
    /// a row of any width are one masked vector (one by one, they were a chain of dependent multiply–adds per output that
    /// cost more than the rest of the row at stories260K's 172); outputs past the last group of four go through
    /// <see cref="SingleRows"/>.
    /// </summary>
    private static unsafe void SmallRows(float* weights, float* x, float* bias, float* y, long inFeatures, long outFeatures, int rows)
    {
        var whole = inFeatures / 16 * 16;
        var tail = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create((int)(inFeatures - whole))).AsSingle();
        var zero = Vector512<float>.Zero;
        var i = 0;
        // Four rows at a time (a batch's step, a prompt's tokens): each weight vector loaded once for the four, which turns
        // a load per multiply–add into half a load. Each output's sum is the one a row alone gets, in the same order.
        for (; i + 4 <= rows; i += 4)
        {
            float* x0 = x + i * inFeatures, x1 = x0 + inFeatures, x2 = x1 + inFeatures, x3 = x2 + inFeatures;
            long r = 0;
            for (; r + 4 <= outFeatures; r += 4)
            {
                float* w0 = weights + r * inFeatures, w1 = w0 + inFeatures, w2 = w1 + inFeatures, w3 = w2 + inFeatures;
                Vector512<float> c00 = zero, c01 = zero, c02 = zero, c03 = zero, c10 = zero, c11 = zero, c12 = zero, c13 = zero,
                    c20 = zero, c21 = zero, c22 = zero, c23 = zero, c30 = zero, c31 = zero, c32 = zero, c33 = zero;
                for (long j = 0; j < inFeatures; j += 16)
                {
                    var masked = j == whole;   // the last few inputs of a row that is not whole vectors
                    var v0 = masked ? Avx512F.MaskLoad(w0 + j, tail, zero) : Avx512F.LoadVector512(w0 + j);
                    var v1 = masked ? Avx512F.MaskLoad(w1 + j, tail, zero) : Avx512F.LoadVector512(w1 + j);
                    var v2 = masked ? Avx512F.MaskLoad(w2 + j, tail, zero) : Avx512F.LoadVector512(w2 + j);
                    var v3 = masked ? Avx512F.MaskLoad(w3 + j, tail, zero) : Avx512F.LoadVector512(w3 + j);
                    var input = masked ? Avx512F.MaskLoad(x0 + j, tail, zero) : Avx512F.LoadVector512(x0 + j);
                    (c00, c01, c02, c03) = (Avx512F.FusedMultiplyAdd(v0, input, c00), Avx512F.FusedMultiplyAdd(v1, input, c01),
                        Avx512F.FusedMultiplyAdd(v2, input, c02), Avx512F.FusedMultiplyAdd(v3, input, c03));
                    input = masked ? Avx512F.MaskLoad(x1 + j, tail, zero) : Avx512F.LoadVector512(x1 + j);
                    (c10, c11, c12, c13) = (Avx512F.FusedMultiplyAdd(v0, input, c10), Avx512F.FusedMultiplyAdd(v1, input, c11),
                        Avx512F.FusedMultiplyAdd(v2, input, c12), Avx512F.FusedMultiplyAdd(v3, input, c13));
                    input = masked ? Avx512F.MaskLoad(x2 + j, tail, zero) : Avx512F.LoadVector512(x2 + j);
                    (c20, c21, c22, c23) = (Avx512F.FusedMultiplyAdd(v0, input, c20), Avx512F.FusedMultiplyAdd(v1, input, c21),
                        Avx512F.FusedMultiplyAdd(v2, input, c22), Avx512F.FusedMultiplyAdd(v3, input, c23));
                    input = masked ? Avx512F.MaskLoad(x3 + j, tail, zero) : Avx512F.LoadVector512(x3 + j);
                    (c30, c31, c32, c33) = (Avx512F.FusedMultiplyAdd(v0, input, c30), Avx512F.FusedMultiplyAdd(v1, input, c31),
                        Avx512F.FusedMultiplyAdd(v2, input, c32), Avx512F.FusedMultiplyAdd(v3, input, c33));
                }
                StoreFour(y + i * outFeatures + r, SumFour(c00, c01, c02, c03), bias, r);
                StoreFour(y + (i + 1) * outFeatures + r, SumFour(c10, c11, c12, c13), bias, r);
                StoreFour(y + (i + 2) * outFeatures + r, SumFour(c20, c21, c22, c23), bias, r);
                StoreFour(y + (i + 3) * outFeatures + r, SumFour(c30, c31, c32, c33), bias, r);
            }
            if (r < outFeatures)   // the last 1–3 outputs
                for (var k = 0; k < 4; k++)
                    SingleRows(weights, x + (i + k) * inFeatures, bias, y + (i + k) * outFeatures, inFeatures, outFeatures, 1, r, outFeatures);
        }
        for (; i < rows; i++)
        {
            var xs = x + i * inFeatures;
            var ys = y + i * outFeatures;
            long r = 0;
            for (; r + 4 <= outFeatures; r += 4)
            {
                float* w0 = weights + r * inFeatures, w1 = w0 + inFeatures, w2 = w1 + inFeatures, w3 = w2 + inFeatures;
                Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                for (long j = 0; j < whole; j += 16)
                {
                    var input = Avx512F.LoadVector512(xs + j);
                    a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w0 + j), input, a0);
                    a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w1 + j), input, a1);
                    a2 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w2 + j), input, a2);
                    a3 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w3 + j), input, a3);
                }
                if (whole < inFeatures)
                {
                    var input = Avx512F.MaskLoad(xs + whole, tail, zero);
                    a0 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(w0 + whole, tail, zero), input, a0);
                    a1 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(w1 + whole, tail, zero), input, a1);
                    a2 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(w2 + whole, tail, zero), input, a2);
                    a3 = Avx512F.FusedMultiplyAdd(Avx512F.MaskLoad(w3 + whole, tail, zero), input, a3);
                }
                StoreFour(ys + r, SumFour(a0, a1, a2, a3), bias, r);
            }
            if (r < outFeatures) SingleRows(weights, xs, bias, ys, inFeatures, outFeatures, 1, r, outFeatures);   // the last 1–3
        }
    }

    /// <summary>The four accumulators' sums across lanes, together: two levels of in-lane shuffles, then the four 128-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> SumFour(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        var pairs01 = Avx512F.Shuffle(a0, a1, 0x44) + Avx512F.Shuffle(a0, a1, 0xEE);   // lane: a0, a1 pair sums
        var pairs23 = Avx512F.Shuffle(a2, a3, 0x44) + Avx512F.Shuffle(a2, a3, 0xEE);
        var lanes = Avx512F.Shuffle(pairs01, pairs23, 0x88) + Avx512F.Shuffle(pairs01, pairs23, 0xDD);   // lane: 4 sums
        var halves = lanes.GetLower() + lanes.GetUpper();
        return halves.GetLower() + halves.GetUpper();                                  // (a0, a1, a2, a3) summed
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreFour(float* ys, Vector128<float> sums, float* bias, long r)
    {
        for (var k = 0; k < 4; k++) ys[k] = sums.GetElement(k) + (bias == null ? 0f : bias[r + k]);
    }

    /// <summary>
    /// bf16 inputs → fp32, each block of 32 stored as its 16 even elements then its 16 odd ones (the order the kernel
    /// takes them out of a weight vector).
    /// </summary>
    private static unsafe void SplitPairs(uint* pairs, float* split, long count)
    {
        var mask = Vector512.Create(0xFFFF0000u);
        for (long j = 0; j < count; j += Lanes)
        {
            var v = Avx512F.LoadVector512(pairs + j / 2);
            Avx512F.Store(split + j, Avx512F.ShiftLeftLogical(v, 16).AsSingle());
            Avx512F.Store(split + j + 16, Avx512F.And(v, mask).AsSingle());
        }
    }

    private static unsafe void BrainRows(uint* weights, float* x, ushort* bias, ushort* y, long inFeatures, long outFeatures, int rows,
        long from, long to)
    {
        var rowWords = inFeatures / 2;
        var end = weights + to * rowWords;
        // Output by output, as SingleRows: each weight row read from memory once for all input rows, four input rows per
        // pass over it (its bf16 words widened once for the four), the rows ahead asked for by the first pass only.
        var ahead = PrefetchRows * rowWords;
        for (var r = from; r < to; r++)
        {
            var w = weights + r * rowWords;
            var i = 0;
            for (; i + 4 <= rows; i += 4)
            {
                var sums = DotFour(w, x + i * inFeatures, inFeatures, ahead, i == 0 ? end : weights);
                for (var k = 0; k < 4; k++) y[(i + k) * outFeatures + r] = Round(sums.GetElement(k), bias, r);
            }
            for (; i < rows; i++)
                y[i * outFeatures + r] = Round(Dot(w, x + i * inFeatures, inFeatures, ahead, i == 0 ? end : weights), bias, r);
        }
    }

    /// <summary>
    /// One row's dot product with the split inputs, read front to back (one stream for the hardware prefetcher), asking
    /// for the row <see cref="PrefetchRows"/> ahead as it goes (up to <paramref name="end"/>, this thread's last row).
    /// </summary>
    private static unsafe float Dot(uint* w, float* x, long n, long ahead, uint* end)
    {
        var mask = Vector512.Create(0xFFFF0000u);
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        long j = 0;
        for (; j + 2 * Lanes <= n; j += 2 * Lanes)
        {
            WeightPrefetch.Step((byte*)(w + j / 2 + ahead), (byte*)end);
            var v0 = Avx512F.LoadVector512(w + j / 2);
            var v1 = Avx512F.LoadVector512(w + j / 2 + 16);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(v0, 16).AsSingle(), Avx512F.LoadVector512(x + j), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.And(v0, mask).AsSingle(), Avx512F.LoadVector512(x + j + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(v1, 16).AsSingle(), Avx512F.LoadVector512(x + j + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(Avx512F.And(v1, mask).AsSingle(), Avx512F.LoadVector512(x + j + 48), a3);
        }
        for (; j < n; j += Lanes)
        {
            var v = Avx512F.LoadVector512(w + j / 2);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(v, 16).AsSingle(), Avx512F.LoadVector512(x + j), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.And(v, mask).AsSingle(), Avx512F.LoadVector512(x + j + 16), a1);
        }
        return Vector512.Sum((a0 + a1) + (a2 + a3));
    }

    /// <summary>
    /// <see cref="Dot"/> of one weight row with four consecutive split input rows (<paramref name="x"/>, n apart): each
    /// weight vector widened once for the four, each row's sum made exactly as <see cref="Dot"/> makes it (the same four
    /// accumulators, the same order), so a row's output does not depend on the rows beside it.
    /// </summary>
    private static unsafe Vector128<float> DotFour(uint* w, float* x, long n, long ahead, uint* end)
    {
        var mask = Vector512.Create(0xFFFF0000u);
        float* x0 = x, x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        Vector512<float> a00 = Vector512<float>.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
            a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        long j = 0;
        for (; j + 2 * Lanes <= n; j += 2 * Lanes)
        {
            WeightPrefetch.Step((byte*)(w + j / 2 + ahead), (byte*)end);
            var v0 = Avx512F.LoadVector512(w + j / 2);
            var v1 = Avx512F.LoadVector512(w + j / 2 + 16);
            var (e0, o0, e1, o1) = (Avx512F.ShiftLeftLogical(v0, 16).AsSingle(), Avx512F.And(v0, mask).AsSingle(),
                Avx512F.ShiftLeftLogical(v1, 16).AsSingle(), Avx512F.And(v1, mask).AsSingle());
            a00 = Avx512F.FusedMultiplyAdd(e0, Avx512F.LoadVector512(x0 + j), a00);
            a01 = Avx512F.FusedMultiplyAdd(o0, Avx512F.LoadVector512(x0 + j + 16), a01);
            a02 = Avx512F.FusedMultiplyAdd(e1, Avx512F.LoadVector512(x0 + j + 32), a02);
            a03 = Avx512F.FusedMultiplyAdd(o1, Avx512F.LoadVector512(x0 + j + 48), a03);
            a10 = Avx512F.FusedMultiplyAdd(e0, Avx512F.LoadVector512(x1 + j), a10);
            a11 = Avx512F.FusedMultiplyAdd(o0, Avx512F.LoadVector512(x1 + j + 16), a11);
            a12 = Avx512F.FusedMultiplyAdd(e1, Avx512F.LoadVector512(x1 + j + 32), a12);
            a13 = Avx512F.FusedMultiplyAdd(o1, Avx512F.LoadVector512(x1 + j + 48), a13);
            a20 = Avx512F.FusedMultiplyAdd(e0, Avx512F.LoadVector512(x2 + j), a20);
            a21 = Avx512F.FusedMultiplyAdd(o0, Avx512F.LoadVector512(x2 + j + 16), a21);
            a22 = Avx512F.FusedMultiplyAdd(e1, Avx512F.LoadVector512(x2 + j + 32), a22);
            a23 = Avx512F.FusedMultiplyAdd(o1, Avx512F.LoadVector512(x2 + j + 48), a23);
            a30 = Avx512F.FusedMultiplyAdd(e0, Avx512F.LoadVector512(x3 + j), a30);
            a31 = Avx512F.FusedMultiplyAdd(o0, Avx512F.LoadVector512(x3 + j + 16), a31);
            a32 = Avx512F.FusedMultiplyAdd(e1, Avx512F.LoadVector512(x3 + j + 32), a32);
            a33 = Avx512F.FusedMultiplyAdd(o1, Avx512F.LoadVector512(x3 + j + 48), a33);
        }
        for (; j < n; j += Lanes)
        {
            var v = Avx512F.LoadVector512(w + j / 2);
            var (even, odd) = (Avx512F.ShiftLeftLogical(v, 16).AsSingle(), Avx512F.And(v, mask).AsSingle());
            a00 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x0 + j), a00);
            a01 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x0 + j + 16), a01);
            a10 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x1 + j), a10);
            a11 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x1 + j + 16), a11);
            a20 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x2 + j), a20);
            a21 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x2 + j + 16), a21);
            a30 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x3 + j), a30);
            a31 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x3 + j + 16), a31);
        }
        return Vector128.Create(Vector512.Sum((a00 + a01) + (a02 + a03)), Vector512.Sum((a10 + a11) + (a12 + a13)),
            Vector512.Sum((a20 + a21) + (a22 + a23)), Vector512.Sum((a30 + a31) + (a32 + a33)));
    }

    /// <summary>fp32 sum (+ bf16 bias, added in fp32 as libtorch's addmm does) → bf16.</summary>
    private static unsafe ushort Round(float sum, ushort* bias, long r) =>
        BFloat16Bits.Round(bias == null ? sum : sum + BFloat16Bits.ToSingle(bias[r]));
}
