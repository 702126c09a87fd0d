using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A Llama-style layer's weights as <see cref="DecodeLayerStack"/> reads them, and Granite's residual_multiplier on each
/// block's output (null = 1).
/// </summary>
internal sealed record DecodeLayerParts(RmsNorm InputNorm, DecodeAttentionParts Attention, RmsNorm PostAttentionNorm, DecodeMlpParts Mlp,
    double? ResidualMultiplier = null);

/// <summary>
/// The fused (q, k, v) projection, o_proj and the head layout of a Llama-style attention block, with Qwen3's per-head
/// query and key norms (applied before RoPE) when it has them.
/// </summary>
internal sealed record DecodeAttentionParts(DecodeProjection Qkv, DecodeProjection Output, AttentionHeads Heads, bool UsesRope,
    RmsNorm? QueryNorm = null, RmsNorm? KeyNorm = null);

/// <summary>The fused (gate, up) projection and down_proj of a SwiGLU MLP.</summary>
internal sealed record DecodeMlpParts(DecodeProjection GateUp, DecodeProjection Down, long Intermediate);

/// <summary>
/// A decode step through every layer of a Llama-style stack in one pass over raw buffers on the CPU. Each layer's
/// modules already run a decode step through our kernels (<see cref="RmsNormKernel"/>, the fused projections'
/// <see cref="DenseMatVec"/> or quantized kernels (<see cref="DecodeProjection"/>), <see cref="RotaryDecodeKernel"/>,
/// <see cref="SingleQueryAttentionKernel"/>, <see cref="SwiGluKernel"/>), but through tensors: each call allocates its output, reads shapes and pointers through
/// native calls and registers with a dispose scope, some ten tensors a layer (measured on M in bf16: ~1.2 ms of a
/// ~6.7 ms step outside the kernels). Here the same kernels run back to back on buffers allocated once, with the
/// residual kept in one of them, so the results are bit for bit those of the modules wherever the modules use our
/// kernels (tests compare the two). Products and heads too small for the modules to hand to a kernel (a call costs
/// more than their arithmetic there; stories260K's) run through the same kernels here, where a call costs nothing, so
/// a small model's step differs from the modules' in the last bits of its sums; so do Qwen3's per-head q/k norms, whose
/// heads the modules normalise through libtorch. Applies when every layer is the plain form (no adapter wraps a
/// projection, SwiGLU, Llama's norms, full-width RoPE or none; Granite's residual multiplier is applied as the modules do), there is a cache, and the step has one token per row
/// or every product is that small (a small model's prompt: its tokens' products as rows, its attention token by token,
/// each seeing the keys up to its own position); otherwise the layers run as modules.
/// </summary>
internal sealed class DecodeLayerStack : IDisposable
{
    private const int Alignment = 64;
    private readonly object gate = new();
    private Tensor? scratch;            // one byte buffer, cut into the step's activations
    private nint scratchBase;
    private long scratchBytes;

    /// <summary>
    /// Most tokens a prompt pass takes at once (rows × tokens): its activations are sized by them, and only a small
    /// model's prompt comes here (<see cref="SmallEnoughForPrompts"/>).
    /// </summary>
    private const int MaxPromptTokens = 2048;

    /// <summary>Scratch bytes a prompt may leave allocated; a larger buffer is freed after the prompt.</summary>
    private const long PromptScratchKept = 1 << 20;

    /// <summary>Decode steps this pass has run (tests check that it ran, or that it declined).</summary>
    public long StepsRun { get; private set; }

    /// <summary>Prompts (several tokens per row) this pass has run.</summary>
    public long PromptsRun { get; private set; }

