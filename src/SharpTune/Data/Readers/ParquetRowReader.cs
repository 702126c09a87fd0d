using System.Collections;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Serialization;

namespace SharpTune.Data.Readers;

/// <summary>
/// Reads Parquet files through Parquet.Net one row group at a time (so memory is bounded by the largest row group,
/// not the file). Nested columns — e.g. chat <c>messages</c> stored as list&lt;struct&lt;role, content&gt;&gt; by
/// Hugging Face datasets — become JSON arrays/objects. A row's number is its 1-based index in the file.
/// </summary>
public static class ParquetRowReader
{
    public static IEnumerable<RowReadResult> Read(string path)
    {
        var options = new ParquetOptions();
        int rowGroups;
        using (var stream = File.OpenRead(path))
        {
            // The library is async-only; this enumerable bridges it synchronously, one row group per wait.
            var reader = ParquetReader.CreateAsync(stream, options).GetAwaiter().GetResult();
            rowGroups = reader.RowGroupCount;
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        long rowNumber = 0;
        for (int g = 0; g < rowGroups; g++)
        {
            IList<Dictionary<string, object>> rows;
            using (var stream = File.OpenRead(path))
                rows = ParquetSerializer.DeserializeUntypedAsync(stream, options, g).GetAwaiter().GetResult().Data;
            foreach (var row in rows)
            {
                rowNumber++;
                var fields = new JsonObject();
                foreach (var (name, value) in row) fields[name] = ToJson(value);
                yield return RowReadResult.Ok(new DataRow(path, rowNumber, fields));
            }
        }
    }

    /// <summary>The shards of a Hugging Face style dataset folder (<c>*.parquet</c>, searched recursively), in name order.</summary>
    public static IReadOnlyList<string> Shards(string directory) =>
        Directory.EnumerateFiles(directory, "*.parquet", SearchOption.AllDirectories)
            .Order(StringComparer.Ordinal).ToList();

    internal static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        JsonNode node => node,
        string s => s,
        bool b => b,
        ReadOnlyMemory<char> m => m.ToString(),
        byte[] bytes => Convert.ToBase64String(bytes),
        ReadOnlyMemory<byte> mb => Convert.ToBase64String(mb.Span),
        DateTime dt => dt.ToString("O"),
        DateTimeOffset dto => dto.ToString("O"),
        TimeSpan ts => ts.ToString("c"),
        Guid g => g.ToString(),
        decimal d => d,
        double d => d,
        float f => f,
        long l => l,
        ulong ul => ul,
        int i => i,
        uint ui => ui,
        short sh => sh,
        ushort us => us,
        byte by => by,
        sbyte sb => sb,
        IDictionary<string, object> dict => new JsonObject(dict.Select(kv => KeyValuePair.Create(kv.Key, ToJson(kv.Value)))),
        IDictionary dict => new JsonObject(dict.Keys.Cast<object>().Select(k => KeyValuePair.Create(k.ToString()!, ToJson(dict[k])))),
        IEnumerable list => new JsonArray(list.Cast<object?>().Select(ToJson).ToArray()),
        _ => value.ToString(),
    };
}
