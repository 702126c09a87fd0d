namespace SharpTune.Export.Gguf;

/// <summary>ggml's tensor types (the numbers are ggml's <c>enum ggml_type</c>, stored in GGUF tensor infos).</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
    /// <summary>OCP microscaling FP4: per 32 values one E8M0 scale byte and 16 bytes of E2M1 codes (ggml's block_mxfp4).</summary>
    MXFP4 = 39,
}

/// <summary>Block geometry of each <see cref="GgmlType"/>: values per block and bytes per block (ggml's type traits).</summary>
internal static class GgmlTypeInfo
{
    /// <summary>Values in a K-quant super-block (ggml's QK_K).</summary>
    public const int SuperBlock = 256;

    public static int BlockSize(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 => 1,
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.MXFP4 => 32,
        GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => SuperBlock,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    public static int BytesPerBlock(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 or GgmlType.BF16 => 2,
        GgmlType.Q4_0 => 2 + 16,
        GgmlType.Q5_0 => 2 + 4 + 16,
        GgmlType.Q5_1 => 2 + 2 + 4 + 16,
        GgmlType.Q8_0 => 2 + 32,
        GgmlType.MXFP4 => 1 + 16,
        GgmlType.Q4_K => 2 + 2 + 12 + 128,
        GgmlType.Q5_K => 2 + 2 + 12 + 32 + 128,
        GgmlType.Q6_K => 128 + 64 + 16 + 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    /// <summary>Bytes of a row of <paramref name="columns"/> values (ggml_row_size).</summary>
    public static long RowBytes(GgmlType type, long columns)
    {
        var block = BlockSize(type);
        if (columns % block != 0)
            throw new ArgumentException($"{type} needs rows whose length is a multiple of {block}; this row has {columns} values");
        return columns / block * BytesPerBlock(type);
    }

    public static bool IsQuantized(GgmlType type) => type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16);

    /// <summary>ggml's lower-case type name (q4_K, f16…), as llama.cpp prints it.</summary>
    public static string Name(GgmlType type) => type switch
    {
        GgmlType.Q4_K => "q4_K",
        GgmlType.Q5_K => "q5_K",
        GgmlType.Q6_K => "q6_K",
        _ => type.ToString().ToLowerInvariant(),
    };
}

/// <summary>llama.cpp's <c>llama_ftype</c> values written as <c>general.file_type</c>.</summary>
internal enum LlamaFileType : uint
{
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ8_0 = 7,
    MostlyQ4_K_M = 15,
    MostlyQ5_K_M = 17,
    MostlyQ6_K = 18,
    MostlyBF16 = 32,
}
