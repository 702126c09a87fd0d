namespace SharpTune.Generation.Constrained;

/// <summary>
/// A JSON-schema <c>pattern</c> (or a string <c>format</c> written as one) compiled into a byte-level automaton, so the
/// constraint can tell after each byte whether the string can still match — which .NET's Regex, matching whole inputs,
/// cannot answer. The subset chat schemas use: literals, <c>.</c>, classes (<c>[a-z0-9_]</c>, <c>[^…]</c>, <c>\d \w \s</c>
/// and their negations), groups with <c>|</c> (<c>(?:…)</c> too), <c>? * +</c> and <c>{n} {n,} {n,m}</c>, and the
/// anchors <c>^ $</c> at the ends of each top-level alternative (an unanchored side may hold any text, as ECMA-262's search semantics have it). The
/// strings written are printable ASCII without <c>"</c> or <c>\</c>, which need no JSON escape; backreferences,
/// lookarounds, <c>\b</c> and Unicode classes are refused (<see cref="TryParse"/> says why).
/// </summary>
internal sealed class StringPattern
{
    private const int MaxStates = 4096;

    private readonly List<List<int>> epsilon = [];
    private readonly List<List<(bool[] Chars, int To)>> edges = [];
    private int accept;
    private int[] distance = [];

    /// <summary>The states before any character (closed under empty moves).</summary>
    public int[] Start { get; private set; } = [];

    private StringPattern() { }

    /// <summary>Compiles <paramref name="regex"/>, or returns null with <paramref name="why"/> when it is outside the subset.</summary>
    public static StringPattern? TryParse(string regex, out string? why)
    {
        try
        {
            var parser = new Parser(regex);
            var node = parser.ParseWhole();
            var pattern = new StringPattern();
            var (start, end) = pattern.Build(node);
            pattern.accept = end;
            pattern.Start = pattern.Closure([start]);
            pattern.distance = pattern.DistancesToAccept();
            why = pattern.Cost(pattern.Start) >= GrammarNode.Unbounded ? "no string of its printable ASCII characters can match it" : null;
            return why is null ? pattern : null;
        }
        catch (FormatException e)
        {
            why = e.Message;
            return null;
        }
    }

    /// <summary>Whether a string may end in <paramref name="states"/>.</summary>
    public bool Accepts(int[] states) => Array.BinarySearch(states, accept) >= 0;

    /// <summary>The states after <paramref name="b"/>; empty when it cannot be written here.</summary>
    public int[] Step(int[] states, byte b)
    {
        if (b >= 128) return [];
        var next = new List<int>();
        foreach (var state in states)
            foreach (var (chars, to) in edges[state])
                if (chars[b]) next.Add(to);
        return next.Count == 0 ? [] : Closure(next);
    }

    /// <summary>Fewest characters from <paramref name="states"/> to a match.</summary>
    public int Cost(int[] states)
    {
        var best = GrammarNode.Unbounded;
        foreach (var s in states) best = Math.Min(best, distance[s]);
        return best;
    }

    private int[] Closure(IEnumerable<int> states)
    {
        var seen = new HashSet<int>();
        var stack = new Stack<int>(states);
        while (stack.Count > 0)
        {
            var s = stack.Pop();
            if (!seen.Add(s)) continue;
            foreach (var t in epsilon[s]) stack.Push(t);
        }
        var result = seen.ToArray();
        Array.Sort(result);
        return result;
    }

    /// <summary>Characters from each state to the accepting one (0–1 breadth-first search backwards: empty moves cost 0).</summary>
    private int[] DistancesToAccept()
    {
        var n = epsilon.Count;
        var reverse = new List<(int From, int Cost)>[n];
        for (var i = 0; i < n; i++) reverse[i] = [];
        for (var s = 0; s < n; s++)
        {
            foreach (var t in epsilon[s]) reverse[t].Add((s, 0));
            foreach (var (_, t) in edges[s]) reverse[t].Add((s, 1));
        }
        var result = Enumerable.Repeat(GrammarNode.Unbounded, n).ToArray();
        var queue = new LinkedList<int>();
        result[accept] = 0;
        queue.AddFirst(accept);
        while (queue.Count > 0)
        {
            var s = queue.First!.Value;
            queue.RemoveFirst();
            foreach (var (from, cost) in reverse[s])
            {
                if (result[s] + cost >= result[from]) continue;
                result[from] = result[s] + cost;
                if (cost == 0) queue.AddFirst(from);
                else queue.AddLast(from);
            }
        }
        return result;
    }

    private int NewState()
    {
        if (epsilon.Count >= MaxStates) throw new FormatException($"it needs more than {MaxStates} automaton states (repeat counts too large)");
        epsilon.Add([]);
        edges.Add([]);
        return epsilon.Count - 1;
    }

