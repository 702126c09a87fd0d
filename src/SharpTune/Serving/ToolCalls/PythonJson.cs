using System.Globalization;
using System.Text;
using System.Text.Json;
using SharpTune.Quantization;

namespace SharpTune.Serving.ToolCalls;

/// <summary>
/// Python's <c>json.dumps(json.loads(text), ensure_ascii=False)</c>, which is how vLLM's tool parsers write a call's
/// arguments: ", " and ": " between items, characters beyond ASCII as they are (only '"', '\' and control characters
/// escaped), numbers with a fraction or exponent as Python's float repr (1e5 → 100000.0, 1E-7 → 1e-07), integers as
/// written (-0 → 0), and a key given twice keeps its first place with its last value, as a Python dict does.
/// </summary>
internal static class PythonJson
{
    public static string Dumps(JsonElement value)
    {
        var text = new StringBuilder();
        Write(text, value);
        return text.ToString();
    }

    private static void Write(StringBuilder text, JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                var members = new List<(string Key, JsonElement Value)>();
                var position = new Dictionary<string, int>(StringComparer.Ordinal);
                foreach (var property in value.EnumerateObject())
                {
                    if (position.TryGetValue(property.Name, out var at)) members[at] = (property.Name, property.Value);
                    else { position[property.Name] = members.Count; members.Add((property.Name, property.Value)); }
                }
                text.Append('{');
                for (var i = 0; i < members.Count; i++)
                {
                    if (i > 0) text.Append(", ");
                    WriteString(text, members[i].Key);
                    text.Append(": ");
                    Write(text, members[i].Value);
                }
                text.Append('}');
                break;
            case JsonValueKind.Array:
                text.Append('[');
                var first = true;
                foreach (var item in value.EnumerateArray())
                {
                    if (!first) text.Append(", ");
                    first = false;
                    Write(text, item);
                }
                text.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(text, value.GetString()!);
                break;
            case JsonValueKind.Number:
                var raw = value.GetRawText();
                if (raw.AsSpan().IndexOfAny('.', 'e', 'E') >= 0)
                    text.Append(PythonFloat.Repr(double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture)));
                else
                    text.Append(raw == "-0" ? "0" : raw);   // a Python int: any size, written as given
                break;
            case JsonValueKind.True: text.Append("true"); break;
            case JsonValueKind.False: text.Append("false"); break;
            default: text.Append("null"); break;
        }
    }

    private static void WriteString(StringBuilder text, string value)
    {
        text.Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case < ' ': text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: text.Append(c); break;
            }
        }
        text.Append('"');
    }
}
