namespace SharpTune.Generation.Constrained;

/// <summary>
/// One JSON value shape a constrained output may take, compiled from a JSON schema. Each node knows the fewest bytes a
/// value of its shape can be written in (<see cref="MinLength"/>), which the constraint uses to close the output before
/// the token budget runs out, and how a value of its shape starts (<see cref="Start"/>).
/// </summary>
public abstract class GrammarNode
{
    private int? minLength;
    private bool computing;

    /// <summary>Bytes in the shortest value of this shape (a large number while a recursive shape is being measured).</summary>
    public int MinLength
    {
        get
        {
            if (minLength is { } known) return known;
            if (computing) return Unbounded;   // a recursive reference: some other branch must be shorter
            computing = true;
            try { return (minLength = ComputeMinLength()).Value; }
            finally { computing = false; }
        }
    }

    internal const int Unbounded = 1 << 20;

    protected abstract int ComputeMinLength();

    /// <summary>Feeds the first byte of a value of this shape; adds the resulting stacks to <paramref name="into"/>.</summary>
    internal abstract void Start(byte b, FrameStack? rest, List<FrameStack?> into);
}

/// <summary>Any JSON string.</summary>
public sealed class StringNode : GrammarNode
{
    public static StringNode Instance { get; } = new();

    protected override int ComputeMinLength() => 2;

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        if (b == '"') into.Add(new FrameStack(StringFrame.Normal, rest));
    }
}

/// <summary>A JSON number; integers only when <see cref="IntegerOnly"/>.</summary>
public sealed class NumberNode(bool integerOnly) : GrammarNode
{
    public static NumberNode Number { get; } = new(false);
    public static NumberNode Integer { get; } = new(true);

    public bool IntegerOnly { get; } = integerOnly;

    protected override int ComputeMinLength() => 1;

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        var phase = b switch
        {
            (byte)'-' => NumberFrame.Phase.Minus,
            (byte)'0' => NumberFrame.Phase.Zero,
            >= (byte)'1' and <= (byte)'9' => NumberFrame.Phase.Int,
            _ => (NumberFrame.Phase?)null,
        };
        if (phase is { } p) into.Add(new FrameStack(new NumberFrame(p, IntegerOnly, p == NumberFrame.Phase.Int ? 1 : 0), rest));
    }
}

/// <summary>One of a fixed set of JSON texts (enum and const values, true, false, null), written exactly.</summary>
public sealed class LiteralNode : GrammarNode
{
    public LiteralNode(IEnumerable<string> jsonTexts)
    {
        Options = jsonTexts.Distinct().Select(System.Text.Encoding.UTF8.GetBytes).Where(b => b.Length > 0).ToArray();
        if (Options.Length == 0) throw new ArgumentException("a literal needs at least one non-empty value");
    }

    public static LiteralNode Boolean { get; } = new(["true", "false"]);
    public static LiteralNode Null { get; } = new(["null"]);

    internal byte[][] Options { get; }

    protected override int ComputeMinLength() => Options.Min(o => o.Length);

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into) =>
        LiteralFrame.Continue(Options, 0, allowSpecialTokens: false, b, rest, into);
}

/// <summary>One of several shapes (anyOf, a list of types).</summary>
public sealed class UnionNode(IReadOnlyList<GrammarNode> options) : GrammarNode
{
    public IReadOnlyList<GrammarNode> Options { get; } = options;

    protected override int ComputeMinLength() => Options.Min(o => o.MinLength);

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        foreach (var option in Options) option.Start(b, rest, into);
    }
}

/// <summary>A <c>$ref</c>, resolved once every definition is compiled (so definitions may refer to themselves).</summary>
public sealed class ReferenceNode(string reference) : GrammarNode
{
    public string Reference { get; } = reference;

    public GrammarNode? Target { get; set; }

    private GrammarNode Resolved => Target ?? throw new InvalidOperationException($"$ref '{Reference}' was never resolved");

    protected override int ComputeMinLength() => Resolved.MinLength;

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into) => Resolved.Start(b, rest, into);
}

/// <summary>Any JSON value (json_object mode's members); <see cref="ObjectOnly"/> for its top level.</summary>
public sealed class AnyValueNode : GrammarNode
{
    private AnyValueNode(bool objectOnly) => ObjectOnly = objectOnly;

    public static AnyValueNode Value { get; } = new(false);
    public static AnyValueNode Object { get; } = new(true);

    public bool ObjectOnly { get; }

    protected override int ComputeMinLength() => ObjectOnly ? 2 : 1;

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        if (b == '{') { into.Add(new FrameStack(new AnyObjectFrame(AnyObjectFrame.Phase.Open, 0), rest)); return; }
        if (ObjectOnly) return;
        if (b == '[') { into.Add(new FrameStack(new ArrayFrame(ArrayNode.AnyArray, ArrayFrame.Phase.Open, 0, 0), rest)); return; }
        StringNode.Instance.Start(b, rest, into);
        NumberNode.Number.Start(b, rest, into);
        LiteralNode.Boolean.Start(b, rest, into);
        LiteralNode.Null.Start(b, rest, into);
    }
}

/// <summary>A JSON array of <see cref="Items"/> with <see cref="MinItems"/>..<see cref="MaxItems"/> elements.</summary>
public sealed class ArrayNode(GrammarNode items, int minItems, int? maxItems) : GrammarNode
{
    internal static ArrayNode AnyArray { get; } = new(AnyValueNode.Value, 0, null);

    public GrammarNode Items { get; } = items;
    public int MinItems { get; } = minItems;
    public int? MaxItems { get; } = maxItems;

    protected override int ComputeMinLength() => 1 + CostAfterOpen();

