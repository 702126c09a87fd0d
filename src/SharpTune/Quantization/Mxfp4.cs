using System.Text.Json.Nodes;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// The MXFP4 format gpt-oss checkpoints store their experts in (config.json's <c>quantization_config</c>
/// {"quant_method": "mxfp4"}): per expert weight <c>X</c>, <c>X_blocks</c> (…, R, G, 16) uint8 — two 4-bit E2M1 values a
/// byte, the low nibble first — and <c>X_scales</c> (…, R, G) uint8, one E8M0 exponent (bias 127) per 32 values. Loading
/// dequantizes them to the model's dtype, as transformers does when it cannot run the MXFP4 kernels.
/// </summary>
/// <remarks>
/// As huggingface/transformers@0189b1d0 (integrations/mxfp4.py, convert_moe_packed_tensors): value 2j of a row's group g
/// is FP4[byte j &amp; 0x0F] and value 2j + 1 is FP4[byte j &gt;&gt; 4], each times 2^(scale − 127); the rows (…, R, G·32)
/// are then transposed to (…, G·32, R), the layout of the model's gate_up_proj (E, C, 2·I) and down_proj (E, I, C).
/// </remarks>
internal static class Mxfp4
{
    /// <summary>config.json's quant_method for this format.</summary>
    public const string QuantMethod = "mxfp4";

    public const string BlocksSuffix = "_blocks";
    public const string ScalesSuffix = "_scales";

