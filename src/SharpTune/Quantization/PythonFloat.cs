using System.Globalization;
using System.Text.Json.Nodes;

namespace SharpTune.Quantization;

/// <summary>Python's float repr and json.dumps spelling, for JSON that must equal what Python writes byte for byte.</summary>
internal static class PythonFloat
{
    /// <summary>repr(float(value)): the shortest round-trip digits, fixed for 1e-4 ≤ |x| &lt; 1e16 (always with a '.'), else d.ddde±XX.</summary>
    public static string Repr(double value)
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

    /// <summary>json.dumps(obj) with Python's default separators (", " and ": "), for flat objects of strings, numbers and arrays.</summary>
    public static string JsonDumps(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject o => "{" + string.Join(", ", o.Select(kv => System.Text.Json.JsonSerializer.Serialize(kv.Key) + ": " + JsonDumps(kv.Value))) + "}",
        JsonArray a => "[" + string.Join(", ", a.Select(JsonDumps)) + "]",
        _ => node.ToJsonString(),
    };
}
