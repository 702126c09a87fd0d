using System.Text.Json;

namespace SharpTune.Data.Readers;

/// <summary>
/// Finds a key repeated within one JSON object. System.Text.Json parses such an object into a <see cref="System.Text.Json.Nodes.JsonObject"/>
/// without complaint and throws on its first use, so the readers look before handing a row out.
/// </summary>
internal static class RepeatedKeys
{
    /// <summary>The row error's detail: the key and where it repeats.</summary>
    public static string Describe((string Key, string Where) repeated) =>
        $"the key '{repeated.Key}' appears more than once in the object at {repeated.Where}; keep one";

    /// <summary>The first repeated key in <paramref name="json"/> and where (a JSON path); null when none is or the text does not parse.</summary>
    public static (string Key, string Where)? InText(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);   // duplicates allowed: only to find them
            return In(document.RootElement);
        }
        catch (JsonException) { return null; }   // malformed for another reason
    }

    /// <summary>The first repeated key in <paramref name="element"/>, depth first, and where (a JSON path from <paramref name="where"/>).</summary>
    public static (string Key, string Where)? In(JsonElement element, string where = "$")
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var keys = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                    if (!keys.Add(property.Name)) return (property.Name, where);
                foreach (var property in element.EnumerateObject())
                    if (In(property.Value, $"{where}.{property.Name}") is { } inner) return inner;
                return null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                    if (In(item, $"{where}[{index++}]") is { } inner) return inner;
                return null;
            default:
                return null;
        }
    }
}
