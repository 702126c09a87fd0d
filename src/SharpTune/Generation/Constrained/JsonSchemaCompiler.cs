using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Generation.Constrained;

/// <summary>A JSON schema that cannot be compiled into a constraint; the message names the schema path.</summary>
public sealed class JsonSchemaException(string message) : Exception(message);

/// <summary>
/// Compiles a JSON schema into the <see cref="GrammarNode"/>s that constrain decoding: the subset OpenAI's strict structured
/// outputs accept — <c>type</c> (one or a list), <c>properties</c>/<c>required</c>/<c>additionalProperties</c>, <c>items</c>
/// with <c>minItems</c>/<c>maxItems</c>, <c>enum</c>, <c>const</c>, <c>anyOf</c>, <c>$ref</c> into <c>$defs</c>/<c>definitions</c>
/// (recursion included), and <c>minimum</c>/<c>maximum</c>/<c>exclusiveMinimum</c>/<c>exclusiveMaximum</c> on integers. In
/// strict mode a keyword that would not be enforced (<c>pattern</c>, <c>format</c>, bounds on a non-integer number, …) is an
/// error; otherwise it is ignored, as OpenAI ignores the schema when <c>strict</c> is off.
/// </summary>
public sealed class JsonSchemaCompiler
{
    private static readonly HashSet<string> Annotations =
        ["type", "description", "title", "default", "examples", "$schema", "$id", "$comment", "properties", "required",
         "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "anyOf", "$ref", "$defs", "definitions", "nullable", "strict"];

    /// <summary>Bounds enforced on integers (<see cref="IntegerRangeNode"/>); on other numbers they would not be.</summary>
    private static readonly string[] IntegerBounds = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

    private readonly bool strict;
    private readonly JsonObject root;
    private readonly Dictionary<string, ReferenceNode> references = [];

    private JsonSchemaCompiler(JsonObject root, bool strict)
    {
        this.root = root;
        this.strict = strict;
    }

    /// <summary>Compiles <paramref name="schema"/>; <paramref name="strict"/> rejects keywords it cannot enforce.</summary>
    /// <exception cref="JsonSchemaException">The schema is malformed or (strict) uses an unsupported keyword.</exception>
    public static GrammarNode Compile(JsonNode? schema, bool strict = true)
    {
        if (schema is not JsonObject obj) throw new JsonSchemaException("the schema must be a JSON object");
        var compiler = new JsonSchemaCompiler(obj, strict);
        var node = compiler.Node(obj, "#");
        // Compiling one definition may reference another not yet seen: resolve until none is left.
        while (compiler.references.Values.FirstOrDefault(r => r.Target is null) is { } reference)
            reference.Target = compiler.Node(compiler.Resolve(reference.Reference), reference.Reference);
        return node;
    }

    private GrammarNode Node(JsonNode? schema, string path)
    {
        if (schema is JsonValue v && v.GetValueKind() == JsonValueKind.True) return AnyValueNode.Value;
        if (schema is not JsonObject obj) throw new JsonSchemaException($"{path}: a schema must be an object (or true)");
        if (strict)
            foreach (var (key, _) in obj)
                if (!Annotations.Contains(key) && !(IntegerBounds.Contains(key) && OnlyIntegers(obj)) &&
                    !(key is "pattern" or "format" && HasType(obj, "string")))
                    throw new JsonSchemaException($"{path}: keyword '{key}' is not supported in strict mode (it would not be enforced); " +
                        "remove it or set strict to false");
        if (strict) RefuseIgnoredSiblings(obj, path);
        if (obj["$ref"] is { } reference)
        {
            var target = reference is JsonValue rv && rv.TryGetValue<string>(out var r) ? r : throw new JsonSchemaException($"{path}.$ref: must be a string");
            if (!references.TryGetValue(target, out var node)) references[target] = node = new ReferenceNode(target);
            return node;
        }
        if (obj.ContainsKey("const") || obj.ContainsKey("enum")) return Literals(obj, path);
        if (obj["anyOf"] is { } anyOf)
        {
            if (anyOf is not JsonArray { Count: > 0 } options) throw new JsonSchemaException($"{path}.anyOf: must be a non-empty array");
            return new UnionNode(options.Select((o, i) => Node(o, $"{path}.anyOf[{i}]")).ToArray());
        }
        var types = obj["type"] switch
        {
            null => null,
            JsonValue t when t.TryGetValue<string>(out var one) => [one],
            JsonArray list => list.Select((t, i) => t is JsonValue tv && tv.TryGetValue<string>(out var s) ? s
                : throw new JsonSchemaException($"{path}.type[{i}]: must be a string")).ToArray(),
            _ => throw new JsonSchemaException($"{path}.type: must be a string or an array of strings"),
        };
        if (types is null)
        {
            // Without a type, object and array keywords still bind every object and array (JSON Schema applies them to
            // values of their kind): the value is written as that kind so that they hold.
            var shapes = new List<GrammarNode>();
            if (ObjectKeywords.Any(obj.ContainsKey)) shapes.Add(Object(obj, path));
            if (ArrayKeywords.Any(obj.ContainsKey)) shapes.Add(Array(obj, path));
            return shapes.Count switch { 0 => AnyValueNode.Value, 1 => shapes[0], _ => new UnionNode(shapes) };
        }
        var nodes = types.Select(t => TypeNode(t, obj, path)).ToList();
        if (obj["nullable"] is JsonValue n && n.GetValueKind() == JsonValueKind.True && !types.Contains("null")) nodes.Add(LiteralNode.Null);
        return nodes.Count == 1 ? nodes[0] : new UnionNode(nodes);
    }

    private GrammarNode TypeNode(string type, JsonObject obj, string path) => type switch
    {
        "string" => StringShape(obj, path),
        "number" => NumberNode.Number,
        "integer" => IntegerRange(obj, path) is var (minimum, maximum) && (minimum > long.MinValue || maximum < long.MaxValue)
            ? new IntegerRangeNode(minimum, maximum) : NumberNode.Integer,
        "boolean" => LiteralNode.Boolean,
        "null" => LiteralNode.Null,
        "object" => Object(obj, path),
        "array" => Array(obj, path),
        _ => throw new JsonSchemaException($"{path}.type: unknown type '{type}' (string, number, integer, boolean, null, object, array)"),
    };

    private static readonly string[] ObjectKeywords = ["properties", "required", "additionalProperties"];
    private static readonly string[] ArrayKeywords = ["items", "minItems", "maxItems"];

    /// <summary>
    /// Keywords that constrain a value. Beside <c>$ref</c> or <c>anyOf</c> the compiler would drop them (JSON Schema
    /// 2020-12 applies them too), and beside <c>enum</c>/<c>const</c> only <c>type</c> is checked against the values.
    /// </summary>
    private static readonly string[] Constraining =
        ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "anyOf",
         "$ref", "nullable", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

    /// <summary>Strict mode refuses a constraining keyword that the schema's <c>$ref</c>, <c>anyOf</c> or <c>enum</c>/<c>const</c> would leave unenforced.</summary>
    private static void RefuseIgnoredSiblings(JsonObject obj, string path)
    {
        (string? owner, string[] allowed) = obj.ContainsKey("$ref") ? ((string?)"$ref", new[] { "$ref" })
            : obj.ContainsKey("const") ? ("const", ["const", "enum", "type"])
            : obj.ContainsKey("enum") ? ("enum", ["enum", "type"])
            : obj.ContainsKey("anyOf") ? ("anyOf", ["anyOf"])
            : (null, []);
        if (owner is null) return;
        foreach (var key in Constraining)
            if (obj.ContainsKey(key) && !allowed.Contains(key))
                throw new JsonSchemaException($"{path}: keyword '{key}' beside '{owner}' is not supported in strict mode (it would not be " +
                    (owner is "enum" or "const" ? "enforced); list only the values it allows" : $"enforced); move it into the schema '{owner}' selects"));
    }

    /// <summary>
    /// The <c>const</c> or <c>enum</c> values, each written exactly as the schema spells it, keeping only those of the
    /// schema's <c>type</c> (a value of another type never validates) and, with both keywords, the const when the enum holds it.
    /// </summary>
    private GrammarNode Literals(JsonObject obj, string path)
    {
        List<JsonNode?> values;
        if (obj.TryGetPropertyValue("const", out var constant)) values = [constant];
        else if (obj["enum"] is JsonArray { Count: > 0 } list) values = [.. list];
        else throw new JsonSchemaException($"{path}.enum: must be a non-empty array");
        if (obj.ContainsKey("const") && obj.ContainsKey("enum"))
        {
            if (obj["enum"] is not JsonArray options) throw new JsonSchemaException($"{path}.enum: must be a non-empty array");
            values = values.Where(v => options.Any(o => JsonNode.DeepEquals(o, v))).ToList();
        }
        var types = TypeNames(obj);
        if (types.Count > 0) values = values.Where(v => types.Any(t => t is not null && IsOfType(v, t))).ToList();
        if (values.Count == 0)
            throw new JsonSchemaException($"{path}: no value of its {(obj.ContainsKey("const") ? "const" : "enum")} satisfies its " +
                (types.Count > 0 ? "type" : "enum"));
        return new LiteralNode(values.Select(Canonical));
    }

    /// <summary>
    /// JSON Schema's type test: an integer is any number with no fractional part (1.0 and 1e2 count, as in jsonschema's
    /// <c>is_integer</c>, which reads the number as a double when it has a fraction or exponent).
    /// </summary>
    private static bool IsOfType(JsonNode? value, string type) => (type, value) switch
    {
        ("null", null) => true,
        ("object", JsonObject) => true,
        ("array", JsonArray) => true,
        (_, JsonValue v) => (type, v.GetValueKind()) switch
        {
            ("boolean", JsonValueKind.True or JsonValueKind.False) => true,
            ("string", JsonValueKind.String) => true,
            ("number", JsonValueKind.Number) => true,
            ("integer", JsonValueKind.Number) => v.ToJsonString() is var text && (text.IndexOfAny(['.', 'e', 'E']) < 0 ||
                double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) && Math.Floor(d) == d),
            _ => false,
        },
        _ => false,
    };

