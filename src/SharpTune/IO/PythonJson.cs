using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.IO;

/// <summary>
/// Python's <c>json.dumps</c> and float <c>repr</c>, for text that must equal what Python writes byte for byte:
/// bitsandbytes' packed quant_state (<c>json.dumps(state)</c>), vLLM's tool-call arguments
/// (<c>json.dumps(json.loads(text), ensure_ascii=False)</c>) and chat templates' <c>tojson</c> and floats. ", " and ": "
/// between items; only '"', '\' and control characters escaped (and every UTF-16 unit past '~' when
/// <c>ensure_ascii</c>); numbers with a fraction or exponent as Python's float repr (1e5 → 100000.0, 1E-7 → 1e-07),
/// integers as written (-0 → 0); a key given twice keeps its first place with its last value, as a Python dict does.
/// </summary>
internal static class PythonJson
{
    /// <summary><c>json.dumps(json.loads(value), ensure_ascii=ensureAscii)</c>.</summary>
    public static string Dumps(JsonElement value, bool ensureAscii = true)
    {
        var text = new StringBuilder();
        Write(text, value, ensureAscii);
        return text.ToString();
    }

    /// <summary><c>json.dumps(node, ensure_ascii=ensureAscii)</c>.</summary>
    public static string Dumps(JsonNode? node, bool ensureAscii = true) => Dumps(JsonSerializer.SerializeToElement(node), ensureAscii);

    /// <summary>
    /// <c>json.dumps(value, ensure_ascii=ensureAscii)</c> of a Python value held as .NET objects: null (None), bool,
    /// <see cref="System.Numerics.BigInteger"/> (int), double (float: inf written Infinity, as Python writes it), string,
    /// a list of values, or a dict as its ordered key/value pairs (keys None, bool, int, float or str, turned into strings
    /// as json.dumps turns them: None → "null", True → "true", 2.5 → "2.5").
    /// </summary>
    public static string DumpsValue(object? value, bool ensureAscii = true)
    {
        var text = new StringBuilder();
        WriteValue(text, value, ensureAscii);
        return text.ToString();
    }

