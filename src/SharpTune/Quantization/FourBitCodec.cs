using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// bitsandbytes' blockwise 4-bit quantization (<c>quantize_4bit</c> / <c>dequantize_4bit</c>): blocks of 64 weights in
/// row-major order, one absmax per block, each scaled value replaced by the index of the nearest of 16 codes, two
/// indices per byte — the first element in the high nibble, the second in the low one. The code book is the
/// subclass's (<see cref="Nf4Codec"/>, <see cref="Fp4Codec"/>).
/// </summary>
public abstract class FourBitCodec
{
    /// <summary>Weights per absmax (bitsandbytes' default <c>blocksize=64</c>).</summary>
    public const int BlockSize = 64;

    private readonly Lazy<float[]> code;
    private readonly Lazy<(float[] Sorted, long[] Order)> sorted;
    private readonly DeviceTables pairTables;

    protected FourBitCodec()
    {
        code = new Lazy<float[]>(() =>
        {
            // get_4bit_type: the raw table divided by its largest magnitude, in fp32.
            var raw = RawCode;
            var max = raw.Max(Math.Abs);
            return raw.Select(v => v / max).ToArray();
        });
        sorted = new Lazy<(float[], long[])>(() =>
        {
            // A stable ascending order (FP4's two zeros: pattern 0 before 8, as torch.argsort orders them), so bucket indices map back to bit patterns.
            var order = Enumerable.Range(0, 16).OrderBy(i => code.Value[i]).Select(i => (long)i).ToArray();
            return (order.Select(i => code.Value[i]).ToArray(), order);
        });
        // One byte holds two codes: a (256, 2) table turns a packed byte straight into its two values.
        pairTables = new DeviceTables(device =>
        {
            var pairs = new float[512];
            for (var b = 0; b < 256; b++)
            {
                pairs[2 * b] = code.Value[b >> 4];
                pairs[2 * b + 1] = code.Value[b & 0xF];
            }
            return tensor(pairs, device: device).view(256, 2);
        });
    }

    /// <summary>The storage format this codec writes.</summary>
    public abstract QuantizationType Type { get; }

    /// <summary>The 16 values before normalisation, indexed by the 4-bit pattern, as bitsandbytes lists them.</summary>
    protected abstract float[] RawCode { get; }

    /// <summary>The 16 normalised code values in [-1, 1], indexed by the 4-bit pattern.</summary>
    public IReadOnlyList<float> Code => code.Value;

    /// <summary>The codec for <paramref name="type"/> (NF4 or FP4).</summary>
    public static FourBitCodec For(QuantizationType type) => type switch
    {
        QuantizationType.Nf4 => Nf4Codec.Instance,
        QuantizationType.Fp4 => Fp4Codec.Instance,
        _ => throw new ArgumentException($"{type} is not a 4-bit format"),
    };

    /// <summary>
    /// Elements quantized at once: the fp32 and int64 temporaries of one chunk take ~35 bytes per element (~4.5 MB), so
    /// quantizing at load time never needs more than that beside the model, whatever the layer's size.
    /// </summary>
    internal const long ChunkElements = 1L << 17;

    /// <summary>Quantizes <paramref name="weight"/> (out, in), any float dtype; values as read in fp32.</summary>
    /// <param name="doubleQuant">Quantize the absmax values too (<see cref="DoubleQuantizedAbsmax"/>).</param>
    public FourBitWeight Quantize(Tensor weight, bool doubleQuant) => Quantize(weight, doubleQuant, ChunkElements);

