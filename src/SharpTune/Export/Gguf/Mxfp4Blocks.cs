namespace SharpTune.Export.Gguf;

/// <summary>
/// ggml's MXFP4 blocks (block_mxfp4 in ggml-common.h): per 32 values one E8M0 scale byte <c>e</c> then 16 bytes
/// <c>qs</c>, whose byte j holds value j in its low nibble and value j + 16 in its high nibble, each an E2M1 code that
/// dequantize_row_mxfp4 reads from kvalues_mxfp4 (the E2M1 values doubled) times 2^(e − 128) (GGML_E8M0_TO_FP32_HALF).
/// </summary>
/// <remarks>
/// The checkpoints (transformers' MXFP4 layout, see <see cref="Quantization.Mxfp4"/>) store the same codes with byte j
/// holding values 2j (low nibble) and 2j + 1 (high nibble), and the scales apart. <see cref="Repack"/> moves each code
/// to its ggml place, bit for bit, as ggml-org/llama.cpp@2bbcf7fc's conversion/gpt_oss.py (GptOssModel.repack_mxfp4 and
/// transform_nibble_layout) does; nothing is requantized.
/// </remarks>
internal static class Mxfp4Blocks
{
    public const int BlockValues = 32;
    private const int CodeBytes = BlockValues / 2;

    // kvalues_mxfp4: codes 0–7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6 doubled; 8–15 their negatives.
    private static readonly sbyte[] DoubledValues = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

    /// <summary>
    /// Checkpoint blocks (slices, rows, groups, 16) and scales (slices, rows, groups), flattened, as ggml blocks for the
    /// rows <paramref name="firstRow"/>, <paramref name="firstRow"/> + <paramref name="rowStep"/>, … of every slice: a
    /// (slices, selected rows, groups · 32) MXFP4 tensor, 17 bytes a block.
    /// </summary>
    public static byte[] Repack(ReadOnlySpan<byte> blocks, ReadOnlySpan<byte> scales, long slices, long rows, long groups,
        int firstRow = 0, int rowStep = 1)
    {
        if (blocks.Length != slices * rows * groups * CodeBytes || scales.Length != slices * rows * groups)
            throw new ArgumentException(
                $"MXFP4 blocks of {blocks.Length} bytes and scales of {scales.Length} do not fill ({slices}, {rows}, {groups}) blocks");
        var selected = (rows - firstRow + rowStep - 1) / rowStep;
        var output = new byte[slices * selected * groups * (1 + CodeBytes)];
        var at = 0;
        for (long s = 0; s < slices; s++)
            for (var r = (long)firstRow; r < rows; r += rowStep)
                for (long g = 0; g < groups; g++)
                {
                    var block = (s * rows + r) * groups + g;
                    output[at++] = scales[(int)block];
                    var codes = blocks.Slice((int)(block * CodeBytes), CodeBytes);
                    for (var j = 0; j < CodeBytes; j++)
                        output[at++] = (byte)(Code(codes, j) | (Code(codes, j + CodeBytes) << 4));
                }
        return output;
    }

    // The checkpoint's code of value v in a block: byte v/2, low nibble for even v, high for odd.
    private static int Code(ReadOnlySpan<byte> codes, int value) => (codes[value / 2] >> (4 * (value % 2))) & 0x0F;

    /// <summary>ggml's dequantize_row_mxfp4.</summary>
    public static void Dequantize(ReadOnlySpan<byte> data, Span<float> output)
    {
        for (var b = 0; b < output.Length / BlockValues; b++)
        {
            var block = data.Slice(b * (1 + CodeBytes), 1 + CodeBytes);
            var half = MathF.ScaleB(1f, block[0] - 128);   // GGML_E8M0_TO_FP32_HALF, subnormal below e = 2 as in ggml
            for (var j = 0; j < CodeBytes; j++)
            {
                output[b * BlockValues + j] = DoubledValues[block[1 + j] & 0x0F] * half;
                output[b * BlockValues + j + CodeBytes] = DoubledValues[block[1 + j] >> 4] * half;
            }
        }
    }
}
