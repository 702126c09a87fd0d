namespace SharpTune.Generation.Constrained;

/// <summary>
/// A JSON integer from <see cref="Minimum"/> to <see cref="Maximum"/>: a schema's <c>minimum</c>, <c>maximum</c>,
/// <c>exclusiveMinimum</c> or <c>exclusiveMaximum</c> on an integer (zod writes <c>z.number().int()</c> with the safe-integer
/// bounds, which OpenAI's strict mode accepts). Each byte is allowed only while some integer in range still starts with
/// the text so far, so the value written is always in range.
/// </summary>
public sealed class IntegerRangeNode : GrammarNode
{
    public IntegerRangeNode(long minimum, long maximum)
    {
        if (maximum < minimum) throw new ArgumentException($"the range {minimum}..{maximum} holds no integer");
        (Minimum, Maximum) = (minimum, maximum);
    }

    public long Minimum { get; }
    public long Maximum { get; }

    internal bool Contains(Int128 value) => value >= Minimum && value <= Maximum;

    protected override int ComputeMinLength() =>
        Contains(0) ? 1 : Minimum > 0 ? IntegerRangeFrame.Digits(Minimum) : 1 + IntegerRangeFrame.Digits(-(Int128)Maximum);

    internal override void Start(byte b, FrameStack? rest, List<FrameStack?> into)
    {
        var frame = b switch
        {
            (byte)'-' => new IntegerRangeFrame(this, negative: true, magnitude: 0, digits: 0),
            >= (byte)'0' and <= (byte)'9' => new IntegerRangeFrame(this, negative: false, magnitude: b - '0', digits: 1),
            _ => null,
        };
        if (frame is { Reachable: true }) into.Add(new FrameStack(frame, rest));
    }
}

/// <summary>Part way through an <see cref="IntegerRangeNode"/>'s integer: its sign and the digits so far.</summary>
internal sealed class IntegerRangeFrame : Frame
{
    /// <summary>Digits of a long's magnitude: no integer in a long range is longer.</summary>
    private const int MaxDigits = 19;

    private readonly IntegerRangeNode node;
    private readonly bool negative;
    private readonly Int128 magnitude;
    private readonly int digits;

    public IntegerRangeFrame(IntegerRangeNode node, bool negative, Int128 magnitude, int digits)
    {
        (this.node, this.negative, this.magnitude, this.digits) = (node, negative, magnitude, digits);
        Cost = FewestDigitsToRange();
    }

    /// <summary>Fewest more digits that end in range (0 when the integer may end here).</summary>
    public override int Cost { get; }

    public bool Reachable => Cost < GrammarNode.Unbounded;

    public override bool CanEnd => Cost == 0;

    public override void Step(byte b, FrameStack self, List<FrameStack?> into)
    {
        // JSON has no leading zeros: after a lone 0 (or -0) the integer is over.
        if (b is < (byte)'0' or > (byte)'9' || digits >= MaxDigits || (digits > 0 && magnitude == 0)) return;
        var next = new IntegerRangeFrame(node, negative, magnitude * 10 + (b - '0'), digits + 1);
        if (next.Reachable) into.Add(self.With(next));
    }

    /// <summary>
    /// The fewest digits j that, written after the text so far, can make an integer in range: with j more digits the
    /// magnitude lies in [m·10^j, m·10^j + 10^j − 1] (after a lone '-', in [0, 9] for one digit and [10^(j−1), 10^j − 1]
    /// beyond); that span, signed, must meet the range.
    /// </summary>
    private int FewestDigitsToRange()
    {
        if (digits > 0 && magnitude == 0) return node.Contains(0) ? 0 : GrammarNode.Unbounded;
        for (var more = digits == 0 ? 1 : 0; digits + more <= MaxDigits; more++)
        {
            var scale = Pow10(more);
            var (low, high) = digits == 0
                ? (more == 1 ? 0 : Pow10(more - 1), scale - 1)
                : (magnitude * scale, magnitude * scale + scale - 1);
            var (from, to) = negative ? (-high, -low) : (low, high);
            if (from <= node.Maximum && to >= node.Minimum) return more;
        }
        return GrammarNode.Unbounded;
    }

    private static Int128 Pow10(int n)
    {
        Int128 p = 1;
        for (var i = 0; i < n; i++) p *= 10;
        return p;
    }

    /// <summary>Decimal digits of a non-negative integer (1 for 0).</summary>
    public static int Digits(Int128 value)
    {
        var n = 1;
        for (; value >= 10; value /= 10) n++;
        return n;
    }
}