    /// <summary>
    /// As above, <paramref name="chunkElements"/> (a multiple of the block size) at a time: blocks are consecutive
    /// runs of 64 in row-major order, so chunks aligned to them give exactly the whole tensor's codes and absmax.
    /// </summary>
    internal FourBitWeight Quantize(Tensor weight, bool doubleQuant, long chunkElements)
    {
        if (weight.dim() != 2) throw new ArgumentException($"expected an (out, in) weight, got {weight.dim()} dimensions");
        if (chunkElements <= 0 || chunkElements % BlockSize != 0)
            throw new ArgumentException($"chunks must be a positive multiple of {BlockSize} elements, not {chunkElements}");
        using var scope = NewDisposeScope();
        var flat = weight.reshape(-1);
        var n = flat.numel();
        var packed = empty((n + 1) / 2, ScalarType.Byte, device: weight.device);
        var absmax = empty((n + BlockSize - 1) / BlockSize, ScalarType.Float32, device: weight.device);
        var (sortedCode, order) = sorted.Value;
        var bitPatterns = tensor(order, device: weight.device);
        for (long start = 0; start < n; start += chunkElements)
        {
            using var chunkScope = NewDisposeScope();
            var length = Math.Min(chunkElements, n - start);
            var (scaled, chunkAbsmax) = Blockwise.Scale(flat.narrow(0, start, length), BlockSize);
            absmax.narrow(0, start / BlockSize, chunkAbsmax.numel()).copy_(chunkAbsmax);
            if (scaled.numel() % 2 == 1) scaled = nn.functional.pad(scaled, [0, 1]);   // only the last chunk can be odd
            var indices = bitPatterns.index_select(0, Blockwise.NearestCode(scaled, sortedCode)).to(ScalarType.Byte).view(-1, 2);
            var pairs = indices[.., 0].bitwise_left_shift(4).bitwise_or(indices[.., 1]);   // first value high
            packed.narrow(0, start / 2, pairs.numel()).copy_(pairs);
        }
        return doubleQuant
            ? new FourBitWeight(this, weight.shape[0], weight.shape[1], packed.MoveToOuterDisposeScope(), null,
                DoubleQuantizedAbsmax.Quantize(absmax))
            : new FourBitWeight(this, weight.shape[0], weight.shape[1], packed.MoveToOuterDisposeScope(),
                absmax.MoveToOuterDisposeScope(), null);
    }

    /// <summary>
    /// The 4-bit indices of <paramref name="packed"/> in element order (int64), for inspection: byte b holds
    /// element 2i in b &gt;&gt; 4 and element 2i+1 in b &amp; 0xF.
    /// </summary>
    public static Tensor Unpack(Tensor packed)
    {
        using var scope = NewDisposeScope();
        var bytes = packed.to(ScalarType.Int64);
        return stack([bytes.bitwise_right_shift(4), bytes.bitwise_and(0xF)], 1).reshape(-1).MoveToOuterDisposeScope();
    }

