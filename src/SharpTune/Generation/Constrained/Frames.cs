namespace SharpTune.Generation.Constrained;

/// <summary>
/// An immutable stack of parser frames, top first: the state of a JSON parse after some bytes. <see cref="Cost"/> is
/// the fewest bytes that complete it. A null stack is a finished parse.
/// </summary>
internal sealed class FrameStack(Frame head, FrameStack? tail)
{
    public Frame Head { get; } = head;
    public FrameStack? Tail { get; } = tail;
    public int Cost { get; } = ArrayNode.Saturate((long)head.Cost + (tail?.Cost ?? 0));

    /// <summary>Feeds one byte to <paramref name="stack"/>; every way it can be read is added to <paramref name="into"/>.</summary>
    public static void Feed(FrameStack? stack, byte b, List<FrameStack?> into)
    {
        while (stack is not null)
        {
            stack.Head.Step(b, stack, into);
            if (!stack.Head.CanEnd) return;
            stack = stack.Tail;   // a number or literal that may end here: the byte may belong to what follows
        }
    }

    /// <summary>True when the parse can stop here (every open frame may end without another byte).</summary>
    public static bool CanFinish(FrameStack? stack)
    {
        for (; stack is not null; stack = stack.Tail)
            if (!stack.Head.CanEnd) return false;
        return true;
    }

    /// <summary>The stack with the top frame replaced (the same instance when the frame did not change).</summary>
    public FrameStack With(Frame frame) => ReferenceEquals(frame, Head) ? this : new FrameStack(frame, Tail);
}

/// <summary>One level of an unfinished JSON parse.</summary>
internal abstract class Frame
{
    // Whitespace runs between tokens (see ExtendWhitespace): none yet, one space, or a line break and its indentation.
    public const int NoRun = 0, SpaceRun = 1, LineRun = 2, MaxIndent = 20;

    /// <summary>A run that takes no more whitespace (an array's first item, after the whitespace the array took).</summary>
    public const int ClosedRun = int.MaxValue;

    /// <summary>
    /// The whitespace a run between JSON tokens may hold, as llama.cpp's JSON grammars allow it: nothing, one space, or
    /// one line break followed by up to 20 spaces or tabs. Compact and pretty-printed JSON both fit, and a model cannot
    /// idle in blank lines until its token budget forces the value shut. The run after <paramref name="b"/>, or null when
    /// <paramref name="b"/> may not extend <paramref name="run"/>.
    /// </summary>
    protected static int? ExtendWhitespace(int run, byte b) => (run, b) switch
    {
        (NoRun, (byte)' ') => SpaceRun,
        (NoRun, (byte)'\n') => LineRun,
        (>= LineRun and < LineRun + MaxIndent, (byte)' ' or (byte)'\t') => run + 1,
        _ => null,
    };

    /// <summary>Fewest bytes to finish this frame (not counting frames above it).</summary>
    public abstract int Cost { get; }

    /// <summary>True when the frame may end before a byte it does not take (numbers, literals that prefix others).</summary>
    public virtual bool CanEnd => false;

    /// <summary>Feeds <paramref name="b"/> to this frame (the head of <paramref name="self"/>); adds the resulting stacks.</summary>
    public abstract void Step(byte b, FrameStack self, List<FrameStack?> into);

    /// <summary>True for frames inside a string where plain text (no quote, backslash, control or partial UTF-8) keeps the state.</summary>
    public virtual bool IsPlainStringContent => false;

    protected static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\t' or (byte)'\r';
}

/// <summary>A value of <see cref="Node"/> not yet begun (whitespace may come first).</summary>
internal sealed class ValueFrame(GrammarNode node, int whitespace) : Frame
{
    public GrammarNode Node { get; } = node;

    public override int Cost => Node.MinLength;

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        if (IsWhitespace(b))
        {
            if (ExtendWhitespace(whitespace, b) is { } run) into.Add(self.With(new ValueFrame(Node, run)));
            return;
        }
        Node.Start(b, self.Tail, into);
    }
}

