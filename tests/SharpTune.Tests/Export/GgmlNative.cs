using System.Runtime.InteropServices;
using SharpTune.Export.Gguf;

namespace SharpTune.Tests.Export;

/// <summary>
/// llama.cpp's own ggml code from the npm package's libggml-base.so: the reference quantizers (quantize_row_*_ref),
/// the dequantizers (dequantize_row_*), and the GGUF parser (gguf_init_from_file) to locate tensors in a file.
/// </summary>
public static class GgmlNative
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void QuantizeRow(float[] x, byte[] y, long k);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void DequantizeRow(byte[] x, float[] y, long k);

    [StructLayout(LayoutKind.Sequential)]
    private struct GgufInitParams
    {
        public byte NoAlloc;
        public IntPtr Context;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr GgufInitFromFile([MarshalAs(UnmanagedType.LPUTF8Str)] string path, GgufInitParams parameters);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate long GgufFindTensor(IntPtr ctx, [MarshalAs(UnmanagedType.LPUTF8Str)] string name);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate UIntPtr GgufSizeGetter(IntPtr ctx, long id);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate UIntPtr GgufDataOffset(IntPtr ctx);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int GgufTensorType(IntPtr ctx, long id);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void GgufFree(IntPtr ctx);

    private static readonly Lazy<IntPtr> Library = new(() =>
    {
        LlamaCppRuntime.EnsureInstalled();
        return NativeLibrary.Load(Path.Combine(LlamaCppRuntime.BinariesDir, "libggml-base.so"));
    });

    private static T Function<T>(string name) where T : Delegate =>
        Marshal.GetDelegateForFunctionPointer<T>(NativeLibrary.GetExport(Library.Value, name));

    private static string Suffix(GgmlType type) => type switch
    {
        GgmlType.Q8_0 => "q8_0", GgmlType.Q4_0 => "q4_0", GgmlType.Q5_0 => "q5_0", GgmlType.Q5_1 => "q5_1", GgmlType.Q4_K => "q4_K",
        GgmlType.Q5_K => "q5_K", GgmlType.Q6_K => "q6_K", GgmlType.MXFP4 => "mxfp4",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static byte[] Quantize(GgmlType type, float[] values)
    {
        var bytes = new byte[values.Length / GgmlTypeInfo.BlockSize(type) * GgmlTypeInfo.BytesPerBlock(type)];
        Function<QuantizeRow>($"quantize_row_{Suffix(type)}_ref")(values, bytes, values.Length);
        return bytes;
    }

    public static float[] Dequantize(GgmlType type, byte[] data, long count)
    {
        var values = new float[count];
        Function<DequantizeRow>($"dequantize_row_{Suffix(type)}")(data, values, count);
        return values;
    }

    /// <summary>A tensor's type and raw bytes as ggml's GGUF parser locates them in the file.</summary>
    public static (GgmlType Type, byte[] Data) ReadTensor(string path, string name)
    {
        var ctx = Function<GgufInitFromFile>("gguf_init_from_file")(path, new GgufInitParams { NoAlloc = 1, Context = IntPtr.Zero });
        if (ctx == IntPtr.Zero) throw new InvalidDataException($"ggml's gguf_init_from_file rejected {path}");
        try
        {
            var id = Function<GgufFindTensor>("gguf_find_tensor")(ctx, name);
            if (id < 0) throw new KeyNotFoundException($"ggml finds no tensor '{name}' in {path}");
            var offset = (long)Function<GgufDataOffset>("gguf_get_data_offset")(ctx) + (long)Function<GgufSizeGetter>("gguf_get_tensor_offset")(ctx, id);
            var size = (long)Function<GgufSizeGetter>("gguf_get_tensor_size")(ctx, id);
            var type = (GgmlType)Function<GgufTensorType>("gguf_get_tensor_type")(ctx, id);
            using var stream = File.OpenRead(path);
            stream.Position = offset;
            var data = new byte[size];
            stream.ReadExactly(data);
            return (type, data);
        }
        finally
        {
            Function<GgufFree>("gguf_free")(ctx);
        }
    }
}