    private static void WriteValue(StringBuilder text, object? value, bool ensureAscii)
    {
        switch (value)
        {
            case null: text.Append("null"); break;
            case bool b: text.Append(b ? "true" : "false"); break;
            case System.Numerics.BigInteger i: text.Append(i.ToString(CultureInfo.InvariantCulture)); break;
            case double d: text.Append(FloatRepr(d)); break;
            case string s: WriteString(text, s, ensureAscii); break;
            case IReadOnlyList<KeyValuePair<object?, object?>> dict:
                text.Append('{');
                for (var i = 0; i < dict.Count; i++)
                {
                    if (i > 0) text.Append(", ");
                    WriteString(text, dict[i].Key switch
                    {
                        string key => key,
                        double key => FloatRepr(key),
                        bool key => key ? "true" : "false",
                        null => "null",
                        System.Numerics.BigInteger key => key.ToString(CultureInfo.InvariantCulture),
                        var key => throw new ArgumentException($"a dict key of type {key.GetType().Name} has no JSON spelling", nameof(value)),
                    }, ensureAscii);
                    text.Append(": ");
                    WriteValue(text, dict[i].Value, ensureAscii);
                }
                text.Append('}');
                break;
            case IReadOnlyList<object?> list:
                text.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0) text.Append(", ");
                    WriteValue(text, list[i], ensureAscii);
                }
                text.Append(']');
                break;
            default: throw new ArgumentException($"a value of type {value.GetType().Name} has no JSON spelling", nameof(value));
        }
    }

    /// <summary>repr(float(value)): the shortest round-trip digits, fixed for 1e-4 ≤ |x| &lt; 1e16 (always with a '.'), else d.ddde±XX.</summary>
    public static string FloatRepr(double value)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsInfinity(value)) return value > 0 ? "Infinity" : "-Infinity";
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";
        // Shortest digits: "R" gives them; take its digits and exponent, then lay them out as Python does.
        var shortest = value.ToString("R", CultureInfo.InvariantCulture);
        var negative = shortest.StartsWith('-');
        if (negative) shortest = shortest[1..];
        int exponent;
        string mantissa;
        var e = shortest.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(shortest[(e + 1)..], CultureInfo.InvariantCulture);
            mantissa = shortest[..e];
        }
        else
        {
            exponent = 0;
            mantissa = shortest;
        }
        var point = mantissa.IndexOf('.');
        var intPart = point >= 0 ? mantissa[..point] : mantissa;
        var fracPart = point >= 0 ? mantissa[(point + 1)..] : "";
        var digits = (intPart + fracPart).TrimStart('0');
        var leadingZeros = (intPart + fracPart).Length - (intPart + fracPart).TrimStart('0').Length;
        var decimalExponent = exponent + intPart.Length - leadingZeros - 1;   // position of the first digit
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        string body;
        if (decimalExponent < -4 || decimalExponent >= 16)
        {
            body = digits[..1] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (decimalExponent < 0 ? "-" : "+") +
                   Math.Abs(decimalExponent).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (decimalExponent < 0)
            body = "0." + new string('0', -decimalExponent - 1) + digits;
        else if (digits.Length <= decimalExponent + 1)
            body = digits + new string('0', decimalExponent + 1 - digits.Length) + ".0";
        else
            body = digits[..(decimalExponent + 1)] + "." + digits[(decimalExponent + 1)..];
        return (negative ? "-" : "") + body;
    }

    private static void Write(StringBuilder text, JsonElement value, bool ensureAscii)
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
                    WriteString(text, members[i].Key, ensureAscii);
                    text.Append(": ");
                    Write(text, members[i].Value, ensureAscii);
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
                    Write(text, item, ensureAscii);
                }
                text.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(text, value.GetString()!, ensureAscii);
                break;
            case JsonValueKind.Number:
                var raw = value.GetRawText();
                if (raw.AsSpan().IndexOfAny('.', 'e', 'E') >= 0)
                    text.Append(FloatRepr(double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture)));
                else
                    text.Append(raw == "-0" ? "0" : raw);   // a Python int: any size, written as given
                break;
            case JsonValueKind.True: text.Append("true"); break;
            case JsonValueKind.False: text.Append("false"); break;
            default: text.Append("null"); break;
        }
    }

    /// <summary>
    /// A JSON string as Python's json.dumps writes it: only the quote, the backslash and control characters are escaped
    /// (\n, \r, \t, \b, \f, else \u00XX); with ensure_ascii=False every other character, an emoji included, is written as
    /// it is (System.Text.Json's most relaxed encoder still escapes characters outside the BMP and a few others); with
    /// <paramref name="ensureAscii"/>, json.dumps' default, every UTF-16 unit past '~' is written \uXXXX too, so a
    /// character beyond the BMP becomes its surrogate pair, as Python writes it.
    /// </summary>
    /// <param name="escapeLoneSurrogates">
    /// Also write an unpaired surrogate as \uXXXX, for text that becomes UTF-8 bytes (a constrained-decoding grammar's
    /// literals). Python's ensure_ascii=False leaves it raw, a str Python itself cannot encode to UTF-8; here the raw unit
    /// would reach the bytes as U+FFFD, a different string, while json.loads reads the escape back as the surrogate.
    /// </param>
    internal static void WriteString(StringBuilder text, string value, bool ensureAscii, bool escapeLoneSurrogates = false)
    {
        text.Append('"');
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case < ' ':
                case > '~' when ensureAscii:
                case >= '\ud800' and <= '\udfff' when escapeLoneSurrogates && !InPair(value, i):
                    text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    break;
                default: text.Append(c); break;
            }
        }
        text.Append('"');
    }

    /// <summary>Whether the surrogate at <paramref name="i"/> is half of a high-low pair.</summary>
    private static bool InPair(string s, int i) =>
        char.IsHighSurrogate(s[i]) ? i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) : i > 0 && char.IsHighSurrogate(s[i - 1]);
}