/// <summary>Inside a JSON string: plain bytes, an escape, a \u escape's hex digits, or a UTF-8 character's continuation bytes.</summary>
internal sealed class StringFrame : Frame
{
    private enum Phase { Normal, Escape, Hex, Utf8 }

    private readonly Phase phase;
    private readonly int left;          // hex digits or continuation bytes still due
    private readonly byte low, high;    // the range the next continuation byte must fall in (well-formed UTF-8 only)

    private StringFrame(Phase phase, int left, byte low = 0x80, byte high = 0xBF)
    {
        this.phase = phase;
        this.left = left;
        this.low = low;
        this.high = high;
    }

    public static StringFrame Normal { get; } = new(Phase.Normal, 0);

    /// <summary>Marks a \u escape whose first hex digit was D (<see cref="low"/> is otherwise unused in hex digits).</summary>
    private const byte SurrogateLead = 0xD;
    private static readonly StringFrame AfterHexD = new(Phase.Hex, 3, SurrogateLead);
    private static readonly StringFrame EscapeFrame = new(Phase.Escape, 0);

    public override int Cost => phase switch { Phase.Normal => 1, Phase.Escape => 2, _ => left + 1 };

    public override bool IsPlainStringContent => phase == Phase.Normal;

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        switch (phase)
        {
            case Phase.Normal:
                if (b == '"') into.Add(self.Tail);
                else if (b == '\\') into.Add(self.With(EscapeFrame));
                else if (b < 0x20) { }
                else if (b < 0x80) into.Add(self);
                else if (Utf8Lead(b) is { } continuation) into.Add(self.With(continuation));
                break;
            case Phase.Escape:
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                    into.Add(self.With(Normal));
                else if (b == 'u') into.Add(self.With(new StringFrame(Phase.Hex, 4)));
                break;
            case Phase.Hex:
                // No surrogate escapes (\uD800-\uDFFF): a lone one is not a valid string for strict readers. \uD000-\uD7FF
                // are ordinary characters (Hangul among them): after a leading D, only the second digit 8-F is refused.
                if (!Uri.IsHexDigit((char)b) || (left == 3 && low == SurrogateLead && b is >= (byte)'8' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F')) break;
                into.Add(self.With(left == 1 ? Normal
                    : left == 4 && b is (byte)'d' or (byte)'D' ? AfterHexD : new StringFrame(Phase.Hex, left - 1)));
                break;
            case Phase.Utf8:
                if (b >= low && b <= high) into.Add(self.With(left == 1 ? Normal : new StringFrame(Phase.Utf8, left - 1)));
                break;
        }
    }

    /// <summary>
    /// The state after a UTF-8 lead byte, with the range its first continuation byte must take (Unicode's table of
    /// well-formed sequences: no overlong forms, no surrogates, nothing above U+10FFFF), or null for a byte that cannot lead.
    /// A byte-fallback decoder turns an ill-formed run into U+FFFD, swallowing any quote written as a byte token in it.
    /// </summary>
    private static StringFrame? Utf8Lead(byte b) => b switch
    {
        >= 0xC2 and <= 0xDF => new(Phase.Utf8, 1),
        0xE0 => new(Phase.Utf8, 2, 0xA0, 0xBF),
        0xED => new(Phase.Utf8, 2, 0x80, 0x9F),
        >= 0xE1 and <= 0xEF => new(Phase.Utf8, 2),
        0xF0 => new(Phase.Utf8, 3, 0x90, 0xBF),
        >= 0xF1 and <= 0xF3 => new(Phase.Utf8, 3),
        0xF4 => new(Phase.Utf8, 3, 0x80, 0x8F),
        _ => null,
    };
}

/// <summary>A JSON number being written: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? with bounded digit runs.</summary>
internal sealed class NumberFrame(NumberFrame.Phase phase, bool integerOnly, int digits) : Frame
{
    public enum Phase { Minus, Zero, Int, Dot, Frac, Exp, ExpSign, ExpDigits }

    private const int MaxDigits = 15, MaxExponentDigits = 2;

    public override int Cost => CanEnd ? 0 : 1;