    /// <summary>Bytes still needed after '[' to close with <see cref="MinItems"/> elements.</summary>
    internal int CostAfterOpen() => MinItems == 0 ? 1 : Saturate((long)MinItems * Items.MinLength + (MinItems - 1) + 1);

    /// <summary>Bytes still needed after <paramref name="count"/> elements.</summary>
    internal int CostAfterValue(int count) => Saturate((long)Math.Max(0, MinItems - count) * (1 + Items.MinLength) + 1);

    internal static int Saturate(long value) => (int)Math.Min(value, Unbounded);

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        if (b == '[') into.Add(new FrameStack(new ArrayFrame(this, ArrayFrame.Phase.Open, 0, 0), rest));
    }
}

/// <summary>One property of an <see cref="ObjectNode"/>.</summary>
public sealed record ObjectProperty(string Name, GrammarNode Value, bool Required);

/// <summary>
/// A JSON object with the given properties written in schema order (as OpenAI's structured outputs write them); optional
/// properties may be left out, required ones may not, and no others appear.
/// </summary>
public sealed class ObjectNode : GrammarNode
{
    public ObjectNode(IReadOnlyList<ObjectProperty> properties)
    {
        Properties = properties;
        KeyBytes = properties.Select(p => System.Text.Encoding.UTF8.GetBytes(
            JsonText.Quote(p.Name)[1..])).ToArray();   // after the opening quote
    }

    public IReadOnlyList<ObjectProperty> Properties { get; }

    /// <summary>Each key as written after its opening quote (escaped, closing quote included).</summary>
    internal byte[][] KeyBytes { get; }

    private int[]? requiredTail;

    /// <summary>Bytes for ',"key":value' of every required property from index i on (the array has one extra 0).</summary>
    internal int RequiredTail(int i)
    {
        if (requiredTail is null)
        {
            var tail = new int[Properties.Count + 1];
            for (var j = Properties.Count - 1; j >= 0; j--)
                tail[j] = ArrayNode.Saturate(tail[j + 1] + (Properties[j].Required ? 1 + 1 + KeyBytes[j].Length + 1 + Properties[j].Value.MinLength : 0));
            requiredTail = tail;
        }
        return requiredTail[i];
    }

    /// <summary>The properties that may come next when the next unwritten index is <paramref name="next"/>.</summary>
    internal IEnumerable<int> Candidates(int next)
    {
        for (var j = next; j < Properties.Count; j++)
        {
            yield return j;
            if (Properties[j].Required) yield break;
        }
    }

    internal bool RequiredRemain(int next) => Properties.Skip(next).Any(p => p.Required);

    /// <summary>Bytes to write property <paramref name="j"/> from <paramref name="keyBytesLeft"/> of its key on, and then close.</summary>
    internal int CostThroughProperty(int j, int keyBytesLeft) =>
        ArrayNode.Saturate((long)keyBytesLeft + 1 + Properties[j].Value.MinLength + RequiredTail(j + 1) + 1);

    /// <summary>Bytes to close from a point where a key must start (after '{' with required properties, or after ',').</summary>
    internal int CostFromKeyStart(int next) =>
        Candidates(next).Select(j => 1 + CostThroughProperty(j, KeyBytes[j].Length)).DefaultIfEmpty(Unbounded).Min();

    protected override int ComputeMinLength() => 1 + (RequiredRemain(0) ? CostFromKeyStart(0) : 1);

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        if (b == '{') into.Add(new FrameStack(new ObjectFrame(this, ObjectFrame.Phase.Open, 0, 0, [], 0), rest));
    }
}

/// <summary>
/// The one spelling the grammar writes for keys and enum/const values: compact, with only the escapes JSON requires
/// (quote, backslash, control characters), so keys and enum strings read as written. System.Text.Json's relaxed encoder
/// also escapes characters outside the Basic Multilingual Plane (an emoji became \ud83d\ude00) and U+2028/U+2029,
/// which the raw spelling a model would write then failed to match. Strings are escaped by PythonJson's table (json.dumps
/// with ensure_ascii=False), which every JSON writer here shares.
/// </summary>
internal static class JsonText
{
    /// <summary><paramref name="value"/> as compact JSON; numbers keep the schema's spelling.</summary>
    public static string Write(System.Text.Json.Nodes.JsonNode? value)
    {
        var text = new System.Text.StringBuilder();
        Write(value, text);
        return text.ToString();
    }

    private static void Write(System.Text.Json.Nodes.JsonNode? value, System.Text.StringBuilder text)
    {
        switch (value)
        {
            case null:
                text.Append("null");
                break;
            case System.Text.Json.Nodes.JsonObject obj:
                text.Append('{');
                var first = true;
                foreach (var (key, child) in obj)
                {
                    if (!first) text.Append(',');
                    first = false;
                    text.Append(Quote(key)).Append(':');
                    Write(child, text);
                }
                text.Append('}');
                break;
            case System.Text.Json.Nodes.JsonArray array:
                text.Append('[');
                for (var i = 0; i < array.Count; i++)
                {
                    if (i > 0) text.Append(',');
                    Write(array[i], text);
                }
                text.Append(']');
                break;
            default:
                text.Append(value.GetValueKind() == System.Text.Json.JsonValueKind.String ? Quote(value.GetValue<string>()) : value.ToJsonString());
                break;
        }
    }

    /// <summary>
    /// <paramref name="s"/> as a JSON string, quotes included: json.dumps' ensure_ascii=False spelling, except that an
    /// unpaired surrogate is escaped, since the grammar matches UTF-8 bytes and only the escape reads back as that string.
    /// </summary>
    public static string Quote(string s)
    {
        var text = new System.Text.StringBuilder(s.Length + 2);
        IO.PythonJson.WriteString(text, s, ensureAscii: false, escapeLoneSurrogates: true);
        return text.ToString();
    }
}
