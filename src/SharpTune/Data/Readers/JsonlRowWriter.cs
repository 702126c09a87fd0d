namespace SharpTune.Data.Readers;

/// <summary>Writes rows as JSON Lines (one compact object per line, UTF-8 without BOM).</summary>
public sealed class JsonlRowWriter : IDisposable
{
    private readonly StreamWriter _writer;

    public JsonlRowWriter(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        _writer = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false));
    }

    /// <summary>Rows written so far.</summary>
    public long Count { get; private set; }

    public void Write(DataRow row)
    {
        _writer.WriteLine(row.Fields.ToJsonString(JsonOptions.Compact));
        Count++;
    }

    /// <summary>Writes all <paramref name="rows"/> to <paramref name="path"/>; returns how many.</summary>
    public static long WriteAll(string path, IEnumerable<DataRow> rows)
    {
        using var writer = new JsonlRowWriter(path);
        foreach (var row in rows) writer.Write(row);
        return writer.Count;
    }

    public void Dispose() => _writer.Dispose();
}