    public override bool CanEnd => phase is Phase.Zero or Phase.Int or Phase.Frac or Phase.ExpDigits;

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        var digit = b is >= (byte)'0' and <= (byte)'9';
        NumberFrame? next = phase switch
        {
            Phase.Minus when b == '0' => new(Phase.Zero, integerOnly, 0),
            Phase.Minus when digit => new(Phase.Int, integerOnly, 1),
            Phase.Int when digit && digits < MaxDigits => new(Phase.Int, integerOnly, digits + 1),
            Phase.Zero or Phase.Int when b == '.' && !integerOnly => new(Phase.Dot, integerOnly, 0),
            Phase.Zero or Phase.Int or Phase.Frac when b is (byte)'e' or (byte)'E' && !integerOnly => new(Phase.Exp, integerOnly, 0),
            Phase.Dot when digit => new(Phase.Frac, integerOnly, 1),
            Phase.Frac when digit && digits < MaxDigits => new(Phase.Frac, integerOnly, digits + 1),
            Phase.Exp when b is (byte)'+' or (byte)'-' => new(Phase.ExpSign, integerOnly, 0),
            Phase.Exp or Phase.ExpSign when digit => new(Phase.ExpDigits, integerOnly, 1),
            Phase.ExpDigits when digit && digits < MaxExponentDigits => new(Phase.ExpDigits, integerOnly, digits + 1),
            _ => null,
        };
        if (next is not null) into.Add(self.With(next));
    }
}

/// <summary>
/// Part way through one of several fixed byte strings; <see cref="CanEnd"/> when one of them is complete and a longer
/// one could still follow. Special tokens may write these bytes only when <see cref="AllowsSpecialTokens"/> (tool-call markers).
/// </summary>
internal sealed class LiteralFrame(byte[][] options, int position, bool canEnd, bool allowSpecialTokens) : Frame
{
    public bool AllowsSpecialTokens { get; } = allowSpecialTokens;

    public override int Cost => canEnd ? 0 : options.Min(o => o.Length - position);

    public override bool CanEnd => canEnd;

    public override void Step(byte b, FrameStack self, List<FrameStack?> into) => Continue(options, position, AllowsSpecialTokens, b, self.Tail, into);

    /// <summary>Feeds <paramref name="b"/> at <paramref name="position"/> of <paramref name="options"/>.</summary>
    public static void Continue(byte[][] options, int position, bool allowSpecialTokens, byte b, FrameStack? rest, List<FrameStack?> into)
    {
        List<byte[]>? longer = null;
        var ended = false;
        foreach (var option in options)
        {
            if (option.Length <= position || option[position] != b) continue;
            if (option.Length == position + 1) ended = true;
            else (longer ??= []).Add(option);
        }
        if (longer is not null) into.Add(new FrameStack(new LiteralFrame(longer.ToArray(), position + 1, ended, allowSpecialTokens), rest));
        else if (ended) into.Add(rest);
    }
}

/// <summary>An array being written; elements are pushed above it as <see cref="ValueFrame"/>s.</summary>
internal sealed class ArrayFrame(ArrayNode node, ArrayFrame.Phase phase, int count, int whitespace) : Frame
{
    public enum Phase { Open, AfterValue }

    public override int Cost => phase == Phase.Open ? node.CostAfterOpen() : node.CostAfterValue(count);

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        if (IsWhitespace(b))
        {
            if (ExtendWhitespace(whitespace, b) is { } run) into.Add(self.With(new ArrayFrame(node, phase, count, run)));
            return;
        }
        if (b == ']')
        {
            if (count >= node.MinItems) into.Add(self.Tail);
            return;
        }
        if (phase == Phase.Open)
        {
            if (node.MaxItems == 0) return;
            var withItem = new FrameStack(new ValueFrame(node.Items, ClosedRun), self.With(new ArrayFrame(node, Phase.AfterValue, 1, 0)));
            FrameStack.Feed(withItem, b, into);
        }
        else if (b == ',' && (node.MaxItems is null || count < node.MaxItems))
        {
            into.Add(new FrameStack(new ValueFrame(node.Items, 0), self.With(new ArrayFrame(node, Phase.AfterValue, count + 1, 0))));
        }
    }
}