    /// <summary>Thompson's construction: a fragment with one entry and one exit state.</summary>
    private (int Start, int End) Build(Node node)
    {
        switch (node)
        {
            case CharsNode c:
            {
                var (s, e) = (NewState(), NewState());
                edges[s].Add((c.Chars, e));
                return (s, e);
            }
            case SequenceNode seq:
            {
                var s = NewState();
                var current = s;
                foreach (var part in seq.Parts)
                {
                    var f = Build(part);
                    epsilon[current].Add(f.Start);
                    current = f.End;
                }
                return (s, current);
            }
            case ChoiceNode choice:
            {
                var (s, e) = (NewState(), NewState());
                foreach (var option in choice.Options)
                {
                    var f = Build(option);
                    epsilon[s].Add(f.Start);
                    epsilon[f.End].Add(e);
                }
                return (s, e);
            }
            case RepeatNode r:
            {
                var s = NewState();
                var current = s;
                for (var i = 0; i < r.Min; i++)
                {
                    var f = Build(r.Item);
                    epsilon[current].Add(f.Start);
                    current = f.End;
                }
                var e = NewState();
                if (r.Max is null)
                {
                    var f = Build(r.Item);
                    epsilon[current].Add(f.Start);
                    epsilon[f.End].Add(current);
                    epsilon[current].Add(e);
                    return (s, e);
                }
                for (var i = r.Min; i < r.Max; i++)
                {
                    epsilon[current].Add(e);   // stop after i repeats
                    var f = Build(r.Item);
                    epsilon[current].Add(f.Start);
                    current = f.End;
                }
                epsilon[current].Add(e);
                return (s, e);
            }
            default: throw new InvalidOperationException();
        }
    }

    private abstract record Node;
    private sealed record CharsNode(bool[] Chars) : Node;
    private sealed record SequenceNode(List<Node> Parts) : Node;
    private sealed record ChoiceNode(List<Node> Options) : Node;
    private sealed record RepeatNode(Node Item, int Min, int? Max) : Node;

    /// <summary>Recursive descent over the pattern's characters; throws <see cref="FormatException"/> outside the subset.</summary>
    private sealed class Parser(string source)
    {
        private int position;

        /// <summary>Printable ASCII that a JSON string holds without an escape.</summary>
        private static bool Writable(int c) => c is >= 0x20 and < 0x7F && c != '"' && c != '\\';

        private static bool[] Set(Func<int, bool> member)
        {
            var chars = new bool[128];
            for (var c = 0; c < 128; c++) chars[c] = Writable(c) && member(c);
            return chars;
        }

        private static readonly bool[] Any = Set(_ => true);

        /// <summary>
        /// The whole pattern as a search: each top-level alternative carries its own anchors, as regex engines read them
        /// (<c>^a|b$</c> is "starts with a" or "ends with b", not <c>^(a|b)$</c>).
        /// </summary>
        public Node ParseWhole()
        {
            var alternatives = new List<Node> { ParseAnchoredAlternative() };
            while (position < source.Length && source[position] == '|')
            {
                position++;
                alternatives.Add(ParseAnchoredAlternative());
            }
            if (position < source.Length) throw new FormatException($"'{source[position]}' at {position} is not supported here");
            return alternatives.Count == 1 ? alternatives[0] : new ChoiceNode(alternatives);
        }

        private Node ParseAnchoredAlternative()
        {
            var anchoredStart = position < source.Length && source[position] == '^';
            if (anchoredStart) position++;
            var body = ParseSequence(topLevel: true);
            var anchoredEnd = position < source.Length && source[position] == '$';
            if (anchoredEnd) position++;
            var anyText = new RepeatNode(new CharsNode(Any), 0, null);
            var parts = new List<Node>();
            if (!anchoredStart) parts.Add(anyText);
            parts.Add(body);
            if (!anchoredEnd) parts.Add(anyText);
            return new SequenceNode(parts);
        }

        private Node ParseChoice()
        {
            var options = new List<Node> { ParseSequence() };
            while (position < source.Length && source[position] == '|')
            {
                position++;
                options.Add(ParseSequence());
            }
            return options.Count == 1 ? options[0] : new ChoiceNode(options);
        }

        private Node ParseSequence(bool topLevel = false)
        {
            var parts = new List<Node>();
            while (position < source.Length && source[position] is not ('|' or ')'))
            {
                // A top-level alternative may end with '$' (before the next '|' or the pattern's end).
                if (topLevel && source[position] == '$' && (position == source.Length - 1 || source[position + 1] == '|')) break;
                parts.Add(ParseQuantified(ParseAtom()));
            }
            return new SequenceNode(parts);
        }

