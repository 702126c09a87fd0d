using TorchSharp;

namespace SharpTune.IO;

/// <summary>The element types SharpTune reads and writes in safetensors files; names are the header's dtype strings.</summary>
public enum SafetensorsDType
{
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    BOOL,
}

/// <summary>Conversions between <see cref="SafetensorsDType"/>, header strings and <see cref="torch.ScalarType"/>.</summary>
public static class SafetensorsDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int ElementSize(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 => 2,
        SafetensorsDType.I8 or SafetensorsDType.U8 or SafetensorsDType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>The torch element type with the same bit layout.</summary>
    public static torch.ScalarType ToScalarType(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => torch.ScalarType.Float32,
        SafetensorsDType.F16 => torch.ScalarType.Float16,
        SafetensorsDType.BF16 => torch.ScalarType.BFloat16,
        SafetensorsDType.F64 => torch.ScalarType.Float64,
        SafetensorsDType.I64 => torch.ScalarType.Int64,
        SafetensorsDType.I32 => torch.ScalarType.Int32,
        SafetensorsDType.I16 => torch.ScalarType.Int16,
        SafetensorsDType.I8 => torch.ScalarType.Int8,
        SafetensorsDType.U8 => torch.ScalarType.Byte,
        SafetensorsDType.BOOL => torch.ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>The safetensors dtype for a torch element type, or false when safetensors (as supported here) has none.</summary>
    public static bool TryFromScalarType(torch.ScalarType type, out SafetensorsDType dtype)
    {
        SafetensorsDType? found = type switch
        {
            torch.ScalarType.Float32 => SafetensorsDType.F32,
            torch.ScalarType.Float16 => SafetensorsDType.F16,
            torch.ScalarType.BFloat16 => SafetensorsDType.BF16,
            torch.ScalarType.Float64 => SafetensorsDType.F64,
            torch.ScalarType.Int64 => SafetensorsDType.I64,
            torch.ScalarType.Int32 => SafetensorsDType.I32,
            torch.ScalarType.Int16 => SafetensorsDType.I16,
            torch.ScalarType.Int8 => SafetensorsDType.I8,
            torch.ScalarType.Byte => SafetensorsDType.U8,
            torch.ScalarType.Bool => SafetensorsDType.BOOL,
            _ => null,
        };
        dtype = found.GetValueOrDefault();
        return found.HasValue;
    }

    /// <summary>The safetensors dtype for a torch element type.</summary>
    /// <exception cref="NotSupportedException">The type (complex, quantized) has no safetensors dtype here.</exception>
    public static SafetensorsDType FromScalarType(torch.ScalarType type) =>
        TryFromScalarType(type, out var dtype)
            ? dtype
            : throw new NotSupportedException($"torch dtype {type} cannot be stored in safetensors (supported: {string.Join(", ", Enum.GetNames<SafetensorsDType>())})");

    /// <summary>The dtype string written in a safetensors header (e.g. "BF16").</summary>
    public static string ToHeaderString(this SafetensorsDType dtype) => dtype.ToString();

    /// <summary>Parses a header dtype string; exact, case-sensitive match as in the reference implementation.</summary>
    public static bool TryParseHeaderString(string text, out SafetensorsDType dtype)
    {
        foreach (var candidate in Enum.GetValues<SafetensorsDType>())
        {
            if (string.Equals(candidate.ToString(), text, StringComparison.Ordinal))
            {
                dtype = candidate;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>Rank of the dtype in the reference implementation's Dtype enum (BOOL lowest, I64 highest among these).
    /// The reference writer lays tensors out by descending rank, then name, which keeps every tensor aligned.</summary>
    internal static int ReferenceOrder(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL => 0,
        SafetensorsDType.U8 => 1,
        SafetensorsDType.I8 => 2,
        SafetensorsDType.I16 => 3,
        SafetensorsDType.F16 => 4,
        SafetensorsDType.BF16 => 5,
        SafetensorsDType.I32 => 6,
        SafetensorsDType.F32 => 7,
        SafetensorsDType.F64 => 8,
        SafetensorsDType.I64 => 9,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };
}
