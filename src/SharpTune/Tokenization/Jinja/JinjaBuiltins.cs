using System.Globalization;
using static SharpTune.Tokenization.Jinja.JinjaValues;

namespace SharpTune.Tokenization.Jinja;

/// <summary>Operators, filters, tests, global functions and Python string/dict methods that chat templates call.</summary>
internal static class JinjaBuiltins
{
    public static readonly Dictionary<string, object?> Globals = new()
    {
        ["raise_exception"] = (JinjaFunction)((args, _) => throw new JinjaRaisedException(args.Count > 0 ? ToText(args[0]) : "template raised an exception")),
        ["namespace"] = (JinjaFunction)((_, kwargs) => new Dictionary<string, object?>(kwargs)),
        ["range"] = (JinjaFunction)((args, _) =>
        {
            long start = args.Count > 1 ? ToLong(args[0]) : 0, stop = ToLong(args[args.Count > 1 ? 1 : 0]), step = args.Count > 2 ? ToLong(args[2]) : 1;
            if (step == 0) throw new JinjaException("range() step must not be zero");
            var list = new List<object?>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step) list.Add(i);
            return list;
        }),
        ["strftime_now"] = (JinjaFunction)((args, _) => StrftimeNow(args.Count > 0 ? ToText(args[0]) : "%Y-%m-%d")),
    };

    public static object? GetAttribute(object? target, string name) => target switch
    {
        Dictionary<string, object?> d => d.TryGetValue(name, out var v) ? v : Undefined.Instance,
        _ => Undefined.Instance,
    };

    public static object? GetItem(object? target, object? key) => (target, key) switch
    {
        (Dictionary<string, object?> d, _) => d.TryGetValue(ToText(key), out var v) ? v : Undefined.Instance,
        (List<object?> list, long i) => Index(list.Count, i) is var k && k >= 0 ? list[k] : Undefined.Instance,
        (string s, long i) => Index(s.Length, i) is var k && k >= 0 ? s[k].ToString() : Undefined.Instance,
        (null or Undefined, _) => throw new JinjaException($"cannot index {TypeName(target)} with '{ToText(key)}'"),
        _ => throw new JinjaException($"cannot index {TypeName(target)} with {TypeName(key)}"),
    };

    private static int Index(int count, long i) => i < 0 ? (count + i >= 0 ? (int)(count + i) : -1) : (i < count ? (int)i : -1);

    public static object? Slice(object? target, long? start, long? stop, long? step)
    {
        var items = target switch
        {
            List<object?> l => l,
            string s => s.Select(c => (object?)c.ToString()).ToList(),
            _ => throw new JinjaException($"cannot slice {TypeName(target)}"),
        };
        long n = items.Count, st = step ?? 1;
        if (st == 0) throw new JinjaException("slice step must not be zero");
        long Clamp(long? v, long fallback) => v is not { } x ? fallback : x < 0 ? Math.Max(x + n, st > 0 ? 0 : -1) : Math.Min(x, st > 0 ? n : n - 1);
        long from = Clamp(start, st > 0 ? 0 : n - 1), to = Clamp(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = from; st > 0 ? i < to : i > to; i += st) result.Add(items[(int)i]);
        return target is string ? string.Concat(result.Cast<string>()) : result;
    }

    public static object? Binary(string op, object? a, object? b)
    {
        switch (op)
        {
            case "==": return JinjaValues.Equals(a, b);
            case "!=": return !JinjaValues.Equals(a, b);
            case "<": return Compare(a, b) < 0;
            case ">": return Compare(a, b) > 0;
            case "<=": return Compare(a, b) <= 0;
            case ">=": return Compare(a, b) >= 0;
            case "~": return ToText(a) + ToText(b);
            case "in": return b switch
            {
                string s => s.Contains(ToText(a), StringComparison.Ordinal),
                List<object?> list => list.Any(x => JinjaValues.Equals(x, a)),
                Dictionary<string, object?> d => a is string k && d.ContainsKey(k),
                _ => throw new JinjaException($"'in' needs a string, list or mapping on the right, found {TypeName(b)}"),
            };
        }
        return (op, a, b) switch
        {
            ("+", string x, string y) => x + y,
            ("+", List<object?> x, List<object?> y) => x.Concat(y).ToList(),
            ("*", string x, long y) => string.Concat(Enumerable.Repeat(x, (int)Math.Max(0, y))),
            (_, long x, long y) => op switch
            {
                "+" => (object)(x + y), "-" => x - y, "*" => x * y, "/" => (double)x / y, // object: keep longs long
                "//" => (long)Math.Floor((double)x / y), "%" => ((x % y) + y) % y,
                _ => throw new JinjaException($"unknown operator '{op}'"),
            },
            (_, long or double, long or double) => Arithmetic(op, Convert.ToDouble(a, CultureInfo.InvariantCulture), Convert.ToDouble(b, CultureInfo.InvariantCulture)),
            _ => throw new JinjaException($"unsupported operand types for {op}: {TypeName(a)} and {TypeName(b)}"),
        };
    }

    private static object Arithmetic(string op, double x, double y) => op switch
    {
        "+" => x + y, "-" => x - y, "*" => x * y, "/" => x / y, "//" => Math.Floor(x / y), "%" => x - y * Math.Floor(x / y),
        _ => throw new JinjaException($"unknown operator '{op}'"),
    };

    public static object? Filter(string name, object? v, List<object?> args, Dictionary<string, object?> kwargs)
    {
        object? Arg(int i, string key, object? fallback) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var k) ? k : fallback;
        return name switch
        {
            "trim" => ToText(v).Trim(),
            "length" or "count" => v switch
            {
                string s => (long)s.Length,
                System.Collections.ICollection c => (long)c.Count,
                _ => throw new JinjaException($"length of {TypeName(v)} is undefined"),
            },
            "upper" => ToText(v).ToUpperInvariant(),
            "lower" => ToText(v).ToLowerInvariant(),
            "capitalize" => ToText(v) is { Length: > 0 } s ? char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant() : "",
            "title" => CultureInfo.InvariantCulture.TextInfo.ToTitleCase(ToText(v).ToLowerInvariant()),
            "string" => ToText(v),
            "int" => v is string str && !long.TryParse(str, out _) ? 0L : ToLong(v),
            "float" => v is long l ? (object)(double)l : v is double d ? d : double.TryParse(ToText(v), CultureInfo.InvariantCulture, out var p) ? p : 0.0,
            "abs" => v is long l2 ? (object)Math.Abs(l2) : v is double d2 ? Math.Abs(d2) : throw new JinjaException("abs needs a number"),
            "default" or "d" => v is Undefined || (IsTrue(Arg(1, "boolean", false)) && !IsTrue(v)) ? Arg(0, "default_value", "") : v,
            "first" => Iterate(v).FirstOrDefault(Undefined.Instance),
            "last" => v is List<object?> list && list.Count > 0 ? list[^1] : v is string s2 && s2.Length > 0 ? s2[^1].ToString() : Undefined.Instance,
            "list" => Iterate(v).ToList(),
            "reverse" => v is string s3 ? new string(s3.Reverse().ToArray()) : Iterate(v).Reverse().ToList(),
            "join" => string.Join(ToText(Arg(0, "d", "")), Iterate(v).Select(ToText)),
            "replace" => ToText(v).Replace(ToText(Arg(0, "old", "")), ToText(Arg(1, "new", "")), StringComparison.Ordinal),
            "items" => Items(v),
            "tojson" => ToJson(v, Arg(0, "indent", null) is { } indent and not Undefined ? (int)ToLong(indent) : null),
            "safe" or "e" or "escape" => v,
            "selectattr" or "rejectattr" => SelectAttr(v, args, name == "selectattr"),
            "map" => kwargs.TryGetValue("attribute", out var attr)
                ? Iterate(v).Select(x => GetAttribute(x, ToText(attr))).ToList()
                : throw new JinjaException("only map(attribute=...) is supported"),
            _ => throw new JinjaException($"unsupported filter '|{name}'"),
        };
    }

    private static List<object?> Items(object? v) => v is Dictionary<string, object?> d
        ? d.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList()
        : throw new JinjaException($"items() needs a mapping, found {TypeName(v)}");

    private static List<object?> SelectAttr(object? v, List<object?> args, bool keep)
    {
        if (args.Count == 0) throw new JinjaException("selectattr needs an attribute name");
        var attribute = ToText(args[0]);
        var testName = args.Count > 1 ? ToText(args[1]) : null;
        return Iterate(v).Where(item =>
        {
            var value = GetAttribute(item, attribute);
            bool passes = testName is null ? IsTrue(value) : Test(testName, value, args.Skip(2).ToList());
            return passes == keep;
        }).ToList();
    }

    public static bool Test(string name, object? v, List<object?> args) => name switch
    {
        "defined" => v is not Undefined,
        "undefined" => v is Undefined,
        "none" => v is null,
        "string" => v is string,
        "number" => v is long or double,
        "integer" => v is long,
        "float" => v is double,
        "boolean" => v is bool,
        "true" => v is true,
        "false" => v is false,
        "mapping" => v is Dictionary<string, object?>,
        "sequence" or "iterable" => v is string or List<object?> or Dictionary<string, object?>,
        "even" => ToLong(v) % 2 == 0,
        "odd" => ToLong(v) % 2 != 0,
        "eq" or "equalto" or "==" => args.Count == 1 && JinjaValues.Equals(v, args[0]),
        "ne" or "!=" => args.Count == 1 && !JinjaValues.Equals(v, args[0]),
        "in" => args.Count == 1 && IsTrue(Binary("in", v, args[0])),
        _ => throw new JinjaException($"unsupported test 'is {name}'"),
    };

    /// <summary>The Python methods templates call on strings and dicts (value.strip(), message.get('x'), …).</summary>
    public static object? CallMethod(object? target, string name, List<object?> args)
    {
        string Arg(int i) => i < args.Count ? ToText(args[i]) : throw new JinjaException($"{name}() needs {i + 1} argument(s)");
        char[]? Chars() => args.Count > 0 && args[0] is string s ? s.ToCharArray() : null;
        return (target, name) switch
        {
            (string s, "strip") => Chars() is { } c ? s.Trim(c) : s.Trim(),
            (string s, "lstrip") => Chars() is { } c ? s.TrimStart(c) : s.TrimStart(),
            (string s, "rstrip") => Chars() is { } c ? s.TrimEnd(c) : s.TrimEnd(),
            (string s, "upper") => s.ToUpperInvariant(),
            (string s, "lower") => s.ToLowerInvariant(),
            (string s, "title") => CultureInfo.InvariantCulture.TextInfo.ToTitleCase(s.ToLowerInvariant()),
            (string s, "startswith") => s.StartsWith(Arg(0), StringComparison.Ordinal),
            (string s, "endswith") => s.EndsWith(Arg(0), StringComparison.Ordinal),
            (string s, "replace") => s.Replace(Arg(0), Arg(1), StringComparison.Ordinal),
            (string s, "split") => (args.Count == 0 ? s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries) : s.Split(Arg(0)))
                .Select(x => (object?)x).ToList(),
            (string s, "find") => (long)s.IndexOf(Arg(0), StringComparison.Ordinal),
            (Dictionary<string, object?> d, "get") => d.TryGetValue(Arg(0), out var v) ? v : args.Count > 1 ? args[1] : null,
            (Dictionary<string, object?> d, "items") => Items(d),
            (Dictionary<string, object?> d, "keys") => d.Keys.Select(k => (object?)k).ToList(),
            (Dictionary<string, object?> d, "values") => d.Values.ToList(),
            (List<object?> l, "append") => Append(l, args),
            _ => throw new JinjaException($"unsupported method '{name}()' on {TypeName(target)}"),
        };
    }

    private static object? Append(List<object?> list, List<object?> args)
    {
        list.Add(args.Count > 0 ? args[0] : null);
        return null;
    }

    private static string StrftimeNow(string format)
    {
        var now = DateTime.Now;
        return format.Replace("%Y", now.ToString("yyyy", CultureInfo.InvariantCulture))
            .Replace("%m", now.ToString("MM", CultureInfo.InvariantCulture)).Replace("%d", now.ToString("dd", CultureInfo.InvariantCulture))
            .Replace("%B", now.ToString("MMMM", CultureInfo.InvariantCulture)).Replace("%b", now.ToString("MMM", CultureInfo.InvariantCulture))
            .Replace("%H", now.ToString("HH", CultureInfo.InvariantCulture)).Replace("%M", now.ToString("mm", CultureInfo.InvariantCulture));
    }
}
