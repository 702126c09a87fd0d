using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace SharpTune.IO;

/// <summary>
/// An open safetensors file: the validated header, and tensors read one at a time straight from disk into tensor
/// memory. Layout: 8-byte little-endian header length N, N bytes of JSON, then the data section.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    private SafeFileHandle? file;
    private readonly long dataStart;

    private SafetensorsFile(string path, SafeFileHandle file, long dataStart, SafetensorsHeader.Parsed header)
    {
        Path = path;
        this.file = file;
        this.dataStart = dataStart;
        Tensors = header.Tensors;
        Metadata = header.Metadata;
    }

    /// <summary>The file's path, as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>Every tensor in the header, by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens a file and validates its whole header (lengths, JSON, dtypes, shapes, offsets, overlaps)
    /// before any tensor data is read.</summary>
    /// <exception cref="SafetensorsFormatException">The file is not a well-formed safetensors file.</exception>
    public static SafetensorsFile Open(string path)
    {
        TensorBytes.EnsureLittleEndianHost();
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8)
                throw new SafetensorsFormatException(path, $"file is {fileLength} bytes, expected at least 8 (the header length)");
            Span<byte> lengthBytes = stackalloc byte[8];
            TensorBytes.ReadExactly(handle, path, lengthBytes, 0);
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > SafetensorsHeader.MaxHeaderBytes)
                throw new SafetensorsFormatException(path, $"header length {headerLength} exceeds the limit of {SafetensorsHeader.MaxHeaderBytes} bytes");
            if ((long)headerLength > fileLength - 8)
                throw new SafetensorsFormatException(path, $"header length {headerLength} exceeds the {fileLength - 8} bytes after the length field");

            var headerBytes = new byte[headerLength];
            TensorBytes.ReadExactly(handle, path, headerBytes, 8);
            var dataStart = 8 + (long)headerLength;
            var header = SafetensorsHeader.Parse(path, headerBytes, fileLength - dataStart);
            return new SafetensorsFile(path, handle, dataStart, header);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads one tensor: allocates it in the file's dtype and fills its bytes from disk, then converts.</summary>
    /// <param name="name">The tensor's key.</param>
    /// <param name="asType">Convert to this dtype after reading (null keeps the file's dtype).</param>
    /// <param name="device">Move to this device after reading (null keeps it on the CPU).</param>
    /// <exception cref="KeyNotFoundException">No tensor of that name.</exception>
    public torch.Tensor Read(string name, torch.ScalarType? asType = null, torch.Device? device = null) =>
        Read(name, asType, device, TensorBytes.DefaultChunkBytes);

    internal torch.Tensor Read(string name, torch.ScalarType? asType, torch.Device? device, long maxChunkBytes)
    {
        if (!Tensors.TryGetValue(name, out var info))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}' among its {Tensors.Count} tensors");
        var handle = file ?? throw new ObjectDisposedException(nameof(SafetensorsFile), $"{Path} is closed");

        var tensor = torch.empty(info.Shape, info.DType.ToScalarType());
        try
        {
            TensorBytes.ReadInto(handle, Path, dataStart + info.Begin, tensor, maxChunkBytes);
            return TensorBytes.Convert(tensor, asType, device);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads tensor <paramref name="name"/> straight into <paramref name="destination"/>'s memory when it is a
    /// contiguous CPU tensor of the stored dtype and shape (no temporary copy); returns false, reading nothing, otherwise.
    /// </summary>
    public bool TryReadInto(string name, torch.Tensor destination)
    {
        if (!Tensors.TryGetValue(name, out var info))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}' among its {Tensors.Count} tensors");
        var handle = file ?? throw new ObjectDisposedException(nameof(SafetensorsFile), $"{Path} is closed");
        if (destination.device_type != DeviceType.CPU || !destination.is_contiguous() || destination.dtype != info.DType.ToScalarType() ||
            !destination.shape.AsSpan().SequenceEqual(info.Shape))
            return false;
        TensorBytes.ReadInto(handle, Path, dataStart + info.Begin, destination);
        return true;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        Interlocked.Exchange(ref file, null)?.Dispose();
    }
}
