namespace SharpTune.Export.Gguf;

/// <summary>GGUF metadata value types (gguf_type).</summary>
internal enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>One metadata value: a scalar, a string, or an array of one element type.</summary>
internal sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public static GgufValue U32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue I32(int v) => new(GgufValueType.Int32, v);
    public static GgufValue F32(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Bool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Str(string v) => new(GgufValueType.String, v);
    public static GgufValue Strings(IReadOnlyList<string> v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue Floats(IReadOnlyList<float> v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue Ints(IReadOnlyList<int> v) => new(GgufValueType.Array, v, GgufValueType.Int32);

    public string AsString() => Value as string ?? throw new InvalidDataException($"GGUF value is {Type}, not a string");

    public long AsInteger() => Value switch
    {
        byte b => b, sbyte s => s, ushort u => u, short s => s, uint u => u, int i => i, ulong u => (long)u, long l => l,
        _ => throw new InvalidDataException($"GGUF value is {Type}, not an integer"),
    };

    public float AsFloat() => Value switch
    {
        float f => f,
        double d => (float)d,
        _ => throw new InvalidDataException($"GGUF value is {Type}, not a float"),
    };

    public bool AsBool() => Value as bool? ?? throw new InvalidDataException($"GGUF value is {Type}, not a bool");

    public IReadOnlyList<T> AsArray<T>() => Value as IReadOnlyList<T> ?? throw new InvalidDataException($"GGUF value is not an array of {typeof(T).Name}");
}
