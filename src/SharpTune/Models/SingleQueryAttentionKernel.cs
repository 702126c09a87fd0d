using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// One decode step's attention for one layer on the CPU, straight over the KV cache's buffers: writes the new key and
/// value of every row at the cache's next position, then for each query head computes scale·q·k over the visible keys
/// (the last <c>SlidingWindow</c> if set; left padding hidden by the (B, 1, 1, S) mask), Gemma's soft-capping if set,
/// a softmax in fp32 and the weighted sum of values, accumulated in fp32 and rounded once to the cache's dtype. Grouped
/// query heads read their shared key/value head in place. libtorch's scaled-dot-product attention does the same work
/// with a single query but through its blocked flash kernel and a dozen tensor calls a layer (measured on the M model in
/// bf16: 4.1 ms of a 12 ms step for 12 layers); here it is one pass over the cache. bf16 keys and values are widened in
/// registers as they are read, the exponentials are taken 16 at a time, and the (row, kv head) pairs are split over the
/// kernel threads as soon as each thread gets a pair (M at 190 keys: 1.0 ms a step on one thread with a widened copy of
/// every row and a scalar exponential per key, 0.55 ms now). AVX-512 CPUs, fp32 or bf16 tensors only.
/// </summary>
internal static class SingleQueryAttentionKernel
{
    /// <summary>
    /// q (B, nh, 1, hd), k and v (B, nkv, 1, hd) of the new token → (B, 1, nh·hd), or null when the kernel does not apply
    /// (then nothing was written and the caller runs the general path).
    /// </summary>
    public static Tensor? TryCompute(Tensor q, Tensor k, Tensor v, KvCache cache, int layer, Tensor? mask, AttentionSettings settings)
    {
        var dtype = q.dtype;
        if (!Avx512F.IsSupported || dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || k.dtype != dtype || v.dtype != dtype ||
            cache.Dtype != dtype || !InferenceShortcuts.ForCpuKernel(q) ||
            cache.Length >= cache.Capacity) return null;
        var qShape = q.Sizes();
        var (batch, heads, headDim) = ((int)qShape[0], (int)qShape[1], (int)qShape[3]);
        var kvHeads = (int)cache.KvHeads;
        // Heads narrower than one vector (stories260K's 8) leave nothing to vectorise: libtorch's kernel does better there.
        if (qShape[2] != 1 || batch != cache.BatchSize || headDim != cache.HeadDim || headDim % 16 != 0 || heads % kvHeads != 0 ||
            (mask is not null && (mask.dtype != ScalarType.Bool || mask.numel() != (long)batch * (cache.Length + 1)))) return null;

        using var scope = NewDisposeScope();
        var (qc, kc, vc) = (q.contiguous(), k.contiguous(), v.contiguous());
        var maskBytes = mask?.contiguous();
        var output = empty([batch, 1, heads * headDim], dtype);
        unsafe
        {
            fixed (byte* qp = qc.bytes)
            fixed (byte* kp = kc.bytes)
            fixed (byte* vp = vc.bytes)
            fixed (byte* op = output.bytes)
            fixed (byte* mp = maskBytes is null ? default : maskBytes.bytes)
            {
                AttendRows(new Heads(batch, heads, kvHeads, headDim, dtype == ScalarType.BFloat16), (nint)qp, heads * headDim,
                    (nint)kp, kvHeads * headDim, (nint)vp, kvHeads * headDim, cache, layer, (nint)mp, (nint)op, settings);
            }
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>The head layout of a decode step: rows, query heads, key/value heads, head size, bf16 or fp32.</summary>
    internal readonly record struct Heads(int Batch, int Count, int KvCount, int HeadDim, bool Brain);

    /// <summary>
    /// Raw buffers: writes each row's new key and value (row b's heads at k + b·<paramref name="keyRowStride"/> and
    /// v + b·<paramref name="valueRowStride"/>, in elements) into layer <paramref name="layer"/>'s cache buffers at
    /// <paramref name="position"/> (the cache's next one unless given: a prompt's t-th token is at its length + t), then
    /// attends every query head (row b's at q + b·<paramref name="queryRowStride"/>) to the keys up to that position, into
    /// the output (row b at b·<paramref name="outputRowStride"/>, nh·hd unless given). The mask, if any, is (B, keys) bools.
    /// </summary>
    internal static unsafe void AttendRows(Heads layout, nint q, long queryRowStride, nint k, long keyRowStride, nint v, long valueRowStride,
        KvCache cache, int layer, nint mask, nint output, AttentionSettings settings, int? position = null, long outputRowStride = 0)
    {
        var (keyBuffer, valueBuffer) = cache.BufferPointers(layer);
        var (batch, heads, kvHeads, headDim, brain) = (layout.Batch, layout.Count, layout.KvCount, layout.HeadDim, layout.Brain);
        var at = position ?? cache.Length;
        var keys = at + 1;
        var first = settings.SlidingWindow is { } w && keys > w ? keys - w : 0;
        var scale = (float)(settings.Scale ?? 1.0 / Math.Sqrt(headDim));
        var cap = settings.SoftCap is { } c ? (float)c : 0f;
        var elementSize = brain ? 2 : 4;
        var rowBytes = (long)headDim * elementSize;
        var headStride = (long)cache.Capacity * rowBytes;   // bytes between kv heads in a cache buffer
        byte* kb = (byte*)keyBuffer, vb = (byte*)valueBuffer;
        for (var b = 0; b < batch; b++)
            for (var h = 0; h < kvHeads; h++)
            {
                var target = (b * kvHeads + h) * headStride + at * rowBytes;
                CopyRow((byte*)k + (b * keyRowStride + h * headDim) * elementSize, kb + target, rowBytes);
                CopyRow((byte*)v + (b * valueRowStride + h * headDim) * elementSize, vb + target, rowBytes);
            }
        var job = new Job(q, queryRowStride, keyBuffer, valueBuffer, output, outputRowStride > 0 ? outputRowStride : (long)heads * headDim,
            mask, brain, headDim, heads, kvHeads, cache.Capacity, first, keys, scale, cap);
        // Parallel over (row, kv head) pairs once each thread gets ~64K multiply–adds (M's heads from ~130 keys on). A
        // hand-off to a spinning helper costs about a microsecond, but a helper given work spins on for a while after it:
        // a small model's batched steps (stories260K, 8 rows at a few dozen keys) then kept the second core busy where
        // the server's HTTP work needed it (8 streams: 13–16K tok/s at ~16K a thread, 14–20K at ~64K, alternate runs).
        var pairCost = (long)(heads / kvHeads) * (keys - first) * headDim * 2;
        RowParallel.For(batch * kvHeads, (from, to) => Run(job, from, to), Math.Max(1, (1 << 16) / Math.Max(1, pairCost)));
    }

    /// <summary>
    /// One head's key or value into the cache: a vector move for the common head sizes (a copy call per head cost more
    /// than the copy at stories260K's 32 bytes, some 300 times a batched step).
    /// </summary>
    private static unsafe void CopyRow(byte* source, byte* target, long bytes)
    {
        switch (bytes)
        {
            case 32:
                Avx.Store(target, Avx.LoadVector256(source));
                break;
            case 64:
                Avx512F.Store(target, Avx512F.LoadVector512(source));
                break;
            case 128:
                Avx512F.Store(target, Avx512F.LoadVector512(source));
                Avx512F.Store(target + 64, Avx512F.LoadVector512(source + 64));
                break;
            default:
                Buffer.MemoryCopy(source, target, bytes, bytes);
                break;
        }
    }

    private readonly record struct Job(nint Queries, long QueryRowStride, nint Keys, nint Values, nint Output, long OutputRowStride, nint Mask,
        bool Brain, int HeadDim,
        int Heads, int KvHeads, int Capacity, int First, int Length, float Scale, float SoftCap);

    private static unsafe void Run(Job job, long from, long to)
    {
        var hd = job.HeadDim;
        var group = job.Heads / job.KvHeads;
        var scores = ArrayPool<float>.Shared.Rent(job.Length + 16);   // 8-wide heads score whole blocks of 16 keys
        var buffers = ArrayPool<float>.Shared.Rent(2 * hd);   // the query and the weighted sum
        try
        {
            fixed (float* score = scores)
            fixed (float* buffer = buffers)
            {
                float* query = buffer, sum = buffer + hd;
                for (var pair = from; pair < to; pair++)
                {
                    var (b, kvHead) = (pair / job.KvHeads, pair % job.KvHeads);
                    var cacheOffset = (b * job.KvHeads + kvHead) * job.Capacity;   // in rows of hd elements
                    var mask = job.Mask == 0 ? null : (bool*)job.Mask + b * job.Length;
                    for (var g = 0; g < group; g++)
                    {
                        var head = kvHead * group + g;
                        var element = b * job.OutputRowStride + head * hd;             // output: row b's heads
                        if (EightWide(job))
                        {
                            EightWideHead(job, (float*)job.Queries + b * job.QueryRowStride + head * hd, cacheOffset * hd, mask, score,
                                (float*)job.Output + element);
                            continue;
                        }
                        BFloat16Bits.Widen(job.Queries, b * job.QueryRowStride + head * hd, query, hd, job.Brain);
                        for (var c = 0; c < hd; c++) query[c] *= job.Scale;
                        var max = Scores(job, query, cacheOffset * hd, mask, score);
                        new Span<float>(sum, hd).Clear();
                        var total = 0f;
                        if (!float.IsNegativeInfinity(max))
                        {
                            total = Exponentiate(score + job.First, job.Length - job.First, max);
                            Weigh(job, score, cacheOffset * hd, sum);
                        }
                        // A row whose keys are all hidden gets zeros, as the general path's fully masked softmax does not
                        // (NaN); such rows are padding whose outputs are discarded.
                        Store(job, element, sum, total > 0 ? 1f / total : 0f, hd);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scores);
            ArrayPool<float>.Shared.Return(buffers);
        }
    }

    /// <summary>score[s] = q·k_s (q already scaled), soft-capped if set, −∞ where masked; returns the largest.</summary>
    private static unsafe float Scores(in Job job, float* query, long keyElement, bool* mask, float* score)
    {
        var hd = job.HeadDim;
        var max = float.NegativeInfinity;
        for (var s = job.First; s < job.Length; s++)
        {
            if (mask != null && !mask[s])
            {
                score[s] = float.NegativeInfinity;
                continue;
            }
            var row = keyElement + (long)s * hd;
            if (hd % 16 != 0)
            {
                var dot = NarrowDot(job, query, row, hd);
                score[s] = Cap(job, dot);
                if (score[s] > max) max = score[s];
                continue;
            }
            var acc = Vector512<float>.Zero;
            if (job.Brain)
            {
                var bits = (ushort*)job.Keys + row;
                for (var c = 0; c < hd; c += 16) acc = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(query + c), WidenBrain(bits + c), acc);
            }
            else
            {
                var keys = (float*)job.Keys + row;
                for (var c = 0; c < hd; c += 16) acc = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(query + c), Avx512F.LoadVector512(keys + c), acc);
            }
            var x = Cap(job, Vector512.Sum(acc));
            score[s] = x;
            if (x > max) max = x;
        }
        return max;
    }

    /// <summary>fp32 heads of 8 without soft-capping: <see cref="EightWideHead"/> serves them.</summary>
    private static bool EightWide(in Job job) => job.HeadDim == 8 && !job.Brain && job.SoftCap == 0;

    /// <summary>
    /// One 8-wide head, its query and output one 256-bit vector each, straight from and to the buffers (through the
    /// general path's copies, clears and element-wise loops, a head cost more than its few blocks of keys; the same
    /// roundings as there).
    /// </summary>
    private static unsafe void EightWideHead(in Job job, float* query, long element, bool* mask, float* score, float* output)
    {
        var scaled = Avx.LoadVector256(query) * Vector256.Create(job.Scale);
        var max = EightWideScores(job, scaled, element, mask, score);
        if (float.IsNegativeInfinity(max))
        {
            Avx.Store(output, Vector256<float>.Zero);   // every key hidden: zeros, as the general path
            return;
        }
        // The last block's scores past the keys are −∞: their weights come out 0.
        var total = Exponentiate(score + job.First, (job.Length - job.First + 15) / 16 * 16, max);
        Avx.Store(output, EightWideWeigh(job, score, element) * Vector256.Create(total > 0 ? 1f / total : 0f));
    }

    /// <summary>
    /// The scores of 8-wide heads (stories260K's) for the scaled <paramref name="query"/>, 16 keys at a time (a last block
    /// of fewer keys masked); returns their largest. Key by key, a head that narrow is one multiply and a horizontal sum
    /// (most of a small model's batched step at a few hundred keys). Here 16 keys are 8 vectors of two keys each,
    /// multiplied by the query twice over and summed across lanes by three levels of shuffles and adds into one vector
    /// of 16 scores (the per-key sum ((q0k0+q2k2)+(q1k1+q3k3)) + ((q4k4+q6k6)+(q5k5+q7k7))).
    /// </summary>
    private static unsafe float EightWideScores(in Job job, Vector256<float> query, long keyElement, bool* mask, float* score)
    {
        var keys = (float*)job.Keys + keyElement;
        var twice = Vector512.Create(query, query);
        var order = Vector512.Create(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
        var hidden = Vector512.Create(float.NegativeInfinity);
        var largest = hidden;
        var tailMask = stackalloc byte[16];
        for (var s = job.First; s < job.Length; s += 16)
        {
            // The last block, when fewer than 16 keys are left, reads them through masked loads (nothing past them) and
            // scores the lanes past them −∞: key by key, a head this narrow cost a horizontal sum and a scalar exponential
            // per key, more than the whole blocks before it at a few dozen keys.
            var left = job.Length - s;
            var block = keys + (long)s * 8;
            var floats = Math.Min(16, left) * 8;
            Vector512<float> first = Fold(Pairs(block, twice, 0, floats), Pairs(block, twice, 32, floats)),
                second = Fold(Pairs(block, twice, 64, floats), Pairs(block, twice, 96, floats));
            var sums = Avx512F.PermuteVar16x32(Avx512F.Shuffle4x128(first, second, 0x88) + Avx512F.Shuffle4x128(first, second, 0xDD), order);
            if (mask != null)
            {
                var maskBytes = (byte*)(mask + s);
                if (left < 16)
                {
                    // Element by element: a call here (a copy) would have the loop's vectors kept in memory across it.
                    for (var k = 0; k < 16; k++) tailMask[k] = k < left ? maskBytes[k] : (byte)0;
                    maskBytes = tailMask;
                }
                var visible = Avx512F.ConvertToVector512Int32(Sse2.LoadVector128(maskBytes));
                sums = Vector512.ConditionalSelect(Vector512.Equals(visible, Vector512<int>.Zero).AsSingle(), hidden, sums);
            }
            if (left < 16) sums = Vector512.ConditionalSelect(Below(left), sums, hidden);
            Avx512F.Store(score + s, sums);
            largest = Avx512F.Max(largest, sums);
        }
        var max = float.NegativeInfinity;
        for (var i = 0; i < 16; i++) max = Math.Max(max, largest.GetElement(i));
        return max;

        // Keys o/8 … o/8 + 3 (two vectors of two keys each; of the block's first `floats` values only): their products
        // with the query, then the two halves of each 128-bit lane summed: lane l holds (a's pair sums, b's pair sums) of
        // that lane's four values.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector512<float> Pairs(float* block, Vector512<float> twice, int o, int floats)
        {
            var a = BlockVector(block, o, floats) * twice;
            var b = BlockVector(block, o + 16, floats) * twice;
            return Avx512F.Shuffle(a, b, 0x44) + Avx512F.Shuffle(a, b, 0xEE);
        }
        // Within each 128-bit lane, each source vector's pair sums added: lane l then holds the sums of four values (half a
        // key) of four keys. Lanes 0 and 1 are the first and second halves of the even keys, lanes 2 and 3 of the odd ones.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector512<float> Fold(Vector512<float> a, Vector512<float> b) => Avx512F.Shuffle(a, b, 0x88) + Avx512F.Shuffle(a, b, 0xDD);
    }

    /// <summary>
    /// Σ p[s]·v_s for 8-wide heads, 16 keys at a time (a last block of fewer keys masked): two keys' values per vector,
    /// each multiplied by its own weight, into four accumulators whose halves are added at the end (key by key, each key
    /// was a read, a multiply–add and a write of the sum).
    /// </summary>
    private static unsafe Vector256<float> EightWideWeigh(in Job job, float* p, long valueElement)
    {
        var values = (float*)job.Values + valueElement;
        var pairOfKeys = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        for (var s = job.First; s < job.Length; s += 16)
        {
            // A last block of fewer than 16 keys reads their values through masked loads; the weights past them are 0
            // (their scores were −∞).
            var weights = Avx512F.LoadVector512(p + s);
            var block = values + (long)s * 8;
            var floats = Math.Min(16, job.Length - s) * 8;
            a0 = Avx512F.FusedMultiplyAdd(BlockVector(block, 0, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys), a0);
            a1 = Avx512F.FusedMultiplyAdd(BlockVector(block, 16, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(2)), a1);
            a2 = Avx512F.FusedMultiplyAdd(BlockVector(block, 32, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(4)), a2);
            a3 = Avx512F.FusedMultiplyAdd(BlockVector(block, 48, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(6)), a3);
            a0 = Avx512F.FusedMultiplyAdd(BlockVector(block, 64, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(8)), a0);
            a1 = Avx512F.FusedMultiplyAdd(BlockVector(block, 80, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(10)), a1);
            a2 = Avx512F.FusedMultiplyAdd(BlockVector(block, 96, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(12)), a2);
            a3 = Avx512F.FusedMultiplyAdd(BlockVector(block, 112, floats), Avx512F.PermuteVar16x32(weights, pairOfKeys + Vector512.Create(14)), a3);
        }
        var total = (a0 + a1) + (a2 + a3);
        return total.GetLower() + total.GetUpper();
    }

    /// <summary>
    /// The 16 values at <paramref name="o"/> of a block of 16 keys of 8 (128 values) of which only the first
    /// <paramref name="floats"/> exist: a plain load for a whole block, else a masked one (zeros past them, nothing read).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> BlockVector(float* block, int o, int floats) =>
        floats == 128 ? Avx512F.LoadVector512(block + o) : Avx512F.MaskLoad(block + o, Below(floats - o), Vector512<float>.Zero);

    /// <summary>The lanes below <paramref name="count"/> (all of them from 16 on, none at 0 or below).</summary>
    private static Vector512<float> Below(int count) => Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();

    /// <summary>
    /// q·k for heads narrower than a 16-wide vector (stories260K's 8): eight at a time in 256-bit vectors where the
    /// width allows (fp32 caches), else one multiply–add at a time.
    /// </summary>
    private static unsafe float NarrowDot(in Job job, float* query, long row, int hd)
    {
        if (!job.Brain && hd % 8 == 0 && Avx2.IsSupported && Fma.IsSupported)
        {
            var keys = (float*)job.Keys + row;
            var acc = Vector256<float>.Zero;
            for (var c = 0; c < hd; c += 8) acc = Fma.MultiplyAdd(Avx.LoadVector256(query + c), Avx.LoadVector256(keys + c), acc);
            return Vector256.Sum(acc);
        }
        var dot = 0f;
        for (var c = 0; c < hd; c++)
            dot = MathF.FusedMultiplyAdd(query[c], job.Brain ? BFloat16Bits.ToSingle(((ushort*)job.Keys)[row + c]) : ((float*)job.Keys)[row + c], dot);
        return dot;
    }

    /// <summary>sum += p·v for heads narrower than a 16-wide vector, as <see cref="NarrowDot"/> reads them.</summary>
    private static unsafe void NarrowWeigh(in Job job, float p, long row, float* sum, int hd)
    {
        if (!job.Brain && hd % 8 == 0 && Avx2.IsSupported && Fma.IsSupported)
        {
            var values = (float*)job.Values + row;
            var weight = Vector256.Create(p);
            for (var c = 0; c < hd; c += 8)
                Avx.Store(sum + c, Fma.MultiplyAdd(Avx.LoadVector256(values + c), weight, Avx.LoadVector256(sum + c)));
            return;
        }
        for (var c = 0; c < hd; c++)
            sum[c] = MathF.FusedMultiplyAdd(job.Brain ? BFloat16Bits.ToSingle(((ushort*)job.Values)[row + c]) : ((float*)job.Values)[row + c], p, sum[c]);
    }

    private static float Cap(in Job job, float x) => job.SoftCap > 0 ? job.SoftCap * MathF.Tanh(x / job.SoftCap) : x;

    /// <summary>p[s] = exp(score[s] − max) in place, 16 at a time; returns Σp.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // a prompt's first call must not run the unoptimised Exp
    internal static unsafe float Exponentiate(float* p, int count, float max)
    {
        var shift = Vector512.Create(max);
        var total = Vector512<float>.Zero;
        var i = 0;
        for (; i + 16 <= count; i += 16)
        {
            var e = VectorExponential.Exp(Avx512F.LoadVector512(p + i) - shift);
            Avx512F.Store(p + i, e);
            total += e;
        }
        var sum = Vector512.Sum(total);
        for (; i < count; i++) sum += p[i] = MathF.Exp(p[i] - max);
        return sum;
    }

    /// <summary>sum += p[s]·v_s over the visible keys (masked ones have p = 0 and are skipped).</summary>
    private static unsafe void Weigh(in Job job, float* p, long valueElement, float* sum)
    {
        var hd = job.HeadDim;
        if (hd % 64 == 0)
        {
            for (var column = 0; column < hd; column += 64) WeighSixtyFour(job, p, valueElement + column, sum + column);
            return;
        }
        for (var s = job.First; s < job.Length; s++)
        {
            if (p[s] == 0f) continue;
            var row = valueElement + (long)s * hd;
            if (hd % 16 != 0)
            {
                NarrowWeigh(job, p[s], row, sum, hd);
                continue;
            }
            var weight = Vector512.Create(p[s]);
            if (job.Brain)
            {
                var bits = (ushort*)job.Values + row;
                for (var c = 0; c < hd; c += 16)
                    Avx512F.Store(sum + c, Avx512F.FusedMultiplyAdd(WidenBrain(bits + c), weight, Avx512F.LoadVector512(sum + c)));
            }
            else
            {
                var values = (float*)job.Values + row;
                for (var c = 0; c < hd; c += 16)
                    Avx512F.Store(sum + c, Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(values + c), weight, Avx512F.LoadVector512(sum + c)));
            }
        }
    }

    /// <summary>
    /// <see cref="Weigh"/> for 64 columns of a head (its columns from <paramref name="valueElement"/>), the weighted sum
    /// held in four registers instead of stored and reloaded for every key (each key's multiply–adds had waited for the
    /// last key's stores: M, 12 heads of 64 at ~160 keys, 20–23 µs a layer with the keys in cache, 14–15 this way). Each
    /// element gets the same multiply–adds in the same order.
    /// </summary>
    private static unsafe void WeighSixtyFour(in Job job, float* p, long valueElement, float* sum)
    {
        var hd = job.HeadDim;
        Vector512<float> a0 = Avx512F.LoadVector512(sum), a1 = Avx512F.LoadVector512(sum + 16), a2 = Avx512F.LoadVector512(sum + 32),
            a3 = Avx512F.LoadVector512(sum + 48);
        for (var s = job.First; s < job.Length; s++)
        {
            if (p[s] == 0f) continue;
            var row = valueElement + (long)s * hd;
            var weight = Vector512.Create(p[s]);
            if (job.Brain)
            {
                var bits = (ushort*)job.Values + row;
                a0 = Avx512F.FusedMultiplyAdd(WidenBrain(bits), weight, a0);
                a1 = Avx512F.FusedMultiplyAdd(WidenBrain(bits + 16), weight, a1);
                a2 = Avx512F.FusedMultiplyAdd(WidenBrain(bits + 32), weight, a2);
                a3 = Avx512F.FusedMultiplyAdd(WidenBrain(bits + 48), weight, a3);
            }
            else
            {
                var values = (float*)job.Values + row;
                a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(values), weight, a0);
                a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(values + 16), weight, a1);
                a2 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(values + 32), weight, a2);
                a3 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(values + 48), weight, a3);
            }
        }
        Avx512F.Store(sum, a0);
        Avx512F.Store(sum + 16, a1);
        Avx512F.Store(sum + 32, a2);
        Avx512F.Store(sum + 48, a3);
    }

    private static unsafe Vector512<float> WidenBrain(ushort* bits) => BFloat16Bits.Widen16(bits);

    private static unsafe void Store(in Job job, long element, float* sum, float norm, int count)
    {
        if (!job.Brain)
        {
            var output = (float*)job.Output + element;
            for (var i = 0; i < count; i++) output[i] = sum[i] * norm;
            return;
        }
        var bits = (ushort*)job.Output + element;
        for (var i = 0; i < count; i++) bits[i] = BFloat16Bits.Round(sum[i] * norm);
    }
}
