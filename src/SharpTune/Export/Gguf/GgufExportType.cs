namespace SharpTune.Export.Gguf;

/// <summary>What <c>--type</c> asks for: a float type as llama.cpp's converter writes it, or a quantization as llama-quantize makes it.</summary>
public enum GgufExportType { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q6_K, Q5_K_M }

public static class GgufExportTypes
{
    public static GgufExportType Parse(string name) => name.ToLowerInvariant() switch
    {
        "f32" => GgufExportType.F32,
        "f16" => GgufExportType.F16,
        "bf16" => GgufExportType.BF16,
        "q8_0" => GgufExportType.Q8_0,
        "q4_0" => GgufExportType.Q4_0,
        "q4_k_m" => GgufExportType.Q4_K_M,
        "q6_k" => GgufExportType.Q6_K,
        "q5_k_m" => GgufExportType.Q5_K_M,
        _ => throw new ArgumentException($"unknown GGUF type '{name}' (use f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k)"),
    };

    public static string Name(GgufExportType type) => type.ToString().ToLowerInvariant();

    internal static LlamaFileType FileType(GgufExportType type) => type switch
    {
        GgufExportType.F32 => LlamaFileType.AllF32,
        GgufExportType.F16 => LlamaFileType.MostlyF16,
        GgufExportType.BF16 => LlamaFileType.MostlyBF16,
        GgufExportType.Q8_0 => LlamaFileType.MostlyQ8_0,
        GgufExportType.Q4_0 => LlamaFileType.MostlyQ4_0,
        GgufExportType.Q4_K_M => LlamaFileType.MostlyQ4_K_M,
        GgufExportType.Q6_K => LlamaFileType.MostlyQ6_K,
        GgufExportType.Q5_K_M => LlamaFileType.MostlyQ5_K_M,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };
}