        private Node ParseQuantified(Node atom)
        {
            if (position >= source.Length) return atom;
            var c = source[position];
            if (c is '?' or '*' or '+')
            {
                position++;
                atom = c switch { '?' => new RepeatNode(atom, 0, 1), '*' => new RepeatNode(atom, 0, null), _ => new RepeatNode(atom, 1, null) };
            }
            else if (c == '{' && TryCount(out var min, out var max)) atom = new RepeatNode(atom, min, max);
            else return atom;
            if (position < source.Length && source[position] == '?') position++;   // lazy: the same strings
            // A second quantifier ("a{1}{2}", "a**", Python's possessive "a*+") is an error in ECMA-262 and in Python's re
            // before 3.11, and possessive in 3.11 (matching fewer strings): refused rather than read as nested repeats.
            if (position < source.Length && (source[position] is '*' or '+' or '?' || source[position] == '{' && IsCount(position)))
                throw new FormatException($"'{source[position]}' at {position} repeats a repeat");
            return atom;
        }

        /// <summary>True when a '{' at <paramref name="at"/> opens a repeat count: {n}, {n,} or {n,m} with ASCII digits only.</summary>
        private bool IsCount(int at)
        {
            var close = source.IndexOf('}', at);
            if (close < 0) return false;
            var inside = source[(at + 1)..close].Split(',');
            return inside.Length <= 2 && inside[0].Length > 0 && inside[0].All(char.IsAsciiDigit) &&
                (inside.Length == 1 || inside[1].All(char.IsAsciiDigit));
        }

        private bool TryCount(out int min, out int? max)
        {
            (min, max) = (0, null);
            // Only {n}, {n,} and {n,m} written with bare digits repeat; anything else ("{ 2}", "{,2}", "{+}") is literal
            // text to Python's re and an error to ECMA-262's unicode mode: the caller refuses it.
            if (!IsCount(position)) return false;
            var close = source.IndexOf('}', position);
            var inside = source[(position + 1)..close].Split(',');
            if (!int.TryParse(inside[0], out min)) throw new FormatException($"repeat count at {position} is too large");
            if (inside.Length == 1) max = min;
            else if (inside[1].Length > 0) max = int.TryParse(inside[1], out var m) ? m : throw new FormatException($"repeat count at {position} is too large");
            if (max < min) throw new FormatException($"repeat count {{{min},{max}}} at {position} has its maximum below its minimum");
            position = close + 1;
            return true;
        }

        private Node ParseAtom()
        {
            var c = source[position++];
            switch (c)
            {
                case '(':
                    if (position < source.Length && source[position] == '?')
                    {
                        if (position + 1 < source.Length && source[position + 1] == ':') position += 2;
                        else throw new FormatException($"lookarounds and named groups (at {position - 1}) are not supported");
                    }
                    var inner = ParseChoice();
                    if (position >= source.Length || source[position] != ')') throw new FormatException("a group is not closed");
                    position++;
                    return inner;
                case '[': return new CharsNode(ParseClass());
                case '.': return new CharsNode(Set(ch => ch != '\n' && ch != '\r'));
                case '\\': return new CharsNode(Escape(inClass: false));
                case '^' or '$': throw new FormatException($"'{c}' at {position - 1} is supported only at the pattern's ends");
                case '{': throw new FormatException($"'{{' at {position - 1} is not a repeat count ({{n}}, {{n,}} or {{n,m}}); write \\{{ for the character");
                case '*' or '+' or '?' or ')' or '|': throw new FormatException($"'{c}' at {position - 1} has nothing to repeat or close");
                default:
                    if (c >= 128) throw new FormatException($"'{c}' at {position - 1}: only ASCII characters are supported");
                    return new CharsNode(Set(ch => ch == c));
            }
        }

        private bool[] ParseClass()
        {
            var negated = position < source.Length && source[position] == '^';
            if (negated) position++;
            var members = new bool[128];
            var first = true;
            while (position < source.Length && (source[position] != ']' || first))
            {
                first = false;
                bool[] item;
                int low;
                if (source[position] == '\\')
                {
                    position++;
                    item = Escape(inClass: true);
                    low = SingleOf(item);
                }
                else
                {
                    low = source[position++];
                    if (low >= 128) throw new FormatException("only ASCII characters are supported in a class");
                    item = Set(ch => ch == low);
                }
                if (low >= 0 && position + 1 < source.Length && source[position] == '-' && source[position + 1] != ']')
                {
                    position++;
                    int high = source[position++];
                    if (high == '\\') { high = SingleOf(Escape(inClass: true)); }
                    if (high < low || high >= 128) throw new FormatException($"bad class range at {position}");
                    item = Set(ch => ch >= low && ch <= high);
                }
                for (var ch = 0; ch < 128; ch++) members[ch] |= item[ch];
            }
            if (position >= source.Length) throw new FormatException("a character class is not closed");
            position++;
            return negated ? Set(ch => !members[ch]) : members;
        }

