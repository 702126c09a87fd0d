using TorchSharp;

namespace SharpTune.Tests.IO;

/// <summary>Tensors with known raw bytes for bit-exact comparisons.</summary>
internal static class TensorTestData
{
    /// <summary>A tensor whose bytes are random (every bit pattern, NaN payloads included), or 0/1 for bool.</summary>
    public static torch.Tensor RandomBits(torch.ScalarType type, long[] shape, int seed)
    {
        var rng = new Random(seed);
        var tensor = torch.empty(shape, type);
        var bytes = tensor.bytes;
        if (type == torch.ScalarType.Bool)
            for (var i = 0; i < bytes.Length; i++) bytes[i] = (byte)rng.Next(2);
        else
            rng.NextBytes(bytes);
        return tensor;
    }

    /// <summary>A 16-bit float tensor holding exactly the given bit patterns.</summary>
    public static torch.Tensor FromBits16(torch.ScalarType type, ushort[] bits)
    {
        var tensor = torch.empty([bits.Length], type);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).CopyTo(tensor.bytes);
        return tensor;
    }

    /// <summary>Same shape and dtype, and equal elementwise.</summary>
    public static bool AllEqual(torch.Tensor a, torch.Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var same = a.eq(b);
        using var all = same.all();
        return all.item<bool>();
    }

    public static byte[] RawBytes(torch.Tensor tensor)
    {
        var contiguous = tensor.contiguous();
        try
        {
            return contiguous.bytes.ToArray();
        }
        finally
        {
            if (!ReferenceEquals(contiguous, tensor)) contiguous.Dispose();
        }
    }
}
