using System.Numerics;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Rotary position embedding in Hugging Face's rotate-half form, computed as transformers computes it: float32 inverse
/// frequencies (default, linear, dynamic NTK, YaRN, Llama 3 and LongRoPE scaling, as in modeling_rope_utils), angles = position × inv_freq
/// in float32 per call, cos/sin times the attention factor, cast to the activations' dtype. Partial rotary (Phi-1/1.5/2,
/// Phi-3, GPT-NeoX) rotates only the first <c>rotaryDim</c> dimensions of each head.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor invFreq;        // (rotaryDim/2) float32
    private readonly Tensor? longInvFreq;   // longrope: used once a position reaches past the original context
    private readonly int originalMaxPositions;
    private readonly double attentionScaling;
    private readonly DynamicNtk? dynamic;   // dynamic: a larger base once a position reaches past max_position_embeddings

    /// <param name="rotaryDim">Dimensions rotated per head (head_dim × partial_rotary_factor).</param>
    public RotaryEmbedding(int rotaryDim, double theta, RopeScaling? scaling, Device device)
    {
        using var scope = NewDisposeScope();
        RotaryDim = rotaryDim;
        var exponents = arange(0, rotaryDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / rotaryDim;
        var powers = pow(theta, exponents);                                               // float32, as transformers
        attentionScaling = 1.0;
        switch (scaling?.Type)
        {
            case null or "default":
                invFreq = 1.0f / powers;
                break;
            case "linear":
                invFreq = 1.0f / powers / (float)scaling.Factor;
                break;
            case "llama3":
                invFreq = Llama3(1.0f / powers, scaling);
                break;
            case "yarn":
                (invFreq, attentionScaling) = Yarn(powers, rotaryDim, theta, scaling);
                break;
            case "dynamic":
                invFreq = 1.0f / powers;
                dynamic = new DynamicNtk(theta, rotaryDim, scaling.Factor, scaling.OriginalMaxPositionEmbeddings);
                break;
            case "longrope":
                invFreq = 1.0f / (Factors(scaling.ShortFactor!, rotaryDim) * powers);
                longInvFreq = (1.0f / (Factors(scaling.LongFactor!, rotaryDim) * powers)).to(device).DetachFromDisposeScope();
                originalMaxPositions = scaling.OriginalMaxPositionEmbeddings;
                attentionScaling = scaling.AttentionFactor
                    ?? (scaling.Factor <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(scaling.Factor) / Math.Log(originalMaxPositions)));
                break;
            default:
                throw new NotSupportedException($"rope_scaling type '{scaling.Type}' is not supported");
        }
        invFreq = invFreq.to(device).DetachFromDisposeScope();
    }

    /// <summary>The RoPE of layers with the config's own base and scaling.</summary>
    public static RotaryEmbedding ForConfig(ModelConfig config, Device device) =>
        new(config.RotaryDim, config.RopeTheta, config.RopeScaling, device);

    public int RotaryDim { get; }

    private static Tensor Factors(IReadOnlyList<double> factors, int rotaryDim)
    {
        if (factors.Count != rotaryDim / 2)
            throw new InvalidDataException($"rope_scaling: longrope factors must have {rotaryDim / 2} entries (rotary dim / 2), found {factors.Count}");
        return tensor(factors.Select(f => (float)f).ToArray());
    }

    // transformers' _compute_llama3_parameters: keep high frequencies, divide low ones by the factor, blend in between.
    private static Tensor Llama3(Tensor invFreq, RopeScaling s)
    {
        var lowFreqWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        var highFreqWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        var wavelen = 2 * Math.PI / invFreq;
        var scaled = where(wavelen > lowFreqWavelen, invFreq / s.Factor, invFreq);
        var smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / s.Factor + smooth * scaled;
        var isMedium = (wavelen >= highFreqWavelen).logical_and(wavelen <= lowFreqWavelen);
        return where(isMedium, smoothed, scaled);
    }

    /// <summary>
    /// transformers' _compute_yarn_parameters (4.56 on: the configured factor; 4.55 and earlier replaced it by
    /// max_position_embeddings / original_max_position_embeddings when rope_scaling gave both, transformers#38224, which
    /// llama.cpp, vLLM and Qwen's instructions do not): frequencies that turn fewer than beta_slow times over the original context
    /// are interpolated (divided by the factor), those that turn more than beta_fast times kept, with a linear ramp
    /// between; cos and sin are scaled by 0.1·ln(factor) + 1 (or the mscale ratio DeepSeek's configs give, or
    /// attention_factor).
    /// </summary>
    private static (Tensor InvFreq, double AttentionFactor) Yarn(Tensor powers, int rotaryDim, double theta, RopeScaling s)
    {
        static double MScale(double scale, double mscale = 1) => scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;
        var attentionFactor = s.AttentionFactor ?? (s.Mscale is { } m && m != 0 && s.MscaleAllDim is { } all && all != 0
            ? MScale(s.Factor, m) / MScale(s.Factor, all)
            : MScale(s.Factor));
        // The dimension pair whose frequency turns `rotations` times over the original context.
        double CorrectionDim(double rotations) =>
            rotaryDim * Math.Log(s.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = CorrectionDim(s.BetaFast), high = CorrectionDim(s.BetaSlow);
        if (s.Truncate) (low, high) = (Math.Floor(low), Math.Ceiling(high));
        (low, high) = (Math.Max(low, 0), Math.Min(high, rotaryDim - 1));
        if (low == high) high += 0.001;   // as transformers: no division by zero
        var ramp = ((arange(rotaryDim / 2, dtype: ScalarType.Float32) - low) / (high - low)).clamp(0, 1);
        var extrapolationFactor = 1 - ramp;
        var extrapolation = 1.0f / powers;
        var interpolation = 1.0f / (s.Factor * powers);
        return (interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor, attentionFactor);
    }

    /// <summary>
    /// transformers' dynamic NTK scaling: while a call's positions fit max_position_embeddings the frequencies are the
    /// default ones; past it the base grows with the sequence, base·(factor·len/max − (factor − 1))^(d/(d−2)), len the
    /// call's largest position + 1 (in float32, as transformers computes it from the position tensor). transformers keeps
    /// the largest base it has seen on the module until a shorter-than-max call resets it; here each call takes its own
    /// positions' base, which is the same for a forward pass and for decode steps, whose positions only grow.
    /// </summary>
    private sealed record DynamicNtk(double Theta, int RotaryDim, double Factor, int MaxPositions)
    {
        public Tensor Frequencies(long length, Device device)
        {
            using var scope = NewDisposeScope();
            var scaledBase = Theta * (Factor * tensor((float)length) / MaxPositions - (Factor - 1)).pow(RotaryDim / (RotaryDim - 2.0));
            var exponents = arange(0, RotaryDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / RotaryDim;
            return (1.0f / scaledBase.pow(exponents)).to(device).MoveToOuterDisposeScope();
        }
    }

    /// <summary>cos and sin (B, 1, T, rotaryDim) for the given positions (B, T), computed once per forward pass.</summary>
    public (Tensor Cos, Tensor Sin) Angles(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (cos, sin) = HalfAngles(positionIds, null);
        return (cat([cos, cos], dim: -1).to(dtype).MoveToOuterDisposeScope(), cat([sin, sin], dim: -1).to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The tables <see cref="ApplyRotation"/> takes: cos as in <see cref="Angles"/>, and sin with the first half of
    /// each head negated (rotate_half's sign folded into the table, once per forward pass instead of once per layer).
    /// </summary>
    /// <param name="maxPosition">The largest position id, when the caller knows it (no device read for LongRoPE).</param>
    public (Tensor Cos, Tensor SignedSin) RotationTables(Tensor positionIds, ScalarType dtype, long? maxPosition = null)
    {
        if (DecodeStepRows(positionIds, dtype, maxPosition) is { } rows) return rows;
        using var scope = NewDisposeScope();
        var (cos, signedSin) = SignFolded(HalfAngles(positionIds, maxPosition), dtype);
        return (cos.MoveToOuterDisposeScope(), signedSin.MoveToOuterDisposeScope());
    }

    /// <summary>Half-width cos and sin → the full-width cos and the sign-folded sin (−sin, sin), in <paramref name="dtype"/>.</summary>
    private static (Tensor Cos, Tensor SignedSin) SignFolded((Tensor Cos, Tensor Sin) half, ScalarType dtype) =>
        (cat([half.Cos, half.Cos], dim: -1).to(dtype), cat([-half.Sin, half.Sin], dim: -1).to(dtype));

    /// <summary>transformers' longrope_frequency_update: the long factors once max(position) + 1 exceeds the original context.</summary>
    private bool UsesLongFactors(long maxPosition) => longInvFreq is not null && maxPosition + 1 > originalMaxPositions;

    /// <summary>
    /// A decode step's tables (one position per row, its largest known): the rows of tables computed once for positions
    /// 0 … n−1 (n a power of two, grown as positions pass it), instead of a dozen tensor calls a step (~80 µs of M's
    /// ~7.5 ms bf16 step). Bit for bit what <see cref="RotationTables"/> computes per call: the same float32 products,
    /// cos, sin, factor and cast, element for element. Only where rotaryDim/2 is whole 16-value vectors: libtorch takes
    /// the last few values of a call one by one through the C library's cos and sin, which can differ from its vector
    /// form in the last bit, and whole vectors in both forms keep every value in the vector form. Null otherwise.
    /// </summary>
    private (Tensor Cos, Tensor SignedSin)? DecodeStepRows(Tensor positionIds, ScalarType dtype, long? maxPosition)
    {
        if (maxPosition is not { } max || max < 0 || RotaryDim / 2 % VectorValues != 0 || positionIds.dim() != 2 || positionIds.size(1) != 1 ||
            (dynamic is not null && max + 1 > dynamic.MaxPositions))   // each step's own frequencies
            return null;
        var useLong = UsesLongFactors(max);
        Tensor cosRows, sinRows;
        lock (stepTableGate)
        {
            if (stepTables is not { } tables || tables.Dtype != dtype || tables.Long != useLong || tables.Cos.size(0) <= max ||
                tables.Cos.device_type != positionIds.device_type)
            {
                stepTables?.Dispose();
                stepTables = tables = StepTables(Math.Max(MinStepTableRows, (long)BitOperations.RoundUpToPowerOf2((ulong)max + 1)), dtype,
                    max, positionIds.device);
            }
            var rows = positionIds.size(0);
            using var flat = positionIds.reshape(rows);
            cosRows = tables.Cos.index_select(0, flat).view(rows, 1, 1, RotaryDim);
            sinRows = tables.SignedSin.index_select(0, flat).view(rows, 1, 1, RotaryDim);
        }
        return (cosRows, sinRows);
    }

    /// <summary>
    /// cos and signed sin (rows, rotaryDim) of positions 0 … rows−1 through <see cref="HalfAngles"/>, with the
    /// frequencies a call whose largest position is <paramref name="maxPosition"/> uses.
    /// </summary>
    private StepTableSet StepTables(long rows, ScalarType dtype, long maxPosition, Device device)
    {
        using var scope = NewDisposeScope();
        var half = RotaryDim / 2;
        // Blocks of at most libtorch's grain size: a larger call is split between threads at an arbitrary element, and each
        // part's last few values would take the one-by-one form.
        var blockRows = Math.Max(1, ParallelGrain / half);
        var cosBlocks = new List<Tensor>();
        var sinBlocks = new List<Tensor>();
        for (long start = 0; start < rows; start += blockRows)
        {
            var positions = arange(start, Math.Min(rows, start + blockRows), dtype: ScalarType.Int64, device: device).unsqueeze(0);
            var (cos, sin) = HalfAngles(positions, maxPosition);                                          // (1, 1, block, rd/2)
            cosBlocks.Add(cos.reshape(-1, half));
            sinBlocks.Add(sin.reshape(-1, half));
        }
        var (allCos, signedSin) = SignFolded((cat(cosBlocks, 0), cat(sinBlocks, 0)), dtype);
        return new StepTableSet(allCos.DetachFromDisposeScope(), signedSin.DetachFromDisposeScope(), dtype, UsesLongFactors(maxPosition));
    }

    private const int VectorValues = 16;        // an AVX-512 vector of float32 (two AVX2 ones)
    private const long ParallelGrain = 32768;   // at::internal::GRAIN_SIZE
    private const long MinStepTableRows = 256;
    private readonly object stepTableGate = new();
    private StepTableSet? stepTables;

    private sealed record StepTableSet(Tensor Cos, Tensor SignedSin, ScalarType Dtype, bool Long) : IDisposable
    {
        public void Dispose()
        {
            Cos.Dispose();
            SignedSin.Dispose();
        }
    }

    /// <summary>cos and sin (B, 1, T, rotaryDim/2) in float32, times the attention factor: each frequency once.</summary>
    private (Tensor Cos, Tensor Sin) HalfAngles(Tensor positionIds, long? maxPosition)
    {
        var frequencies = invFreq;
        if (longInvFreq is not null && positionIds.numel() > 0 && UsesLongFactors(maxPosition ?? positionIds.max().item<long>()))
            frequencies = longInvFreq;
        if (dynamic is not null && positionIds.numel() > 0 && (maxPosition ?? positionIds.max().item<long>()) + 1 is var length &&
            length > dynamic.MaxPositions)
            frequencies = dynamic.Frequencies(length, positionIds.device);
        if (frequencies.device_type != positionIds.device_type) frequencies = frequencies.to(positionIds.device);
        var freqs = (positionIds.to(ScalarType.Float32).unsqueeze(-1) * frequencies).unsqueeze(1);             // (B, 1, T, rd/2)
        var cos = freqs.cos();
        var sin = freqs.sin();
        if (attentionScaling != 1.0)
        {
            cos = cos * attentionScaling;
            sin = sin * attentionScaling;
        }
        return (cos, sin);
    }

    /// <summary>Rotates q (B, nh, T, hd) and k (B, nkv, T, hd) by the angles from <see cref="Angles"/>.</summary>
    public static (Tensor q, Tensor k) Apply(Tensor q, Tensor k, (Tensor Cos, Tensor Sin) angles) =>
        (Rotate(q, angles), Rotate(k, angles));

    /// <summary>Rotates the first rotaryDim dimensions of x (B, h, T, hd); the rest pass through (partial rotary).</summary>
    public static Tensor Rotate(Tensor x, (Tensor Cos, Tensor Sin) angles)
    {
        var rotary = angles.Cos.shape[^1];
        if (rotary == x.shape[^1]) return x * angles.Cos + RotateHalf(x) * angles.Sin;
        var rot = x.narrow(-1, 0, rotary);
        var pass = x.narrow(-1, rotary, x.shape[^1] - rotary);
        return cat([rot * angles.Cos + RotateHalf(rot) * angles.Sin, pass], dim: -1);
    }

    /// <summary>
    /// Rotates the first rotaryDim dimensions of x (…, hd) by tables from <see cref="RotationTables"/>:
    /// x·cos + roll(x, rd/2)·signed sin. Element for element the same products and sum as <see cref="Rotate"/>
    /// (−x₂·sin = x₂·(−sin) exactly), in one roll instead of rotate_half's narrow, neg and cat. The products and the
    /// roll are freed on return: autograd keeps only the tables for their gradient, and left to the layer's scope they
    /// were three more copies of q and of k until the layer ended (9 MB a layer on M at 4×256, in a checkpointed
    /// layer's recomputation too).
    /// </summary>
    public static Tensor ApplyRotation(Tensor x, (Tensor Cos, Tensor SignedSin) tables)
    {
        using var scope = NewDisposeScope();
        var rotary = tables.Cos.size(-1);
        if (rotary == x.size(-1)) return (x * tables.Cos + x.roll(rotary / 2, -1) * tables.SignedSin).MoveToOuterDisposeScope();
        var rot = x.narrow(-1, 0, rotary);
        var pass = x.narrow(-1, rotary, x.shape[^1] - rotary);
        return cat([rot * tables.Cos + rot.roll(rotary / 2, -1) * tables.SignedSin, pass], dim: -1).MoveToOuterDisposeScope();
    }

    private static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return cat([-x2, x1], dim: -1);
    }

    public void Dispose()
    {
        stepTables?.Dispose();
        invFreq.Dispose();
        longInvFreq?.Dispose();
    }
}