    // E2M1: sign, two exponent bits (bias 1), one mantissa bit; codes 0–7 positive, 8–15 their negatives.
    private static readonly float[] Fp4Values = [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>Whether <paramref name="modelDir"/>'s config.json declares MXFP4 weights.</summary>
    public static bool IsDeclared(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) return false;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) is JsonObject root &&
                   root[BitsAndBytesConfig.Key]?["quant_method"]?.GetValue<string>() == QuantMethod;
        }
        catch (System.Text.Json.JsonException) { return false; }   // ModelConfig.Load reports a malformed config.json
        catch (InvalidOperationException) { return false; }        // not a string: BitsAndBytesConfig reports it
    }

    /// <summary>
    /// Why an MXFP4 folder cannot be loaded quantized (bitsandbytes): every path that would quantize it refuses with this,
    /// rather than failing later on the experts' packed tensor names.
    /// </summary>
    public static string RequantizingRefused(string modelDir) =>
        $"{modelDir}: the checkpoint stores its experts in MXFP4 (quantization_config.quant_method = \"mxfp4\"); " +
        "quantizing it again (bitsandbytes) is not supported: load it without quantization (the experts are dequantized)";

    /// <summary>
    /// <paramref name="checkpoint"/> as the model's weights: dequantizing the experts when <paramref name="modelDir"/>
    /// declares MXFP4, as it is otherwise.
    /// </summary>
    public static ITensorSource WeightsOf(string modelDir, IO.CheckpointIndex checkpoint)
    {
        var source = new PretrainedModel.CheckpointSource(checkpoint);
        return IsDeclared(modelDir) ? new DequantizingSource(source) : source;
    }

    /// <summary>The dequantized shape of blocks (…, R, G, 16): (…, G·32, R).</summary>
    public static long[] DequantizedShape(long[] blocksShape, string name)
    {
        if (blocksShape.Length < 3 || blocksShape[^1] != 16)
            throw new InvalidDataException(
                $"{name}: MXFP4 blocks must be (…, rows, groups, 16) bytes, found [{string.Join(", ", blocksShape)}]");
        return [.. blocksShape[..^3], blocksShape[^2] * 32, blocksShape[^3]];
    }

    /// <summary>blocks (…, R, G, 16) and scales (…, R, G), both uint8 → the weight (…, G·32, R) in <paramref name="dtype"/>.</summary>
    public static Tensor Dequantize(Tensor blocks, Tensor scales, ScalarType dtype, string name = "MXFP4 tensor")
    {
        var weight = empty(DequantizedShape(blocks.shape, name), dtype, blocks.device);
        try { DequantizeInto(blocks, scales, weight, name); }
        catch { weight.Dispose(); throw; }
        return weight;
    }

    /// <summary>
    /// Dequantizes blocks and scales straight into <paramref name="destination"/> (…, G·32, R), one expert at a time: a
    /// loaded parameter is filled without a second full-size tensor (a 120b gate_up_proj is ~4 GB in bf16).
    /// </summary>
    public static void DequantizeInto(Tensor blocks, Tensor scales, Tensor destination, string name = "MXFP4 tensor")
    {
        if (blocks.dtype != ScalarType.Byte || scales.dtype != ScalarType.Byte)
            throw new InvalidDataException($"{name}: MXFP4 blocks and scales must be uint8, found {blocks.dtype} and {scales.dtype}");
        var shape = DequantizedShape(blocks.shape, name);
        if (!scales.shape.SequenceEqual(blocks.shape[..^1]))
            throw new InvalidDataException(
                $"{name}: MXFP4 scales [{string.Join(", ", scales.shape)}] must be the blocks' shape without its last dimension " +
                $"[{string.Join(", ", blocks.shape[..^1])}]");
        if (!destination.shape.SequenceEqual(shape))
            throw new InvalidDataException(
                $"{name}: dequantizes to [{string.Join(", ", shape)}], the parameter is [{string.Join(", ", destination.shape)}]");
        using var scope = NewDisposeScope();
        var (rows, groups) = (blocks.shape[^3], blocks.shape[^2]);
        var slices = blocks.shape[..^3].Aggregate(1L, (a, b) => a * b);
        var flatBlocks = blocks.reshape(slices, rows, groups, 16);
        var flatScales = scales.reshape(slices, rows, groups);
        var flatDestination = destination.view(slices, groups * 32, rows);                              // shares its memory
        var table = tensor(Fp4Values, device: blocks.device);                                          // (16)
        // One expert at a time: the int64 codes of a whole gpt-oss-20b gate_up_proj would take gigabytes.
        for (var i = 0L; i < slices; i++)
        {
            using var sliceScope = NewDisposeScope();
            var bytes = flatBlocks[i];                                                                  // (R, G, 16)
            var low = table.index(bytes.bitwise_and(0x0F).to(ScalarType.Int64));                       // value 2j
            var high = table.index(bytes.bitwise_right_shift(4).to(ScalarType.Int64));                 // value 2j + 1
            var values = stack([low, high], dim: -1).reshape(rows, groups, 32);
            // E8M0: 2^(s − 127); an E2M1 value times a power of two is exact in float32 (as in transformers' ldexp).
            var powers = exp2(flatScales[i].to(ScalarType.Float32) - 127).unsqueeze(-1);              // (R, G, 1)
            flatDestination[i].copy_((values * powers).reshape(rows, groups * 32).t());                // (G·32, R)
        }
    }

    /// <summary>
    /// The number of weights <paramref name="checkpoint"/> holds once each MXFP4 blocks/scales pair counts as the weight
    /// it dequantizes to (32 values per scale), every other tensor by its elements.
    /// </summary>
    public static long WeightCount(IO.CheckpointIndex checkpoint)
    {
        var source = new DequantizingSource(new PretrainedModel.CheckpointSource(checkpoint));
        return source.Names.Sum(n => source.ShapeOf(n).Aggregate(1L, (a, b) => a * b));
    }

    /// <summary>
    /// A checkpoint seen with each <c>X_blocks</c> / <c>X_scales</c> pair replaced by the dequantized tensor <c>X</c>;
    /// every other tensor passes through.
    /// </summary>
    internal sealed class DequantizingSource(ITensorSource stored) : ITensorSource
    {
        private readonly Dictionary<string, (string Blocks, string Scales)> packed = PairsOf(stored.Names);

        public IReadOnlyCollection<string> Names => field ??= stored.Names.Where(n => !IsPackedPart(n, packed)).Concat(packed.Keys).ToArray();

        public IReadOnlyDictionary<string, string> Aliases => stored.Aliases;

        public long[] ShapeOf(string name) =>
            packed.TryGetValue(name, out var pair) ? DequantizedShape(stored.ShapeOf(pair.Blocks), pair.Blocks) : stored.ShapeOf(name);

        public Tensor Read(string name, ScalarType dtype)
        {
            if (!packed.TryGetValue(name, out var pair)) return stored.Read(name, dtype);
            using var blocks = stored.Read(pair.Blocks, ScalarType.Byte);
            using var scales = stored.Read(pair.Scales, ScalarType.Byte);
            return Dequantize(blocks, scales, dtype, pair.Blocks);
        }

        public void ReadInto(string name, Tensor destination)
        {
            if (!packed.TryGetValue(name, out var pair)) { stored.ReadInto(name, destination); return; }
            if (!destination.is_contiguous())
            {
                using var value = Read(name, destination.dtype);
                destination.copy_(value);
                return;
            }
            // Straight into the parameter: only the packed bytes (a quarter of the bf16 weight) are held besides it.
            using var blocks = stored.Read(pair.Blocks, ScalarType.Byte);
            using var scales = stored.Read(pair.Scales, ScalarType.Byte);
            DequantizeInto(blocks, scales, destination, pair.Blocks);
        }

        private static bool IsPackedPart(string name, Dictionary<string, (string Blocks, string Scales)> pairs) =>
            (name.EndsWith(BlocksSuffix, StringComparison.Ordinal) && pairs.ContainsKey(name[..^BlocksSuffix.Length])) ||
            (name.EndsWith(ScalesSuffix, StringComparison.Ordinal) && pairs.ContainsKey(name[..^ScalesSuffix.Length]));

        private static Dictionary<string, (string Blocks, string Scales)> PairsOf(IReadOnlyCollection<string> names)
        {
            var all = names.ToHashSet(StringComparer.Ordinal);
            var pairs = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
            foreach (var blocks in all.Where(n => n.EndsWith(BlocksSuffix, StringComparison.Ordinal)))
            {
                var weight = blocks[..^BlocksSuffix.Length];
                if (all.Contains(weight + ScalesSuffix)) pairs[weight] = (blocks, weight + ScalesSuffix);
                else throw new InvalidDataException($"{blocks}: an MXFP4 blocks tensor without its {weight + ScalesSuffix}");
            }
            return pairs;
        }
    }
}
