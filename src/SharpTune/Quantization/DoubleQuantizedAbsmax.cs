using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// The absmax statistics of a 4-bit weight, quantized once more (QLoRA's double quantization, bitsandbytes'
/// <c>compress_statistics</c>): their mean is subtracted (<c>offset</c>), the rest is quantized blockwise to 8 bits in
/// blocks of 256 with bitsandbytes' signed dynamic map (<c>create_dynamic_map()</c>), one fp32 absmax per block.
/// Costs 8/64 + 32/(64·256) ≈ 0.127 bits per weight instead of 32/64 = 0.5.
/// </summary>
public sealed class DoubleQuantizedAbsmax : IDisposable
{
    /// <summary>Block size of the second quantization (bitsandbytes' fixed 256).</summary>
    public const int BlockSize = 256;

    private static readonly Lazy<float[]> Map = new(() => DynamicQuantizationMap.Signed);
    private static readonly DeviceTables MapTables = new(device => tensor(Map.Value, device: device));

    private readonly Tensor? storedMap;   // a checkpoint's own nested_quant_map when it is not this build's dynamic map

    private DoubleQuantizedAbsmax(Tensor codes, Tensor absmax, Tensor offset, Tensor? map = null)
    {
        storedMap = map?.DetachFromDisposeScope();
        Codes = codes.DetachFromDisposeScope();   // stored statistics outlive the scope that computed them
        Absmax = absmax.DetachFromDisposeScope();
        Offset = offset.DetachFromDisposeScope();
    }

    /// <summary>One 8-bit index into <see cref="DynamicMap"/> per first-level block (uint8).</summary>
    public Tensor Codes { get; }

    /// <summary>One fp32 absmax per 256 codes.</summary>
    public Tensor Absmax { get; }

    /// <summary>The fp32 mean of the original absmax values (a scalar tensor).</summary>
    public Tensor Offset { get; }

    /// <summary>bitsandbytes' 256-entry signed dynamic map, ascending.</summary>
    public static IReadOnlyList<float> DynamicMap => Map.Value;

    /// <summary>Quantizes the (fp32) absmax values of a 4-bit weight.</summary>
    public static DoubleQuantizedAbsmax Quantize(Tensor absmax)
    {
        using var scope = NewDisposeScope();
        var values = absmax.to(ScalarType.Float32);
        var offset = values.mean();
        var (scaled, secondAbsmax) = Blockwise.Scale(values - offset, BlockSize);
        var codes = Blockwise.NearestCode(scaled, Map.Value).to(ScalarType.Byte);
        return new DoubleQuantizedAbsmax(codes.MoveToOuterDisposeScope(), secondAbsmax.MoveToOuterDisposeScope(),
            offset.MoveToOuterDisposeScope());
    }

    /// <summary>Statistics as a bitsandbytes checkpoint stores them: codes (uint8), fp32 second-level absmax, the offset.</summary>
    /// <paramref name="map"/> (256 fp32) is kept when it differs from <see cref="DynamicMap"/>: bitsandbytes dequantizes
    /// with the stored map, and torch versions' linspace differ in the last bit of some entries.
    internal static DoubleQuantizedAbsmax FromStored(Tensor codes, Tensor absmax, float offset, Tensor map)
    {
        var values = map.to(ScalarType.Float32).reshape(-1).data<float>().ToArray();
        var same = values.Length == Map.Value.Length &&
                   values.Select(BitConverter.SingleToInt32Bits).SequenceEqual(Map.Value.Select(BitConverter.SingleToInt32Bits));
        return new DoubleQuantizedAbsmax(codes, absmax, tensor(offset), same ? null : map.to(ScalarType.Float32).reshape(-1).clone());
    }

    /// <summary>The 256 values the codes index: this build's dynamic map, or the checkpoint's own.</summary>
    public IReadOnlyList<float> CodeValues => storedMap is null ? Map.Value : storedMap.data<float>().ToArray();

    /// <summary>The first-level absmax values, fp32: code[q] · absmax₂ + offset (bitsandbytes' dequantize_4bit).</summary>
    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        var map = storedMap is null ? MapTables.On(Codes.device) : storedMap.to(Codes.device);
        var values = map.index_select(0, Codes.to(ScalarType.Int64));
        return (Blockwise.Rescale(values, Absmax, BlockSize) + Offset).MoveToOuterDisposeScope();
    }

    /// <summary>The same statistics on <paramref name="device"/>.</summary>
    public DoubleQuantizedAbsmax To(Device device) => new(Codes.to(device), Absmax.to(device), Offset.to(device), storedMap?.to(device));

    public void Dispose()
    {
        Codes.Dispose();
        Absmax.Dispose();
        Offset.Dispose();
        storedMap?.Dispose();
    }
}