        /// <summary>The one character a set holds, or -1 (a class shorthand such as \d cannot bound a range).</summary>
        private static int SingleOf(bool[] set)
        {
            var found = -1;
            for (var c = 0; c < 128; c++)
                if (set[c]) { if (found >= 0) return -1; found = c; }
            return found;
        }

        private bool[] Escape(bool inClass)
        {
            if (position >= source.Length) throw new FormatException("the pattern ends with a lone backslash");
            var c = source[position++];
            return c switch
            {
                'd' => Set(ch => char.IsAsciiDigit((char)ch)),
                'D' => Set(ch => !char.IsAsciiDigit((char)ch)),
                'w' => Set(ch => char.IsAsciiLetterOrDigit((char)ch) || ch == '_'),
                'W' => Set(ch => !(char.IsAsciiLetterOrDigit((char)ch) || ch == '_')),
                's' => Set(ch => ch == ' '),   // the other whitespace characters need JSON escapes
                'S' => Set(ch => ch != ' '),
                't' or 'n' or 'r' or 'f' or 'v' or '0' => Set(_ => false),   // need JSON escapes: never written
                'b' when inClass => Set(_ => false),
                'b' or 'B' or 'p' or 'P' or 'u' or 'x' or 'c' or 'k' => throw new FormatException($"'\\{c}' is not supported"),
                _ when char.IsAsciiDigit(c) => throw new FormatException("backreferences are not supported"),
                _ when c < 128 && !char.IsAsciiLetter(c) => Set(ch => ch == c),
                _ => throw new FormatException($"'\\{c}' is not supported"),
            };
        }
    }
}

/// <summary>A JSON string matching a <see cref="StringPattern"/> (a schema's <c>pattern</c> or known <c>format</c>).</summary>
public sealed class PatternStringNode : GrammarNode
{
    internal PatternStringNode(StringPattern pattern, string source) => (Pattern, Source) = (pattern, source);

    internal StringPattern Pattern { get; }

    /// <summary>The pattern as the schema gave it (or the format's).</summary>
    public string Source { get; }

    /// <summary>
    /// The patterns that stand for the string formats .NET types are described with (<c>DateTime</c>, <c>DateOnly</c>,
    /// <c>TimeOnly</c>, <c>Guid</c>) and ipv4: RFC 3339 dates and date-times, a time of day without an offset (.NET's
    /// TimeOnly reads no offset, where RFC 3339's full-time has one), and RFC 4122's hex layout. Null for other formats.
    /// </summary>
    public static string? PatternForFormat(string format) => format switch
    {
        "date-time" => $"^{Date}T{Time}(\\.\\d{{1,7}})?{Offset}$",
        "date" => $"^{Date}$",
        "time" => $"^{Time}(\\.\\d{{1,7}})?$",
        "uuid" => "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "ipv4" => "^((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)$",
        _ => null,
    };

    // A real calendar date of years 0001-9999, so DateTime and DateOnly read every one: 30-day months, February's 28
    // days, and February 29 only in leap years (divisible by 4, centuries only when divisible by 400).
    private const string Year = "(000[1-9]|00[1-9]\\d|0[1-9]\\d\\d|[1-9]\\d\\d\\d)";
    private const string LeapYear = "(\\d\\d(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)";
    private const string Date = "(" + Year + "-((0[13578]|1[02])-(0[1-9]|[12]\\d|3[01])|(0[469]|11)-(0[1-9]|[12]\\d|30)|02-(0[1-9]|1\\d|2[0-8]))|" +
        LeapYear + "-02-29)";
    private const string Time = "([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d";
    private const string Offset = "(Z|[+-](0\\d|1[0-3]):[0-5]\\d|[+-]14:00)";   // UTC offsets run from -14:00 to +14:00

    protected override int ComputeMinLength() => Pattern.Cost(Pattern.Start) + 2;

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        if (b == '"') into.Add(new FrameStack(new PatternStringFrame(Pattern, Pattern.Start), rest));
    }
}

/// <summary>Inside a <see cref="PatternStringNode"/>'s string: the automaton's states after the characters so far.</summary>
internal sealed class PatternStringFrame(StringPattern pattern, int[] states) : Frame
{
    public override int Cost { get; } = pattern.Cost(states) + 1;   // the characters still due, then the closing quote

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        if (b == '"')
        {
            if (pattern.Accepts(states)) into.Add(self.Tail);
            return;
        }
        var next = pattern.Step(states, b);
        if (next.Length > 0 && pattern.Cost(next) < GrammarNode.Unbounded) into.Add(self.With(new PatternStringFrame(pattern, next)));
    }
}
