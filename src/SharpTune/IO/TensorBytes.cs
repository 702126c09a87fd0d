using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace SharpTune.IO;

/// <summary>Moves the raw bytes of contiguous CPU tensors to and from files without managed copies. A span over
/// native memory is limited to 2 GiB, so large tensors go through a flat view in chunks.</summary>
internal static class TensorBytes
{
    /// <summary>Largest span handed to one read or write (1 GiB, under the 2 GiB span limit).</summary>
    public const long DefaultChunkBytes = 1L << 30;

    public static void EnsureLittleEndianHost()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported");
    }

    /// <summary>Fills <paramref name="destination"/> (a fresh contiguous CPU tensor) from the file at <paramref name="fileOffset"/>.</summary>
    public static void ReadInto(SafeFileHandle file, string path, long fileOffset, torch.Tensor destination, long maxChunkBytes = DefaultChunkBytes)
    {
        ForEachChunk(destination, maxChunkBytes, (chunk, byteOffset) => ReadExactly(file, path, chunk.bytes, fileOffset + byteOffset));
    }

    /// <summary>Writes the bytes of <paramref name="tensor"/> (any layout or device) to <paramref name="stream"/>;
    /// at most one contiguous CPU copy of this one tensor is made.</summary>
    public static void WriteTo(Stream stream, torch.Tensor tensor, long maxChunkBytes = DefaultChunkBytes)
    {
        using var noGrad = torch.no_grad();
        var onCpu = tensor.device_type == DeviceType.CPU ? tensor : tensor.cpu();
        var contiguous = onCpu.is_contiguous() ? onCpu : onCpu.contiguous();
        try
        {
            ForEachChunk(contiguous, maxChunkBytes, (chunk, _) => stream.Write(chunk.bytes));
        }
        finally
        {
            if (!ReferenceEquals(contiguous, tensor)) contiguous.Dispose();
            if (!ReferenceEquals(onCpu, tensor) && !ReferenceEquals(onCpu, contiguous)) onCpu.Dispose();
        }
    }

    public static void ReadExactly(SafeFileHandle file, string path, Span<byte> buffer, long fileOffset)
    {
        while (!buffer.IsEmpty)
        {
            var read = RandomAccess.Read(file, buffer, fileOffset);
            if (read == 0)
                throw new SafetensorsFormatException(path, $"file ends at byte {fileOffset}, before the {buffer.Length} bytes expected there (truncated or changed while reading?)");
            buffer = buffer[read..];
            fileOffset += read;
        }
    }

    private static void ForEachChunk(torch.Tensor contiguous, long maxChunkBytes, Action<torch.Tensor, long> action)
    {
        long elements = contiguous.NumberOfElements, elementSize = contiguous.ElementSize;
        if (elements == 0) return;
        if (elements * elementSize <= maxChunkBytes)
        {
            action(contiguous, 0);
            return;
        }
        using var flat = contiguous.view(-1);
        var elementsPerChunk = Math.Max(1, maxChunkBytes / elementSize);
        for (long start = 0; start < elements; start += elementsPerChunk)
        {
            using var chunk = flat.narrow(0, start, Math.Min(elementsPerChunk, elements - start));
            action(chunk, start * elementSize);
        }
    }

    /// <summary>Converts to the requested dtype and device, disposing intermediates that are not returned.</summary>
    public static torch.Tensor Convert(torch.Tensor tensor, torch.ScalarType? asType, torch.Device? device)
    {
        var result = tensor;
        if (asType is { } type && type != result.dtype)
            result = Replace(result, result.to_type(type));
        if (device is not null)
            result = Replace(result, result.to(device));
        return result;
    }

    private static torch.Tensor Replace(torch.Tensor old, torch.Tensor converted)
    {
        if (!ReferenceEquals(old, converted)) old.Dispose();
        return converted;
    }
}
