using System.Globalization;
using System.Text;
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
        ["dict"] = (JinjaFunction)((args, kwargs) => args.Count == 0
            ? new Dictionary<string, object?>(kwargs)
            : throw new JinjaException("dict() takes keyword arguments only here: dict(name=value, …)")),
        ["strftime_now"] = (JinjaFunction)((args, _) => StrftimeNow(args.Count > 0 ? ToText(args[0]) : "%Y-%m-%d")),
    };

    /// <summary>
    /// <c>x.name</c> as Jinja reads it: a mapping's key, else undefined (on none and other values too); only an undefined
    /// value itself cannot be read further, which jinja2 reports as an error (<c>messages[5].role</c> past the end).
    /// </summary>
    public static object? GetAttribute(object? target, string name) => target switch
    {
        Dictionary<string, object?> d => d.TryGetValue(name, out var v) ? v : Undefined.Instance,
        Undefined => throw new JinjaException($"cannot read '.{name}' of an undefined value"),
        _ => Undefined.Instance,
    };

    /// <summary>
    /// Jinja's attribute getter for map/selectattr/sort(attribute=…): a dotted path whose all-digit parts index lists
    /// (<c>map(attribute=0)</c> takes each pair's first item).
    /// </summary>
    public static object? GetAttributePath(object? target, object? path)
    {
        if (path is long index) return target is List<object?> or string ? GetItem(target, index) : GetAttribute(target, ToText(path));
        foreach (var part in ToText(path).Split('.'))
            target = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && target is List<object?> or string
                ? GetItem(target, i) : GetAttribute(target, part);
        return target;
    }

    /// <summary>
    /// <c>x[key]</c> as Jinja reads it: a mapping's key or a list's or string's position, else undefined (jinja2 falls
    /// back to an attribute, and a string has no 'type': Llama 3.2 Vision's <c>content['type']</c> on plain text); only
    /// an undefined value cannot be indexed.
    /// </summary>
    public static object? GetItem(object? target, object? key) => (target, key) switch
    {
        (Dictionary<string, object?> d, _) => d.TryGetValue(ToText(key), out var v) ? v : Undefined.Instance,
        (List<object?> list, long i) => Index(list.Count, i) is var k && k >= 0 ? list[k] : Undefined.Instance,
        (string s, long i) => Index(s.Length, i) is var k && k >= 0 ? s[k].ToString() : Undefined.Instance,
        (Undefined, _) => throw new JinjaException($"cannot index an undefined value with '{ToText(key)}'"),
        _ => Undefined.Instance,
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
                Dictionary<string, object?> d => d.ContainsKey(ToText(a)) && JinjaValues.Equals(JinjaDict.KeyOf(d, ToText(a)), a),
                Undefined => false,   // an undefined value iterates as empty: SmolLM3's "/system_override" in system_message
                _ => throw new JinjaException($"'in' needs a string, list or mapping on the right, found {TypeName(b)}"),
            };
        }
        return (op, a, b) switch
        {
            ("+", string x, string y) => x + y,
            ("%", string format, _) => PercentFormat(format, b),
            ("**", long x, long y) when y >= 0 => (long)Math.Pow(x, y),
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
        "+" => x + y, "-" => x - y, "*" => x * y, "/" => x / y, "//" => Math.Floor(x / y), "%" => x - y * Math.Floor(x / y), "**" => Math.Pow(x, y),
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
                Undefined => 0L,
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
            "items" => v is Undefined ? new List<object?>() : Items(v),
            "tojson" => ToJson(v, Arg(1, "indent", null) is { } indent and not Undefined ? (int)ToLong(indent) : null,
                Arg(2, "separators", null) is List<object?> { Count: 2 } separators ? (ToText(separators[0]), ToText(separators[1])) : null,
                IsTrue(Arg(3, "sort_keys", false)), IsTrue(Arg(0, "ensure_ascii", false))),   // transformers' tojson(x, ensure_ascii, indent, separators, sort_keys)
            "safe" or "e" or "escape" => v,
            "selectattr" or "rejectattr" => SelectAttr(v, args, name == "selectattr"),
            "select" or "reject" => Iterate(v).Where(item =>
                (args.Count == 0 ? IsTrue(item) : Test(ToText(args[0]), item, args.Skip(1).ToList())) == (name == "select")).ToList(),
            "sort" => Sorted(Iterate(v).ToList(), IsTrue(Arg(0, "reverse", false)), IsTrue(Arg(1, "case_sensitive", false)),
                Arg(2, "attribute", null) is string a ? item => GetAttributePath(item, a) : item => item),
            "dictsort" => v is Dictionary<string, object?> dict   // by key, strings lower-cased (case_sensitive=False)
                ? Sorted(Items(dict), IsTrue(Arg(2, "reverse", false)), IsTrue(Arg(0, "case_sensitive", false)),
                    ToText(Arg(1, "by", "key")) switch
                    {
                        "key" => pair => ((List<object?>)pair!)[0],
                        "value" => pair => ((List<object?>)pair!)[1],
                        var by => throw new JinjaException($"dictsort sorts by \"key\" or \"value\", not \"{by}\""),
                    })
                : throw new JinjaException($"dictsort needs a mapping, found {TypeName(v)}"),
            "indent" => Indent(ToText(v), Arg(0, "width", 4L) is string w ? w : new string(' ', (int)ToLong(Arg(0, "width", 4L))),
                IsTrue(Arg(1, "first", false)), IsTrue(Arg(2, "blank", false))),
            "round" => RoundNumber(v, (int)ToLong(Arg(0, "precision", 0L)), ToText(Arg(1, "method", "common"))),
            "map" => kwargs.TryGetValue("attribute", out var attr)
                ? Iterate(v).Select(x => GetAttributePath(x, attr)).ToList()
                : args.Count > 0 && args[0] is string filter   // map('upper'), map('default', 'x'): a filter on each item
                    ? Iterate(v).Select(x => Filter(filter, x, args.Skip(1).ToList(), kwargs)).ToList()
                    : throw new JinjaException("map needs attribute=... or a filter name"),
            _ => throw new JinjaException($"unsupported filter '|{name}'"),
        };
    }

    /// <summary>
    /// Jinja's sort and dictsort: Python's ordering of the keys, strings lower-cased first unless case-sensitive (Jinja's
    /// ignore_case, so '_' sorts before letters), stable in either direction.
    /// </summary>
    private static List<object?> Sorted(List<object?> items, bool reverse, bool caseSensitive, Func<object?, object?> sortKey)
    {
        object? Key(object? item) => sortKey(item) is string s && !caseSensitive ? s.ToLowerInvariant() : sortKey(item);
        int CompareKeys(object? a, object? b) => JinjaValues.Compare(Key(a), Key(b));
        var sorted = items.Select((item, i) => (item, i)).ToList();
        sorted.Sort((a, b) => CompareKeys(a.item, b.item) is var c && c != 0 ? (reverse ? -c : c) : a.i.CompareTo(b.i));
        return sorted.Select(p => p.item).ToList();
    }

    /// <summary>Jinja's indent, step for step: every line after the first prefixed (blank ones only when asked), the
    /// first too with <paramref name="first"/>; lines split as Python's splitlines splits them and joined with \n.</summary>
    private static string Indent(string text, string prefix, bool first, bool blank)
    {
        var lines = SplitLines(text + "\n");
        var result = blank ? string.Join("\n" + prefix, lines)
            : lines[0] + (lines.Count > 1 ? "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? prefix + l : l)) : "");
        return first ? prefix + result : result;
    }

    /// <summary>Python's str.splitlines(): breaks at \n, \r, \r\n, \v, \f, \x1c–\x1e, \x85, U+2028 and U+2029; no empty last line.</summary>
    private static List<string> SplitLines(string text)
    {
        var lines = new List<string>();
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')) continue;
            lines.Add(text[start..i]);
            if (text[i] == '\r' && i + 1 < text.Length && text[i + 1] == '\n') i++;
            start = i + 1;
        }
        if (start < text.Length) lines.Add(text[start..]);
        return lines;
    }

    /// <summary>Jinja's round: Python's round() ("common": halves to even), or "ceil"/"floor"; always a float.</summary>
    private static double RoundNumber(object? v, int precision, string method)
    {
        var value = v is long l ? l : v is double d ? d : throw new JinjaException($"round needs a number, found {TypeName(v)}");
        var scale = Math.Pow(10, precision);
        return method switch
        {
            "common" => Math.Round(value, precision, MidpointRounding.ToEven),   // Python's round(), as Jinja calls it
            "ceil" => Math.Ceiling(value * scale) / scale,
            "floor" => Math.Floor(value * scale) / scale,
            _ => throw new JinjaException($"round: method must be common, ceil or floor, not '{method}'"),
        };
    }

    /// <summary>
    /// Python's <c>format % values</c> for the conversions templates use: %s, %r, %d and %i, %f with a precision, %%.
    /// A list gives the values in order (Python's tuple); anything else is the one value.
    /// </summary>
    private static string PercentFormat(string format, object? values)
    {
        var items = values is List<object?> list ? list : [values];
        var sb = new StringBuilder();
        var next = 0;
        object? Take() => next < items.Count ? items[next++] : throw new JinjaException("not enough arguments for format string");
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%') { sb.Append(format[i]); continue; }
            if (++i >= format.Length) throw new JinjaException("incomplete format");
            var precision = -1;
            if (format[i] == '.')
            {
                var start = ++i;
                while (i < format.Length && char.IsAsciiDigit(format[i])) i++;
                precision = int.Parse(format.AsSpan(start, i - start), CultureInfo.InvariantCulture);
                if (i >= format.Length) throw new JinjaException("incomplete format");
            }
            sb.Append(format[i] switch
            {
                '%' => "%",
                's' => ToText(Take()),
                'r' => Repr(Take()),
                'd' or 'i' => ToLong(Take()).ToString(CultureInfo.InvariantCulture),
                'f' => Convert.ToDouble(Take(), CultureInfo.InvariantCulture).ToString("F" + (precision < 0 ? 6 : precision), CultureInfo.InvariantCulture),
                var c => throw new JinjaException($"unsupported format character '{c}'"),
            });
        }
        if (next < items.Count) throw new JinjaException("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static List<object?> Items(object? v) => v is Dictionary<string, object?> d
        ? d.Select(p => (object?)new List<object?> { JinjaDict.KeyOf(d, p.Key), p.Value }).ToList()
        : throw new JinjaException($"items() needs a mapping, found {TypeName(v)}");

    private static List<object?> SelectAttr(object? v, List<object?> args, bool keep)
    {
        if (args.Count == 0) throw new JinjaException("selectattr needs an attribute name");
        var attribute = ToText(args[0]);
        var testName = args.Count > 1 ? ToText(args[1]) : null;
        return Iterate(v).Where(item =>
        {
            var value = GetAttributePath(item, attribute);
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
        "divisibleby" => args.Count == 1 && ToLong(v) % ToLong(args[0]) == 0,
        "lt" or "lessthan" or "<" => args.Count == 1 && JinjaValues.Compare(v, args[0]) < 0,
        "le" or "<=" => args.Count == 1 && JinjaValues.Compare(v, args[0]) <= 0,
        "gt" or "greaterthan" or ">" => args.Count == 1 && JinjaValues.Compare(v, args[0]) > 0,
        "ge" or ">=" => args.Count == 1 && JinjaValues.Compare(v, args[0]) >= 0,
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
            (string s, "startswith") => args.Count > 0 && args[0] is List<object?> prefixes
                ? prefixes.Any(p => s.StartsWith(ToText(p), StringComparison.Ordinal)) : s.StartsWith(Arg(0), StringComparison.Ordinal),
            (string s, "endswith") => args.Count > 0 && args[0] is List<object?> suffixes
                ? suffixes.Any(p => s.EndsWith(ToText(p), StringComparison.Ordinal)) : s.EndsWith(Arg(0), StringComparison.Ordinal),
            (string s, "replace") => s.Replace(Arg(0), Arg(1), StringComparison.Ordinal),
            (string s, "split") => (args.Count == 0 ? s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries) : s.Split(Arg(0)))
                .Select(x => (object?)x).ToList(),
            (string s, "find") => (long)s.IndexOf(Arg(0), StringComparison.Ordinal),
            (string s, "splitlines") => SplitLines(s).Select(x => (object?)x).ToList(),
            (Dictionary<string, object?> d, "get") => d.TryGetValue(Arg(0), out var v) ? v : args.Count > 1 ? args[1] : null,
            (Dictionary<string, object?> d, "items") => Items(d),
            (Dictionary<string, object?> d, "keys") => JinjaDict.KeysAsWritten(d).ToList(),
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