    /// <summary>code[q] · absmax of every element, fp32, (out, in).</summary>
    internal Tensor DequantizeFloat32(FourBitWeight weight)
    {
        using var scope = NewDisposeScope();
        var n = weight.ElementCount;
        var values = pairTables.On(weight.Packed.device).index_select(0, weight.Packed.to(ScalarType.Int32)).view(-1);
        if (values.numel() != n) values = values.narrow(0, 0, n);
        return Blockwise.Rescale(values, weight.AbsmaxFloat32(), BlockSize).view(weight.OutFeatures, weight.InFeatures)
            .MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A 4-bit weight: packed codes, and either the fp32 absmax per block of 64 or its double-quantized form.
/// </summary>
public sealed class FourBitWeight : QuantizedWeight
{
    internal FourBitWeight(FourBitCodec codec, long outFeatures, long inFeatures, Tensor packed, Tensor? absmax,
        DoubleQuantizedAbsmax? doubleQuantized) : base(outFeatures, inFeatures)
    {
        Codec = codec;
        // Stored weights outlive every dispose scope of the code that quantized them.
        Packed = packed.DetachFromDisposeScope();
        Absmax = absmax?.DetachFromDisposeScope();
        DoubleQuantized = doubleQuantized;
    }

    public FourBitCodec Codec { get; }

    /// <summary>Two 4-bit indices per byte (uint8, ⌈n/2⌉).</summary>
    public Tensor Packed { get; }

    /// <summary>fp32 absmax per block of 64, when not double-quantized.</summary>
    public Tensor? Absmax { get; }

    /// <summary>The quantized absmax, when double-quantized.</summary>
    public DoubleQuantizedAbsmax? DoubleQuantized { get; }

    public override QuantizationType Type => Codec.Type;

    /// <summary>
    /// The dtype the weight had when it was quantized (a bitsandbytes quant_state's <c>dtype</c>), when known and not fp32:
    /// bitsandbytes dequantizes to it and then casts to the compute dtype, so a wider compute dtype sees the rounded values.
    /// </summary>
    public ScalarType? QuantizedFrom { get; internal set; }

    public override Device Device => Packed.device;

    public override IReadOnlyDictionary<string, Tensor> StoredTensors => DoubleQuantized is { } dq
        ? new Dictionary<string, Tensor>
        {
            ["weight"] = Packed, ["absmax"] = dq.Codes, ["nested_absmax"] = dq.Absmax, ["offset"] = dq.Offset,
        }
        : new Dictionary<string, Tensor> { ["weight"] = Packed, ["absmax"] = Absmax! };

    /// <summary>The per-block absmax in fp32 (dequantized from the second level when double-quantized).</summary>
    public Tensor AbsmaxFloat32() => DoubleQuantized?.Dequantize() ?? Absmax!.alias();

    private Tensor? blockAbsmax;   // the decode kernel's fp32 block scales (0.5 bit per weight), made on first use

    /// <summary>The fp32 absmax per block, kept after the first call (the stored form may be double-quantized).</summary>
    internal Tensor BlockAbsmaxFloat32()
    {
        if (blockAbsmax is null)
        {
            using var scope = NewDisposeScope();
            using var normal = inference_mode(false);   // first read may be in a decode step; training reads it later
            blockAbsmax = AbsmaxFloat32().to(ScalarType.Float32).contiguous().DetachFromDisposeScope();
        }
        return blockAbsmax;
    }

    protected override void ReleaseCaches()
    {
        blockAbsmax?.Dispose();
        blockAbsmax = null;
    }

    /// <summary>x Wᵀ: decoding on the CPU reads the codes directly (<see cref="FourBitMatVec"/>); otherwise dequantize and multiply.</summary>
    public override Tensor MatmulTransposed(Tensor x) =>
        FourBitMatVec.Supports(x, this) ? FourBitMatVec.Multiply(x, this) : base.MatmulTransposed(x);

    [ThreadStatic] private static long dequantizations;

    /// <summary>Full dequantizations of any 4-bit weight on this thread so far (tests count them per training step).</summary>
    internal static long DequantizationsOnThisThread => dequantizations;

    /// <summary>On the CPU in bf16 or fp32, one SIMD pass (<see cref="FourBitDequantizer"/>); otherwise <see cref="DequantizeWithTorch"/>.</summary>
    public override Tensor Dequantize(ScalarType dtype)
    {
        if (QuantizedFrom is { } narrower && narrower != dtype && narrower != ScalarType.Float32)
        {
            using var rounded = Dequantize(narrower);
            return rounded.to(dtype);
        }
        dequantizations++;
        return FourBitDequantizer.Supports(this, dtype) ? FourBitDequantizer.Dequantize(this, dtype) : DequantizeWithTorch(dtype);
    }

    /// <summary>The dequantization in TorchSharp operations (any device and dtype): the reference the SIMD pass must equal.</summary>
    internal Tensor DequantizeWithTorch(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        return Codec.DequantizeFloat32(this).to(dtype).MoveToOuterDisposeScope();
    }

    public override QuantizedWeight To(Device device) => device.ToString() == Device.ToString()
        ? this
        : new FourBitWeight(Codec, OutFeatures, InFeatures, Packed.to(device), Absmax?.to(device), DoubleQuantized?.To(device))
        {
            QuantizedFrom = QuantizedFrom,
        };
}
