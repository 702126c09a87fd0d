using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SharpTune.Tokenization.Jinja;

/// <summary>Jinja's undefined value: renders as nothing, is falsy, and yields undefined for attribute access.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Instance = new();
    private Undefined() { }
}

/// <summary>A callable global such as raise_exception or namespace.</summary>
internal delegate object? JinjaFunction(List<object?> args, Dictionary<string, object?> kwargs);

/// <summary>Python-like semantics for the values a template sees: string, long, double, bool, null, lists and dicts.</summary>
internal static class JinjaValues
{
    public static bool IsTrue(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        System.Collections.ICollection c => c.Count > 0,
        _ => true,
    };

    public static string ToText(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        List<object?> list => "[" + string.Join(", ", list.Select(Repr)) + "]",
        Dictionary<string, object?> dict => "{" + string.Join(", ", dict.Select(p => Repr(JinjaDict.KeyOf(dict, p.Key)) + ": " + Repr(p.Value))) + "}",
        _ => v.ToString() ?? "",
    };

    /// <summary>Python's repr, as a list or dict prints its items and %r formats.</summary>
    public static string Repr(object? v) => v is string s ? StringRepr(s) : ToText(v);

    /// <summary>Python's repr of a float: <see cref="IO.PythonJson.FloatRepr"/> for finite values (1.0, 1e-05, 1e+16), then inf and nan.</summary>
    private static string FloatRepr(double d) => d switch
    {
        double.PositiveInfinity => "inf",
        double.NegativeInfinity => "-inf",
        double.NaN => "nan",
        _ => IO.PythonJson.FloatRepr(d),
    };

    /// <summary>
    /// Python's repr of a string: single quotes unless it holds a single quote and no double one; the backslash, the
    /// quote, \n, \r, \t escaped, and other characters Python does not print as \xNN, \uNNNN or \UNNNNNNNN.
    /// </summary>
    private static string StringRepr(string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (var rune in s.EnumerateRunes())
        {
            var c = rune.Value;
            if (c == '\\' || c == quote) sb.Append('\\').Append((char)c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < 0x20 || c is >= 0x7f and <= 0xa0 || (c != ' ' && !Printable(Rune.GetUnicodeCategory(rune))))
                sb.Append(c <= 0xff ? $"\\x{c:x2}" : c <= 0xffff ? $"\\u{c:x4}" : $"\\U{c:x8}");
            else sb.Append(rune.ToString());
        }
        return sb.Append(quote).ToString();

        // str.isprintable: not Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs.
        static bool Printable(UnicodeCategory category) => category is not (UnicodeCategory.Control or UnicodeCategory.Format
            or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned
            or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator);
    }

    public static string TypeName(object? v) => v switch
    {
        null => "none", Undefined => "undefined", string => "string", bool => "boolean", long => "integer", double => "float",
        List<object?> => "list", Dictionary<string, object?> => "dict", _ => v.GetType().Name,
    };

    public static new bool Equals(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (Undefined, Undefined) => true,
        (long x, long y) => x == y,
        (long or double, long or double) => Convert.ToDouble(a, CultureInfo.InvariantCulture) == Convert.ToDouble(b, CultureInfo.InvariantCulture),
        (bool x, bool y) => x == y,
        (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
        (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second)),
        _ => ReferenceEquals(a, b),
    };

    public static int Compare(object? a, object? b) => (a, b) switch
    {
        (long x, long y) => x.CompareTo(y),
        (long or double, long or double) => Convert.ToDouble(a, CultureInfo.InvariantCulture).CompareTo(Convert.ToDouble(b, CultureInfo.InvariantCulture)),
        (string x, string y) => string.CompareOrdinal(x, y),
        _ => throw new JinjaException($"cannot compare {TypeName(a)} with {TypeName(b)}"),
    };

    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        List<object?> list => list,
        Dictionary<string, object?> dict => JinjaDict.KeysAsWritten(dict),
        string s => s.EnumerateRunes().Select(r => (object?)r.ToString()),
        Undefined => [],   // Jinja's Undefined iterates as empty: {% for c in message.tool_calls %} on a message without them
        null => throw new JinjaException($"cannot iterate over {TypeName(v)}"),
        _ => throw new JinjaException($"cannot iterate over {TypeName(v)}"),
    };

    public static long ToLong(object? v) => v switch
    {
        long l => l,
        double d => (long)d,
        bool b => b ? 1 : 0,
        string s when long.TryParse(s.Trim(), CultureInfo.InvariantCulture, out var l) => l,
        _ => throw new JinjaException($"expected an integer, found {TypeName(v)}"),
    };

    /// <summary>Converts caller data (strings, numbers, records of strings, lists, dictionaries) into template values.</summary>
    public static object? FromClr(object? v) => v switch
    {
        null or string or bool or long or double or Undefined or JinjaFunction => v,
        int i => (long)i,
        float f => (double)f,
        Dictionary<string, object?> d => d,
        System.Collections.IDictionary d => d.Keys.Cast<object>().ToDictionary(k => k.ToString()!, k => FromClr(d[k])),
        System.Collections.IEnumerable e => e.Cast<object?>().Select(FromClr).ToList(),
        _ => throw new JinjaException($"cannot pass a {v.GetType().Name} to a template"),
    };

    /// <summary>
    /// Python's json.dumps as transformers' tojson calls it: ensure_ascii=False; separators ", " and ": " ("," and ": "
    /// with an indent) unless given, as Kimi K2's template gives (',', ':'); keys sorted and non-ASCII escaped when asked.
    /// </summary>
    public static string ToJson(object? v, int? indent, (string Item, string Key)? separators = null, bool sortKeys = false, bool ensureAscii = false)
    {
        var (itemSeparator, keySeparator) = separators ?? (indent is null ? ", " : ",", ": ");
        var sb = new StringBuilder();
        Write(v, 0);
        return sb.ToString();

        void Write(object? value, int depth)
        {
            switch (value)
            {
                case null or Undefined: sb.Append("null"); break;
                case bool b: sb.Append(b ? "true" : "false"); break;
                case double d when double.IsInfinity(d): sb.Append(d > 0 ? "Infinity" : "-Infinity"); break;
                case double.NaN: sb.Append("NaN"); break;
                case long or double: sb.Append(ToText(value)); break;
                case string s: IO.PythonJson.WriteString(sb, s, ensureAscii); break;
                case List<object?> list: Container('[', ']', list.Select(x => (Key: (string?)null, Value: x)).ToList(), depth); break;
                case Dictionary<string, object?> dict:
                    var pairs = dict.Select(p => (Key: (string?)p.Key, Value: p.Value));
                    Container('{', '}', (sortKeys ? pairs.OrderBy(p => p.Key, StringComparer.Ordinal) : pairs).ToList(), depth);
                    break;
                default: IO.PythonJson.WriteString(sb, ToText(value), ensureAscii); break;
            }
        }

        void Container(char open, char close, List<(string? Key, object? Value)> items, int depth)
        {
            sb.Append(open);
            for (int i = 0; i < items.Count; i++)
            {
                if (i > 0) sb.Append(itemSeparator);
                if (indent is { } n) sb.Append('\n').Append(' ', n * (depth + 1));
                if (items[i].Key is { } key) { Write(key, depth + 1); sb.Append(keySeparator); }
                Write(items[i].Value, depth + 1);
            }
            if (indent is { } m && items.Count > 0) sb.Append('\n').Append(' ', m * depth);
            sb.Append(close);
        }
    }
}