    /// <summary>
    /// The stack's output (B, T, C) for input x (B, T, C) — a decode step (T = 1), or a small model's prompt — every
    /// layer's keys and values written to the cache (which the caller advances by T), or null when the pass does not
    /// apply (then nothing was written).
    /// </summary>
    public Tensor? TryRun(ModuleList<DecoderLayer> layers, Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        if (!InferenceShortcuts.LayerStackEnabled || !InferenceShortcuts.ForCpuKernel(x) || ctx.Cache is not { } cache ||
            ctx.LayerPrefix is not null) return null;
        var dtype = x.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || !DenseMatVec.Available(dtype) || cache.Dtype != dtype ||
            x.dim() != 3 || !x.is_contiguous()) return null;
        var (batch, tokens, width) = ((int)x.size(0), (int)x.size(1), x.size(2));
        if (batch != cache.BatchSize || batch > Int8MatVec.MaxRows || cache.Length + tokens > cache.Capacity ||
            (tokens > 1 && (long)batch * tokens > MaxPromptTokens)) return null;
        // The mask, if any, is (B, 1, T, keys) bools: a decode step's visible keys, or a prompt's causal mask with padding.
        var mask = ctx.AttentionMask;
        if (mask is not null && (mask.dtype != ScalarType.Bool || mask.numel() != (long)batch * tokens * (cache.Length + tokens))) return null;
        var parts = new DecodeLayerParts[layers.Count];
        for (var i = 0; i < parts.Length; i++)
        {
            if (layers[i] is not LlamaDecoderLayer layer || layer.UsesLocalRope || layer.DecodeParts() is not { } p ||
                !Serves(p, dtype, width, cache, angles, batch * tokens, tokens) || (tokens > 1 && !SmallEnoughForPrompts(p))) return null;
            parts[i] = p;
        }
        if (!Monitor.TryEnter(gate)) return null;   // another thread is decoding with this model: it runs as modules
        try
        {
            using var perRow = RotationTablesPerRow(parts, angles, batch, tokens);
            var result = Run(parts, x, cache, mask, perRow?.Angles ?? angles, batch, tokens, width, dtype);
            if (tokens == 1) StepsRun++;
            else
            {
                PromptsRun++;
                // A long prompt's activations (up to MaxPromptTokens rows) are not kept for the decode steps that follow.
                if (scratchBytes > PromptScratchKept) ReleaseScratch();
            }
            return result;
        }
        finally
        {
            Monitor.Exit(gate);
        }
    }

    /// <summary>
    /// Whether a layer's products are all below the size the modules hand to a kernel (<see cref="DenseMatVec.MinWeights"/>):
    /// a model that small spends a prompt's forward pass on libtorch's per-operation overhead (measured on stories260K:
    /// ~1.9 ms for one row of 16 tokens, some twenty decode steps; ~0.3 ms here), which this pass does not have. Larger models' prompts stay with
    /// libtorch's matrix products, far faster there than these row-by-row kernels.
    /// </summary>
    private static bool SmallEnoughForPrompts(DecodeLayerParts p) =>
        new[] { p.Attention.Qkv, p.Attention.Output, p.Mlp.GateUp, p.Mlp.Down }
            .All(d => d.IsDense && d.InFeatures * d.OutFeatures < DenseMatVec.MinWeights);

    /// <summary>
    /// A prompt's rotation tables, one row per (row, token), when the given ones are shared by the batch's rows (one per
    /// token); null when they already have a row each (or one for all).
    /// </summary>
    private static PromptTables? RotationTablesPerRow(DecodeLayerParts[] parts, (Tensor Cos, Tensor SignedSin) angles, int batch, int tokens)
    {
        if (tokens == 1 || batch == 1 || Array.Find(parts, p => p.Attention.UsesRope) is not { } rotating) return null;
        var (cos, sin) = angles;
        var headDim = rotating.Attention.Heads.HeadDim;
        if (cos.numel() / headDim != tokens) return null;
        using var normal = inference_mode(false);
        return new PromptTables((cos.reshape(1, tokens, headDim).expand(batch, tokens, headDim).contiguous(),
            sin.reshape(1, tokens, headDim).expand(batch, tokens, headDim).contiguous()));
    }

    private sealed class PromptTables((Tensor Cos, Tensor SignedSin) angles) : IDisposable
    {
        public (Tensor Cos, Tensor SignedSin) Angles { get; } = angles;

        public void Dispose()
        {
            Angles.Cos.Dispose();
            Angles.SignedSin.Dispose();
        }
    }

    /// <summary>Whether every part of a layer is what the pass computes, with the same conditions the modules' kernels check.</summary>
    private static bool Serves(DecodeLayerParts p, ScalarType dtype, long width, KvCache cache, (Tensor Cos, Tensor SignedSin) angles, int rows,
        int tokens)
    {
        var (attention, mlp, heads) = (p.Attention, p.Mlp, p.Attention.Heads);
        if (p.InputNorm.weight.dtype != dtype || p.PostAttentionNorm.weight.dtype != dtype ||
            p.InputNorm.weight.numel() != width || p.PostAttentionNorm.weight.numel() != width) return false;
        if (heads.HeadDim % 2 != 0 || heads.NumHeads % heads.NumKvHeads != 0 || heads.HeadDim != cache.HeadDim ||
            heads.NumKvHeads != cache.KvHeads) return false;
        var qkvWidth = (long)(heads.NumHeads + 2 * heads.NumKvHeads) * heads.HeadDim;
        if (!Shaped(attention.Qkv, width, qkvWidth, dtype) || !Shaped(attention.Output, heads.QueryWidth, width, dtype) ||
            !Shaped(mlp.GateUp, width, 2 * mlp.Intermediate, dtype) || !Shaped(mlp.Down, mlp.Intermediate, width, dtype)) return false;
        foreach (var norm in new[] { attention.QueryNorm, attention.KeyNorm })
            if (norm is not null && (norm.UnitOffset || norm.weight.dtype != dtype || norm.weight.numel() != heads.HeadDim)) return false;
        if (!attention.UsesRope) return true;
        var (cos, sin) = angles;
        if (cos.dtype != dtype || sin.dtype != dtype || !cos.is_contiguous() || !sin.is_contiguous() || cos.size(-1) != heads.HeadDim ||
            cos.numel() != sin.numel()) return false;
        var tableRows = cos.numel() / heads.HeadDim;
        return tableRows == 1 || tableRows == rows || tableRows == tokens;   // per token only: RotationTablesPerRow widens them
    }

    private static bool Shaped(DecodeProjection projection, long inFeatures, long outFeatures, ScalarType dtype) =>
        projection.Serves(dtype) && projection.InFeatures == inFeatures && projection.OutFeatures == outFeatures;

    private Tensor Run(DecodeLayerParts[] parts, Tensor x, KvCache cache, Tensor? mask, (Tensor Cos, Tensor SignedSin) angles, int batch,
        int tokens, long width, ScalarType dtype)
    {
        var rows = batch * tokens;   // (row, token) pairs, row-major as x holds them
        var brain = dtype == ScalarType.BFloat16;
        var elementSize = brain ? 2 : 4;
        long widestInput = width, qkvWidest = 0, rotatedWidest = 0, queryWidest = 0, ffnWidest = 0;
        foreach (var p in parts)
        {
            var heads = p.Attention.Heads;
            qkvWidest = Math.Max(qkvWidest, (long)(heads.NumHeads + 2 * heads.NumKvHeads) * heads.HeadDim);
            rotatedWidest = Math.Max(rotatedWidest, (long)(heads.NumHeads + heads.NumKvHeads) * heads.HeadDim);
            queryWidest = Math.Max(queryWidest, heads.QueryWidth);
            ffnWidest = Math.Max(ffnWidest, p.Mlp.Intermediate);
        }
        widestInput = Math.Max(widestInput, Math.Max(queryWidest, ffnWidest));
        // The step's activations: residual, normed, qkv, rotated q/k, attention output, projection output, gate/up,
        // SwiGLU output; then the products' scratch: fp32 inputs, two int16 copies of them, per-row scales; then a
        // prompt token's mask (B rows of its visible keys).
        long[] sizes =
        [
            rows * width * elementSize, rows * width * elementSize, rows * qkvWidest * elementSize, rows * rotatedWidest * elementSize,
            rows * queryWidest * elementSize, rows * width * elementSize, rows * 2 * ffnWidest * elementSize, rows * ffnWidest * elementSize,
            rows * widestInput * sizeof(float), rows * widestInput * sizeof(short), rows * widestInput * sizeof(short), rows * sizeof(float),
            tokens > 1 && mask is not null ? (long)batch * (cache.Length + tokens) : 0,
        ];
        var offsets = new long[sizes.Length];
        var total = 0L;
        for (var i = 0; i < sizes.Length; i++)
        {
            offsets[i] = total;
            total += (sizes[i] + Alignment - 1) / Alignment * Alignment;
        }
        var basePointer = Scratch(total);
        nint At(int i) => basePointer + (nint)offsets[i];
        var (residual, normed, qkv, rotated, attended, projected, gateUp, hidden) = (At(0), At(1), At(2), At(3), At(4), At(5), At(6), At(7));
        var scratch = new DecodeScratch(At(8), At(9), At(10), At(11));
        var tokenMask = At(12);

        using var contiguousMask = mask is null || mask.is_contiguous() ? null : mask.contiguous();
        var (cos, sin) = angles;
        var rotating = Array.Find(parts, p => p.Attention.UsesRope);   // any rotating layer: they share the tables
        unsafe
        {
            fixed (byte* input = x.bytes)
                Buffer.MemoryCopy(input, (void*)residual, sizes[0], sizes[0]);
            fixed (byte* maskBytes = (contiguousMask ?? mask) is { } m ? m.bytes : default)
            fixed (byte* cosBytes = rotating is null ? default : cos.bytes)
            fixed (byte* sinBytes = rotating is null ? default : sin.bytes)
            {
                var tableRows = rotating is null ? 0 : cos.numel() / rotating.Attention.Heads.HeadDim;
                for (var i = 0; i < parts.Length; i++)
                {
                    var (attention, mlp, heads) = (parts[i].Attention, parts[i].Mlp, parts[i].Attention.Heads);
                    var (nh, nkv, hd) = (heads.NumHeads, heads.NumKvHeads, heads.HeadDim);
                    var qkvWidth = (long)(nh + 2 * nkv) * hd;

                    RmsNormKernel.NormalizeRows(residual, Pointer(parts[i].InputNorm.weight), normed, rows, (int)width, (float)parts[i].InputNorm.Eps, brain);
                    attention.Qkv.Multiply(normed, qkv, rows, brain, scratch);
                    if (attention.QueryNorm is { } queryNorm && attention.KeyNorm is { } keyNorm)
                        for (var b = 0; b < rows; b++)   // Qwen3: each query and key head normalised in place, before RoPE
                        {
                            var heads0 = qkv + (nint)(b * qkvWidth * elementSize);
                            RmsNormKernel.NormalizeRows(heads0, Pointer(queryNorm.weight), heads0, nh, hd, (float)queryNorm.Eps, brain);
                            var keys0 = heads0 + (nint)((long)nh * hd * elementSize);
                            RmsNormKernel.NormalizeRows(keys0, Pointer(keyNorm.weight), keys0, nkv, hd, (float)keyNorm.Eps, brain);
                        }
                    // Queries and keys rotated into their own buffer (the rotation reads each pair's partner), values in place.
                    nint queries = qkv, keys = qkv + (nint)((long)nh * hd * elementSize);
                    long queryStride = qkvWidth, keyStride = qkvWidth;
                    if (attention.UsesRope)
                    {
                        RotaryDecodeKernel.RotateRows(qkv, rotated, rows, nh + 2 * nkv, nh + nkv, hd, (nint)cosBytes, (nint)sinBytes, tableRows, brain);
                        (queries, keys) = (rotated, rotated + (nint)((long)nh * hd * elementSize));
                        queryStride = keyStride = (long)(nh + nkv) * hd;
                    }
                    var values = qkv + (nint)((long)(nh + nkv) * hd * elementSize);
                    // A prompt's tokens one after another, each row's t-th token seeing its keys up to its own position.
                    var layout = new SingleQueryAttentionKernel.Heads(batch, nh, nkv, hd, brain);
                    for (var t = 0; t < tokens; t++)
                    {
                        var at = cache.Length + t;
                        var visible = tokens == 1 || maskBytes == null
                            ? (nint)maskBytes
                            : TokenMask((byte*)maskBytes, (byte*)tokenMask, batch, tokens, t, at + 1, cache.Length + tokens);
                        SingleQueryAttentionKernel.AttendRows(layout, queries + (nint)(t * queryStride * elementSize), queryStride * tokens,
                            keys + (nint)(t * keyStride * elementSize), keyStride * tokens,
                            values + (nint)(t * qkvWidth * elementSize), qkvWidth * tokens,
                            cache, heads.LayerIndex, visible, attended + (nint)(t * heads.QueryWidth * elementSize), heads.Settings, at,
                            heads.QueryWidth * tokens);
                    }
                    attention.Output.Multiply(attended, projected, rows, brain, scratch);
                    if (parts[i].ResidualMultiplier is { } attentionMultiplier) ScaleInPlace(projected, rows * width, (float)attentionMultiplier, brain);
                    AddInPlace(residual, projected, rows * width, brain);

                    RmsNormKernel.NormalizeRows(residual, Pointer(parts[i].PostAttentionNorm.weight), normed, rows, (int)width,
                        (float)parts[i].PostAttentionNorm.Eps, brain);
                    mlp.GateUp.Multiply(normed, gateUp, rows, brain, scratch);
                    SwiGluKernel.ApplyRows(gateUp, hidden, rows, (int)mlp.Intermediate, brain);
                    mlp.Down.Multiply(hidden, projected, rows, brain, scratch);
                    if (parts[i].ResidualMultiplier is { } mlpMultiplier) ScaleInPlace(projected, rows * width, (float)mlpMultiplier, brain);
                    AddInPlace(residual, projected, rows * width, brain);
                }
            }
            var result = empty([batch, tokens, width], dtype);
            fixed (byte* output = result.bytes)
                Buffer.MemoryCopy((void*)residual, output, sizes[0], sizes[0]);
            return result;
        }
    }

    /// <summary>
    /// Prompt token t's mask, (B, <paramref name="keys"/>) bools, out of the prompt's (B, 1, T, S) one (S = the keys
    /// before the prompt + T): the kernel reads a mask row per batch row, as long as the keys the token sees.
    /// </summary>
    private static unsafe nint TokenMask(byte* mask, byte* target, int batch, int tokens, int t, int keys, int allKeys)
    {
        for (var b = 0; b < batch; b++)
            Buffer.MemoryCopy(mask + ((long)b * tokens + t) * allKeys, target + (long)b * keys, keys, keys);
        return (nint)target;
    }

    /// <summary>
    /// residual += projected, element by element, rounded to the activations' dtype as libtorch's add rounds (the fp32
    /// sum of the two values, then to nearest even).
    /// </summary>
    internal static unsafe void AddInPlace(nint residual, nint projected, long count, bool brain)
    {
        if (!brain)
        {
            float* r = (float*)residual, p = (float*)projected;
            long i = 0;
            if (Avx512F.IsSupported)
                for (; i + 16 <= count; i += 16) Avx512F.Store(r + i, Avx512F.LoadVector512(r + i) + Avx512F.LoadVector512(p + i));
            for (; i < count; i++) r[i] += p[i];
            return;
        }
        ushort* rb = (ushort*)residual, pb = (ushort*)projected;
        for (long i = 0; i < count; i++) rb[i] = BFloat16Bits.Round(BFloat16Bits.ToSingle(rb[i]) + BFloat16Bits.ToSingle(pb[i]));
    }

    /// <summary>
    /// values *= multiplier, element by element, rounded as libtorch rounds a tensor times a Python float (the product in
    /// fp32 with the multiplier as fp32, then to the activations' dtype): Granite's block output before the residual add.
    /// </summary>
    internal static unsafe void ScaleInPlace(nint values, long count, float multiplier, bool brain)
    {
        if (!brain)
        {
            var v = (float*)values;
            for (long i = 0; i < count; i++) v[i] *= multiplier;
            return;
        }
        var b = (ushort*)values;
        for (long i = 0; i < count; i++) b[i] = BFloat16Bits.Round(BFloat16Bits.ToSingle(b[i]) * multiplier);
    }

    /// <summary>Where a contiguous CPU tensor's elements start.</summary>
    internal static unsafe nint Pointer(Tensor t) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    /// <summary>
    /// Where a view's first element is, contiguous or not (TorchSharp's byte span refuses a strided view such as a KV
    /// cache's keys so far or a fused product's heads): read through a one-element view at the same storage offset.
    /// </summary>
    internal static nint ViewStart(Tensor t)
    {
        if (t.is_contiguous()) return Pointer(t);
        using var first = t.as_strided([1], [1], t.storage_offset());
        return Pointer(first);
    }

    /// <summary>The scratch buffer's 64-byte-aligned start, grown to at least <paramref name="bytes"/>.</summary>
    private nint Scratch(long bytes)
    {
        if (scratch is null || scratchBytes < bytes)
        {
            scratch?.Dispose();
            using var normal = inference_mode(false);
            scratch = empty(bytes + Alignment, ScalarType.Byte).DetachFromDisposeScope();
            scratchBytes = bytes;
            scratchBase = (Pointer(scratch) + Alignment - 1) / Alignment * Alignment;
        }
        return scratchBase;
    }

    private void ReleaseScratch()
    {
        scratch?.Dispose();
        scratch = null;
        scratchBytes = 0;
    }

    public void Dispose() => ReleaseScratch();
}
