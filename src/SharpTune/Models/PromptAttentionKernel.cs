using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Attention of a block of queries without gradients on the CPU (a prompt's prefill, evaluation): q (B, nh, T, hd), the
/// last T of S positions, against k and v (B, nkv, S, hd) → (B, T, nh·hd). Causal when no mask is given (query t sees
/// keys up to S − T + t); otherwise the (B or 1, 1, T, S) boolean mask alone decides. The same arithmetic as
/// <see cref="SingleQueryAttentionKernel"/> for each query: scale·q·k accumulated in fp32, a softmax in fp32, the
/// weighted sum of values in fp32 rounded once to the activations' dtype; a query whose keys are all hidden gets zeros.
/// <para>
/// libtorch's flash kernel runs this through small GEMM calls per block of queries: on M's prefill (bf16, 12 heads of
/// 64, 128 tokens) it took ~0.9 ms a layer, 17 % of the prefill, for ~50 MFLOP. Here each (row, kv head) pair widens its
/// keys once into a transposed fp32 block and its values into fp32 rows, then takes four queries at a time: their
/// scores for 32 keys come from two key vectors and four broadcast query values per dimension (the keys of a block
/// are read once for four queries), and their weighted sums from one read of each value row.
/// </para>
/// AVX-512 CPUs, fp32 or bf16 tensors, head sizes that are multiples of 16; no soft-capping (Gemma 2).
/// </summary>
internal static class PromptAttentionKernel
{
    // The loops below are compiled fully optimised at once ([AggressiveOptimization]): a one-shot prompt calls them once
    // a layer, and their first, unoptimised compilation ran the attention of M's 128-token prompt in ~3.4 ms a layer
    // where the optimised code takes ~0.4 ms.

    /// <summary>Queries computed together (each key block and value row is read once for all of them).</summary>
    private const int QueryBlock = 4;

    /// <summary>Keys per score block: two vectors.</summary>
    private const int KeyBlock = 32;

    [ThreadStatic] private static long calls;

    /// <summary>Attentions this thread computed here so far (tests check which path ran).</summary>
    internal static long CallsOnThisThread => calls;

    /// <summary>Longest key sequence served: a pair's widened keys and values take 2·S·hd floats of scratch.</summary>
    private const int MaxKeys = 8192;

    /// <summary>
    /// The attention output (B, T, nh·hd), or null when the kernel does not apply (then nothing was computed and the
    /// caller runs libtorch's). Each key and value must be contiguous (any batch, head and position strides: views of a
    /// KV cache or of a fused projection's heads are read in place).
    /// </summary>
    public static Tensor? TryCompute(Tensor q, Tensor k, Tensor v, Tensor? mask, AttentionSettings settings)
    {
        var dtype = q.dtype;
        if (!Avx512F.IsSupported || dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || k.dtype != dtype || v.dtype != dtype ||
            settings.SoftCap is not null || !InferenceShortcuts.ForCpuKernel(q) || q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return null;
        var (batch, heads, queries, headDim) = (q.size(0), q.size(1), q.size(2), q.size(3));
        var (kvHeads, keys) = (k.size(1), k.size(2));
        if (queries < 2 || keys < queries || keys > MaxKeys || headDim % 16 != 0 || kvHeads == 0 || heads % kvHeads != 0 ||
            k.size(0) != batch || v.size(0) != batch || v.size(1) != kvHeads || v.size(2) != keys || k.size(3) != headDim ||
            v.size(3) != headDim || k.stride(3) != 1 || v.stride(3) != 1) return null;
        if (mask is not null && (mask.dtype != ScalarType.Bool || mask.dim() != 4 || (mask.size(0) != batch && mask.size(0) != 1) ||
            mask.size(1) != 1 || mask.size(2) != queries || mask.size(3) != keys)) return null;

        using var scope = NewDisposeScope();
        var qc = q.contiguous();
        var maskBytes = mask?.contiguous();
        var output = empty([batch, queries, heads * headDim], dtype);
        var job = new Job(DecodeLayerStack.Pointer(qc),
            DecodeLayerStack.ViewStart(k), k.stride(0), k.stride(1), k.stride(2),
            DecodeLayerStack.ViewStart(v), v.stride(0), v.stride(1), v.stride(2),
            maskBytes is null ? 0 : DecodeLayerStack.Pointer(maskBytes), maskBytes is null || maskBytes.size(0) == 1 ? 0 : queries * keys,
            DecodeLayerStack.Pointer(output), dtype == ScalarType.BFloat16, (int)batch, (int)headDim, (int)heads, (int)kvHeads,
            (int)queries, (int)keys, (float)(settings.Scale ?? 1.0 / Math.Sqrt(headDim)));
        // On the calling thread: libtorch's OpenMP workers are still spinning from the product before, and a helper of our
        // own (RowParallel) spins on after its share, taking the core the next product's workers need. Measured on M's
        // prefill, alternate prompts in one process: the attention took 5.3–5.7 ms on one thread against 6.2–7.4 ms on
        // two, whose products after it ran up to 2 ms slower; libtorch's flash kernel took 8.4–8.9 ms.
        Run(job);
        calls++;
        GC.KeepAlive(qc);
        GC.KeepAlive(maskBytes);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Raw buffers and sizes (strides in elements; q and the output contiguous).</summary>
    private readonly record struct Job(nint Queries,
        nint Keys, long KeyBatchStride, long KeyHeadStride, long KeyRowStride,
        nint Values, long ValueBatchStride, long ValueHeadStride, long ValueRowStride,
        nint Mask, long MaskBatchStride,
        nint Output, bool Brain, int Batch, int HeadDim, int Heads, int KvHeads, int QueryCount, int KeyCount, float Scale);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Run(Job job)
    {
        var hd = job.HeadDim;
        var span = (job.KeyCount + KeyBlock - 1) / KeyBlock * KeyBlock;   // keys rounded up to whole score blocks
        var group = job.Heads / job.KvHeads;
        var transposed = ArrayPool<float>.Shared.Rent(hd * span);
        var values = ArrayPool<float>.Shared.Rent(job.KeyCount * hd);
        var scores = ArrayPool<float>.Shared.Rent(QueryBlock * span);
        var scaled = ArrayPool<float>.Shared.Rent(QueryBlock * hd);
        try
        {
            fixed (float* kt = transposed)
            fixed (float* vs = values)
            fixed (float* score = scores)
            fixed (float* query = scaled)
            {
                for (var pair = 0; pair < job.Batch * job.KvHeads; pair++)
                {
                    var (b, kvHead) = ((long)(pair / job.KvHeads), (long)(pair % job.KvHeads));
                    TransposeKeys(job, b * job.KeyBatchStride + kvHead * job.KeyHeadStride, kt, span, vs);
                    WidenRows(job.Values, b * job.ValueBatchStride + kvHead * job.ValueHeadStride, job.ValueRowStride, job.KeyCount, hd,
                        job.Brain, vs);
                    for (var g = 0; g < group; g++)
                        for (var t0 = 0; t0 < job.QueryCount; t0 += QueryBlock)
                            Block(job, (int)b, (int)kvHead * group + g, t0, kt, span, vs, score, query);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(transposed);
            ArrayPool<float>.Shared.Return(values);
            ArrayPool<float>.Shared.Return(scores);
            ArrayPool<float>.Shared.Return(scaled);
        }
    }

    /// <summary>
    /// kt[d·span + s] = k_s[d] in fp32, zeros for the padding keys up to <paramref name="span"/>: the keys widened into
    /// <paramref name="rows"/> first, then 8 keys' values of each dimension gathered at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void TransposeKeys(in Job job, long element, float* kt, int span, float* rows)
    {
        var hd = job.HeadDim;
        var count = job.KeyCount;
        WidenRows(job.Keys, element, job.KeyRowStride, count, hd, job.Brain, rows);
        var offsets = Vector256<int>.Indices * Vector256.Create(hd);
        for (var s = 0; s < span; s += 8)
        {
            // Lanes past the keys are masked (gathers read nothing there) and come out zero.
            var present = Vector256.LessThan(Vector256<int>.Indices + Vector256.Create(s), Vector256.Create(count)).AsSingle();
            var start = rows + (long)Math.Min(s, count - 1) * hd;
            for (var d = 0; d < hd; d++)
                Avx.Store(kt + (long)d * span + s, Avx2.GatherMaskVector256(Vector256<float>.Zero, start + d, offsets, present, 4));
        }
    }

    /// <summary>
    /// <paramref name="count"/> rows of <paramref name="hd"/> values, <paramref name="stride"/> elements apart, into
    /// contiguous fp32.
    /// </summary>
    private static unsafe void WidenRows(nint source, long element, long stride, int count, int hd, bool brain, float* target)
    {
        if (stride == hd)
        {
            BFloat16Bits.Widen(source, element, target, (long)count * hd, brain);
            return;
        }
        for (var s = 0; s < count; s++) BFloat16Bits.Widen(source, element + s * stride, target + (long)s * hd, hd, brain);
    }

    /// <summary>
    /// Queries t0 … t0 + 3 of one row and query head (a last block of fewer repeats its last query and stores only the
    /// real ones): scores, softmax and weighted values into the output.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Block(in Job job, int b, int head, int t0, float* kt, int span, float* values, float* score, float* query)
    {
        var hd = job.HeadDim;
        var offset = job.KeyCount - job.QueryCount;
        var ends = stackalloc int[QueryBlock];
        var end = 0;
        for (var i = 0; i < QueryBlock; i++)
        {
            var t = Math.Min(t0 + i, job.QueryCount - 1);
            ends[i] = job.Mask == 0 ? offset + t + 1 : job.KeyCount;
            end = Math.Max(end, ends[i]);
            BFloat16Bits.Widen(job.Queries, ((long)(b * job.Heads + head) * job.QueryCount + t) * hd, query + i * hd, hd, job.Brain);
            for (var d = 0; d < hd; d += 16)
                Avx512F.Store(query + i * hd + d, Avx512F.LoadVector512(query + i * hd + d) * Vector512.Create(job.Scale));
        }
        var blocks = (end + KeyBlock - 1) / KeyBlock * KeyBlock;
        Scores(kt, span, query, hd, blocks, score);
        var inverse = stackalloc float[QueryBlock];
        for (var i = 0; i < QueryBlock; i++)
        {
            var t = Math.Min(t0 + i, job.QueryCount - 1);
            var row = score + i * span;
            var mask = job.Mask == 0 ? null : (byte*)job.Mask + b * job.MaskBatchStride + (long)t * job.KeyCount;
            var max = Hide(row, ends[i], blocks, mask, job.KeyCount);
            if (float.IsNegativeInfinity(max))
            {
                new Span<float>(row, blocks).Clear();   // every key hidden: zeros, as the single-query kernel gives
                inverse[i] = 0f;
                continue;
            }
            var total = SingleQueryAttentionKernel.Exponentiate(row, blocks, max);
            inverse[i] = total > 0 ? 1f / total : 0f;
        }
        var keys = Math.Min(blocks, job.KeyCount);   // weights past the keys are 0
        var c = 0;
        for (; c + 64 <= hd; c += 64) WeighFour(job, b, head, t0, values, c, keys, score, span, inverse);
        for (; c < hd; c += 16) Weigh(job, b, head, t0, values, c, keys, score, span, inverse);
    }

    /// <summary>
    /// Scores from <paramref name="end"/> on, and those the mask hides, become −∞ (16 at a time); returns the largest
    /// of the first <paramref name="blocks"/>. The mask row has <paramref name="keyCount"/> entries.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Hide(float* row, int end, int blocks, byte* mask, int keyCount)
    {
        var hidden = Vector512.Create(float.NegativeInfinity);
        var largest = hidden;
        for (var s = 0; s < blocks; s += 16)
        {
            var scores = Avx512F.LoadVector512(row + s);
            var keep = Vector512.LessThan(Vector512<int>.Indices + Vector512.Create(s), Vector512.Create(end)).AsSingle();
            if (mask != null)
            {
                var left = keyCount - s;
                // A last block of fewer mask entries is read through a masked load: nothing past the row's end.
                var entries = left >= 16 ? Sse2.LoadVector128(mask + s)
                    : left > 0 ? Avx512BW.VL.MaskLoad(mask + s, Vector128.LessThan(Vector128<byte>.Indices, Vector128.Create((byte)left)), Vector128<byte>.Zero)
                    : Vector128<byte>.Zero;
                var visible = Avx512F.ConvertToVector512Int32(entries);
                keep &= ~Vector512.Equals(visible, Vector512<int>.Zero).AsSingle();
            }
            scores = Vector512.ConditionalSelect(keep, scores, hidden);
            Avx512F.Store(row + s, scores);
            largest = Avx512F.Max(largest, scores);
        }
        return HorizontalMax(largest);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector512<float> v)
    {
        var m = Avx512F.Max(v.GetLower(), v.GetUpper());
        var n = Avx.Max(m.GetLower(), m.GetUpper());
        n = Sse.Max(n, Sse.Shuffle(n, n, 0b_01_00_11_10));
        n = Sse.Max(n, Sse.Shuffle(n, n, 0b_10_11_00_01));
        return n.ToScalar();
    }

    /// <summary>score[i·span + s] = q_i · k_s for the four queries and the first <paramref name="blocks"/> keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Scores(float* kt, int span, float* query, int hd, int blocks, float* score)
    {
        for (var s = 0; s < blocks; s += KeyBlock)
        {
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            var column = kt + s;
            for (var d = 0; d < hd; d++)
            {
                var first = Avx512F.LoadVector512(column + (long)d * span);
                var second = Avx512F.LoadVector512(column + (long)d * span + 16);
                var q0 = Vector512.Create(query[d]);
                var q1 = Vector512.Create(query[hd + d]);
                var q2 = Vector512.Create(query[2 * hd + d]);
                var q3 = Vector512.Create(query[3 * hd + d]);
                a0 = Avx512F.FusedMultiplyAdd(q0, first, a0);
                b0 = Avx512F.FusedMultiplyAdd(q0, second, b0);
                a1 = Avx512F.FusedMultiplyAdd(q1, first, a1);
                b1 = Avx512F.FusedMultiplyAdd(q1, second, b1);
                a2 = Avx512F.FusedMultiplyAdd(q2, first, a2);
                b2 = Avx512F.FusedMultiplyAdd(q2, second, b2);
                a3 = Avx512F.FusedMultiplyAdd(q3, first, a3);
                b3 = Avx512F.FusedMultiplyAdd(q3, second, b3);
            }
            Avx512F.Store(score + s, a0);
            Avx512F.Store(score + s + 16, b0);
            Avx512F.Store(score + span + s, a1);
            Avx512F.Store(score + span + s + 16, b1);
            Avx512F.Store(score + 2 * span + s, a2);
            Avx512F.Store(score + 2 * span + s + 16, b2);
            Avx512F.Store(score + 3 * span + s, a3);
            Avx512F.Store(score + 3 * span + s + 16, b3);
        }
    }

    /// <summary>Dimensions c … c + 15 of the four queries' weighted sums of values, normalised and stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Weigh(in Job job, int b, int head, int t0, float* values, int c, int keys, float* p, int span, float* inverse)
    {
        var hd = job.HeadDim;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        for (var s = 0; s < keys; s++)
        {
            var value = Avx512F.LoadVector512(values + (long)s * hd + c);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[s]), value, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[span + s]), value, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[2 * span + s]), value, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[3 * span + s]), value, a3);
        }
        Store(job, b, head, t0, c, a0 * Vector512.Create(inverse[0]));
        if (t0 + 1 < job.QueryCount) Store(job, b, head, t0 + 1, c, a1 * Vector512.Create(inverse[1]));
        if (t0 + 2 < job.QueryCount) Store(job, b, head, t0 + 2, c, a2 * Vector512.Create(inverse[2]));
        if (t0 + 3 < job.QueryCount) Store(job, b, head, t0 + 3, c, a3 * Vector512.Create(inverse[3]));
    }

    /// <summary>
    /// Dimensions c … c + 63 of the four queries' weighted sums: each key's four value vectors are read once for the four
    /// queries (sixteen independent sums, so the multiply–adds do not wait on one another).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void WeighFour(in Job job, int b, int head, int t0, float* values, int c, int keys, float* p, int span, float* inverse)
    {
        var hd = job.HeadDim;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        Vector512<float> c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
        for (var s = 0; s < keys; s++)
        {
            var row = values + (long)s * hd + c;
            var (v0, v1, v2, v3) = (Avx512F.LoadVector512(row), Avx512F.LoadVector512(row + 16), Avx512F.LoadVector512(row + 32),
                Avx512F.LoadVector512(row + 48));
            var w = Vector512.Create(p[s]);
            a0 = Avx512F.FusedMultiplyAdd(w, v0, a0);
            a1 = Avx512F.FusedMultiplyAdd(w, v1, a1);
            a2 = Avx512F.FusedMultiplyAdd(w, v2, a2);
            a3 = Avx512F.FusedMultiplyAdd(w, v3, a3);
            w = Vector512.Create(p[span + s]);
            b0 = Avx512F.FusedMultiplyAdd(w, v0, b0);
            b1 = Avx512F.FusedMultiplyAdd(w, v1, b1);
            b2 = Avx512F.FusedMultiplyAdd(w, v2, b2);
            b3 = Avx512F.FusedMultiplyAdd(w, v3, b3);
            w = Vector512.Create(p[2 * span + s]);
            c0 = Avx512F.FusedMultiplyAdd(w, v0, c0);
            c1 = Avx512F.FusedMultiplyAdd(w, v1, c1);
            c2 = Avx512F.FusedMultiplyAdd(w, v2, c2);
            c3 = Avx512F.FusedMultiplyAdd(w, v3, c3);
            w = Vector512.Create(p[3 * span + s]);
            d0 = Avx512F.FusedMultiplyAdd(w, v0, d0);
            d1 = Avx512F.FusedMultiplyAdd(w, v1, d1);
            d2 = Avx512F.FusedMultiplyAdd(w, v2, d2);
            d3 = Avx512F.FusedMultiplyAdd(w, v3, d3);
        }
        StoreFour(job, b, head, t0, c, a0, a1, a2, a3, inverse[0]);
        if (t0 + 1 < job.QueryCount) StoreFour(job, b, head, t0 + 1, c, b0, b1, b2, b3, inverse[1]);
        if (t0 + 2 < job.QueryCount) StoreFour(job, b, head, t0 + 2, c, c0, c1, c2, c3, inverse[2]);
        if (t0 + 3 < job.QueryCount) StoreFour(job, b, head, t0 + 3, c, d0, d1, d2, d3, inverse[3]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFour(in Job job, int b, int head, int t, int c, Vector512<float> s0, Vector512<float> s1, Vector512<float> s2,
        Vector512<float> s3, float inverse)
    {
        var norm = Vector512.Create(inverse);
        Store(job, b, head, t, c, s0 * norm);
        Store(job, b, head, t, c + 16, s1 * norm);
        Store(job, b, head, t, c + 32, s2 * norm);
        Store(job, b, head, t, c + 48, s3 * norm);
    }

    /// <summary>Output (b, t, head·hd + c …) ← 16 values, rounded to bf16 if the activations are.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(in Job job, int b, int head, int t, int c, Vector512<float> sum)
    {
        var element = ((long)b * job.QueryCount + t) * job.Heads * job.HeadDim + (long)head * job.HeadDim + c;
        if (!job.Brain) Avx512F.Store((float*)job.Output + element, sum);
        else BFloat16Bits.Round16(sum, (ushort*)job.Output + element);
    }
}