    /// <summary>
    /// A string with a <c>pattern</c> or a known <c>format</c> (date-time, date, time, uuid, ipv4: what .NET's DateTime,
    /// DateOnly, TimeOnly and Guid are described with) is written to match it (<see cref="StringPattern"/>); one this
    /// compiler cannot enforce is an error in strict mode and a plain string otherwise.
    /// </summary>
    private GrammarNode StringShape(JsonObject obj, string path)
    {
        string? Text(string name) => obj[name] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => throw new JsonSchemaException($"{path}.{name}: must be a string"),
        };
        var (pattern, format) = (Text("pattern"), Text("format"));
        if (pattern is null && format is null) return StringNode.Instance;
        if (pattern is not null && format is not null)
            return strict ? throw new JsonSchemaException($"{path}: 'pattern' and 'format' together are not supported in strict mode; keep one")
                : StringNode.Instance;
        var (source, field) = pattern is not null ? (pattern, "pattern") : (PatternStringNode.PatternForFormat(format!), "format");
        if (source is null)
            return strict ? throw new JsonSchemaException($"{path}.format: format '{format}' is not supported in strict mode (date-time, date, time, uuid and ipv4 are)")
                : StringNode.Instance;
        if (StringPattern.TryParse(source, out var why) is { } compiled) return new PatternStringNode(compiled, source);
        return strict ? throw new JsonSchemaException($"{path}.{field}: '{source}' cannot be enforced: {why}") : StringNode.Instance;
    }

    /// <summary>The schema's type names, one or a list (none when it has no <c>type</c>; malformed ones fail in <see cref="Node"/>).</summary>
    private static IReadOnlyList<string?> TypeNames(JsonObject obj) => obj["type"] switch
    {
        JsonValue t => [t.TryGetValue<string>(out var one) ? one : null],
        JsonArray list => list.Select(t => t?.ToString()).ToList(),
        _ => [],
    };

    /// <summary>True when <paramref name="type"/> is the schema's type or one of its types.</summary>
    private static bool HasType(JsonObject obj, string type) => TypeNames(obj).Contains(type);

    /// <summary>True when the schema's types are integer, or integer and null: the types whose bounds are enforced.</summary>
    private static bool OnlyIntegers(JsonObject obj) =>
        TypeNames(obj) is var types && types.Contains("integer") && types.All(t => t is "integer" or "null");

    /// <summary>The inclusive integer range a schema's bounds allow (a long's range where none is given).</summary>
    private static (long Minimum, long Maximum) IntegerRange(JsonObject obj, string path)
    {
        // Exact decimal arithmetic: as doubles, 9007199254740993 reads as ...992 and 1e17 + 1 as 1e17, which let an
        // integer just outside the bound through. A bound beyond decimal's range lies beyond every long anyway.
        decimal? Bound(string name) => obj[name] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<decimal>(out var m) => m,
            JsonValue v when v.TryGetValue<double>(out var d) && double.IsFinite(d) => d < 0 ? decimal.MinValue : decimal.MaxValue,
            _ => throw new JsonSchemaException($"{path}.{name}: must be a number"),
        };
        var low = Math.Max(Bound("minimum") is { } min ? Math.Ceiling(min) : decimal.MinValue,
            Bound("exclusiveMinimum") is { } exclusiveMin ? Math.Floor(exclusiveMin) + 1 : decimal.MinValue);
        var high = Math.Min(Bound("maximum") is { } max ? Math.Floor(max) : decimal.MaxValue,
            Bound("exclusiveMaximum") is { } exclusiveMax ? Math.Ceiling(exclusiveMax) - 1 : decimal.MaxValue);
        if (low > high) throw new JsonSchemaException($"{path}: no integer lies within its minimum and maximum");
        static long ToLong(decimal d) => d <= long.MinValue ? long.MinValue : d >= long.MaxValue ? long.MaxValue : (long)d;
        return (ToLong(low), ToLong(high));
    }

    private GrammarNode Object(JsonObject obj, string path)
    {
        var additional = obj["additionalProperties"];
        var closed = additional is JsonValue a && a.GetValueKind() == JsonValueKind.False;
        if (obj["properties"] is not JsonObject properties)
        {
            if (obj.ContainsKey("properties")) throw new JsonSchemaException($"{path}.properties: must be an object");
            if (obj["required"] is JsonArray { Count: > 0 } names)
                throw new JsonSchemaException($"{path}.required: '{names[0]}' is not in properties");
            if (strict && additional is not null && !(additional is JsonValue b && b.GetValueKind() is JsonValueKind.True or JsonValueKind.False))
                throw new JsonSchemaException($"{path}.additionalProperties: a schema for additional properties is not supported in strict mode " +
                    "(it would not be enforced); list the properties instead");
            return closed ? new ObjectNode([]) : AnyValueNode.Object;
        }
        if (strict && !closed)
            throw new JsonSchemaException($"{path}: strict mode needs \"additionalProperties\": false on every object");
        var required = obj["required"] switch
        {
            null => new HashSet<string>(),
            JsonArray list => list.Select((r, i) => r is JsonValue rv && rv.TryGetValue<string>(out var s) ? s
                : throw new JsonSchemaException($"{path}.required[{i}]: must be a string")).ToHashSet(),
            _ => throw new JsonSchemaException($"{path}.required: must be an array of property names"),
        };
        foreach (var name in required)
            if (!properties.ContainsKey(name)) throw new JsonSchemaException($"{path}.required: '{name}' is not in properties");
        if (strict)
            foreach (var (name, _) in properties)
                if (!required.Contains(name))
                    throw new JsonSchemaException($"{path}.required: strict mode needs every property required; '{name}' is not " +
                        "(make it nullable with \"type\": [\"…\", \"null\"] instead)");
        return new ObjectNode(properties.Select(p => new ObjectProperty(p.Key, Node(p.Value, $"{path}.properties.{p.Key}"), required.Contains(p.Key))).ToArray());
    }

    private GrammarNode Array(JsonObject obj, string path)
    {
        var items = obj["items"] is { } i ? Node(i, $"{path}.items") : AnyValueNode.Value;
        var min = Count(obj, "minItems", path) ?? 0;
        var max = Count(obj, "maxItems", path);
        if (max < min) throw new JsonSchemaException($"{path}: maxItems {max} is below minItems {min}");
        return new ArrayNode(items, min, max);
    }

    private static int? Count(JsonObject obj, string name, string path) => obj[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<int>(out var n) && n >= 0 => n,
        _ => throw new JsonSchemaException($"{path}.{name}: must be a non-negative integer"),
    };

    private JsonNode Resolve(string reference)
    {
        if (reference == "#") return root;
        if (!reference.StartsWith("#/", StringComparison.Ordinal))
            throw new JsonSchemaException($"$ref '{reference}': only references inside the schema (#/...) are supported");
        JsonNode? node = root;
        foreach (var part in reference[2..].Split('/'))
        {
            var key = part.Replace("~1", "/").Replace("~0", "~");
            node = node is JsonObject o && o.TryGetPropertyValue(key, out var child) ? child
                : throw new JsonSchemaException($"$ref '{reference}': nothing at '{key}'");
        }
        return node ?? throw new JsonSchemaException($"$ref '{reference}' points at null");
    }

    private static string Canonical(JsonNode? value) => JsonText.Write(value);
}