/// <summary>An object of an <see cref="ObjectNode"/> being written, its keys matched against the properties that may come next.</summary>
internal sealed class ObjectFrame(ObjectNode node, ObjectFrame.Phase phase, int next, int whitespace, int[] keys, int keyPosition) : Frame
{
    /// <summary>Open: after '{'. Key: inside a key (keys = properties still matching). Colon: after a key (keys[0] is it). AfterValue; Comma: after ','.</summary>
    public enum Phase { Open, Key, Colon, AfterValue, Comma }

    public override int Cost => phase switch
    {
        Phase.Open => node.RequiredRemain(next) ? node.CostFromKeyStart(next) : 1,
        Phase.Key => keys.Min(j => node.CostThroughProperty(j, node.KeyBytes[j].Length - keyPosition)),
        Phase.Colon => node.CostThroughProperty(keys[0], 0),
        Phase.AfterValue => ArrayNode.Saturate((long)node.RequiredTail(next) + 1),
        _ => node.CostFromKeyStart(next),
    };

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        if (phase != Phase.Key && IsWhitespace(b))
        {
            if (ExtendWhitespace(whitespace, b) is { } run) into.Add(self.With(new ObjectFrame(node, phase, next, run, keys, keyPosition)));
            return;
        }
        switch (phase)
        {
            case Phase.Open or Phase.Comma when b == '"':
                var candidates = node.Candidates(next).ToArray();
                if (candidates.Length > 0) into.Add(self.With(new ObjectFrame(node, Phase.Key, next, 0, candidates, 0)));
                break;
            case Phase.Open or Phase.AfterValue when b == '}':
                if (!node.RequiredRemain(next)) into.Add(self.Tail);
                break;
            case Phase.AfterValue when b == ',':
                if (node.Candidates(next).Any()) into.Add(self.With(new ObjectFrame(node, Phase.Comma, next, 0, [], 0)));
                break;
            case Phase.Key:
                var matching = keys.Where(j => node.KeyBytes[j].Length > keyPosition && node.KeyBytes[j][keyPosition] == b).ToArray();
                if (matching.Length == 0) break;
                var done = matching.FirstOrDefault(j => node.KeyBytes[j].Length == keyPosition + 1, -1);
                into.Add(self.With(done >= 0
                    ? new ObjectFrame(node, Phase.Colon, done + 1, 0, [done], 0)
                    : new ObjectFrame(node, Phase.Key, next, 0, matching, keyPosition + 1)));
                break;
            case Phase.Colon when b == ':':
                var property = node.Properties[keys[0]];
                into.Add(new FrameStack(new ValueFrame(property.Value, 0), self.With(new ObjectFrame(node, Phase.AfterValue, next, 0, [], 0))));
                break;
        }
    }
}

/// <summary>An object with any keys and values (json_object mode).</summary>
internal sealed class AnyObjectFrame(AnyObjectFrame.Phase phase, int whitespace) : Frame
{
    /// <summary>Open: after '{'. Colon: after a key. AfterValue; Comma: after ','.</summary>
    public enum Phase { Open, Colon, AfterValue, Comma }

    public override int Cost => phase switch { Phase.Open => 1, Phase.Colon => 3, Phase.AfterValue => 1, _ => 5 };

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        if (IsWhitespace(b))
        {
            if (ExtendWhitespace(whitespace, b) is { } run) into.Add(self.With(new AnyObjectFrame(phase, run)));
            return;
        }
        switch (phase)
        {
            case Phase.Open or Phase.Comma when b == '"':
                into.Add(new FrameStack(StringFrame.Normal, self.With(new AnyObjectFrame(Phase.Colon, 0))));
                break;
            case Phase.Open or Phase.AfterValue when b == '}':
                into.Add(self.Tail);
                break;
            case Phase.AfterValue when b == ',':
                into.Add(self.With(new AnyObjectFrame(Phase.Comma, 0)));
                break;
            case Phase.Colon when b == ':':
                into.Add(new FrameStack(new ValueFrame(AnyValueNode.Value, 0), self.With(new AnyObjectFrame(Phase.AfterValue, 0))));
                break;
        }
    }
}
