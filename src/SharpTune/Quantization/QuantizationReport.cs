using System.Globalization;
using SharpTune.IO;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// How much memory a quantized model's weights take: the quantized linear layers (codes + statistics) and everything
/// kept in the compute dtype (embeddings, norms, head, biases).
/// </summary>
/// <param name="QuantizedWeights">Weights stored quantized.</param>
/// <param name="QuantizedBytes">Bytes of those weights, codes and statistics included.</param>
/// <param name="OtherWeights">Weights kept unquantized (embeddings, norms, head, biases).</param>
/// <param name="OtherBytes">Bytes of those.</param>
public sealed record QuantizationReport(long QuantizedWeights, long QuantizedBytes, long OtherWeights, long OtherBytes)
{
    /// <summary>Storage bits per quantized weight.</summary>
    public double BitsPerQuantizedWeight => QuantizedWeights == 0 ? 0 : 8.0 * QuantizedBytes / QuantizedWeights;

    /// <summary>Bytes per quantized weight.</summary>
    public double BytesPerQuantizedWeight => QuantizedWeights == 0 ? 0 : (double)QuantizedBytes / QuantizedWeights;

    public long TotalBytes => QuantizedBytes + OtherBytes;

    /// <summary>Measures a loaded model.</summary>
    public static QuantizationReport Of(nn.Module model)
    {
        long quantizedWeights = 0, quantizedBytes = 0;
        foreach (var module in model.modules())
        {
            if (module is not QuantizedLinear q) continue;
            quantizedWeights += q.Weight.ElementCount;
            quantizedBytes += q.Weight.StorageBytes;
        }
        long otherWeights = 0, otherBytes = 0;
        foreach (var (_, p) in model.named_parameters())
        {
            otherWeights += p.numel();
            otherBytes += p.numel() * p.ElementSize;
        }
        return new QuantizationReport(quantizedWeights, quantizedBytes, otherWeights, otherBytes);
    }

    /// <summary>
    /// What loading <paramref name="modelDir"/> with <paramref name="options"/> would hold, computed from config.json and
    /// the checkpoint's tensor shapes without reading weights (the modules are built on the meta device).
    /// </summary>
    public static QuantizationReport Estimate(string modelDir, QuantizationOptions options)
    {
        var config = ModelConfig.Load(modelDir);
        using var model = ModelFactory.CreateOnMeta(config, options.ComputeDtype);
        var targets = ModelQuantizer.Targets(model, options.LmHead).ToDictionary(t => t.Path + ".weight", t => Peft.BaseLayer.Shape(t.Module).Out);
        var elementSize = options.ComputeDtype == ScalarType.Float32 ? 4 : 2;
        long quantizedWeights = 0, quantizedBytes = 0, otherWeights = 0, otherBytes = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            var n = p.numel();
            if (targets.TryGetValue(name, out var rows))
            {
                quantizedWeights += n;
                quantizedBytes += BytesFor(n, rows, options);
            }
            else
            {
                otherWeights += n;
                otherBytes += n * elementSize;
            }
        }
        return new QuantizationReport(quantizedWeights, quantizedBytes, otherWeights, otherBytes);
    }

    /// <summary>Bytes of an n-weight matrix with <paramref name="rows"/> output rows stored with <paramref name="options"/>.</summary>
    public static long BytesFor(long n, long rows, QuantizationOptions options)
    {
        if (!options.IsFourBit) return n + 4 * rows;                       // int8 codes + one fp32 absmax per row
        var blocks = (n + FourBitCodec.BlockSize - 1) / FourBitCodec.BlockSize;
        var codes = (n + 1) / 2;
        if (!options.DoubleQuant) return codes + 4 * blocks;               // fp32 absmax per block
        var secondBlocks = (blocks + DoubleQuantizedAbsmax.BlockSize - 1) / DoubleQuantizedAbsmax.BlockSize;
        return codes + blocks + 4 * secondBlocks + 4;                      // uint8 absmax, fp32 absmax₂, fp32 offset
    }

    public override string ToString() => string.Format(CultureInfo.InvariantCulture,
        "{0:N0} quantized weights in {1} ({2:F3} bits, {3:F4} bytes per weight); {4:N0} other weights in {5}; total {6}",
        QuantizedWeights, Bytes(QuantizedBytes), BitsPerQuantizedWeight, BytesPerQuantizedWeight, OtherWeights, Bytes(OtherBytes),
        Bytes(TotalBytes));

    /// <summary>A byte count in MiB or GiB.</summary>
    public static string Bytes(long bytes) => bytes >= 1L << 30
        ? string.Format(CultureInfo.InvariantCulture, "{0:F2} GiB", bytes / (double)(1L << 30))
        : string.Format(CultureInfo.InvariantCulture, "{0:F1} MiB", bytes / (double)(1L << 20));
}
