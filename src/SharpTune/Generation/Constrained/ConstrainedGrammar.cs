using System.Text;

namespace SharpTune.Generation.Constrained;

/// <summary>
/// What a constrained output must be: a JSON value of <see cref="Root"/>, optionally between fixed texts (a tool-call
/// format's markers, e.g. "&lt;tool_call&gt;\n" … "\n&lt;/tool_call&gt;"), which special tokens may write. Immutable and
/// shareable; <see cref="CreateConstraint"/> makes the per-sequence state.
/// </summary>
public sealed class ConstrainedGrammar(GrammarNode root, string prefix = "", string suffix = "")
{
    public GrammarNode Root { get; } = root;
    public string Prefix { get; } = prefix;
    public string Suffix { get; } = suffix;

    /// <summary>Any JSON object (OpenAI's <c>response_format: json_object</c>).</summary>
    public static ConstrainedGrammar JsonObject { get; } = new(AnyValueNode.Object);

    /// <summary>A JSON value that validates against <paramref name="schema"/>.</summary>
    /// <exception cref="JsonSchemaException">The schema cannot be compiled.</exception>
    public static ConstrainedGrammar FromSchema(System.Text.Json.Nodes.JsonNode? schema, bool strict = true) => new(JsonSchemaCompiler.Compile(schema, strict));

    /// <summary>A fresh constraint for one sequence, over <paramref name="vocabulary"/>, ended by any of <paramref name="endTokenIds"/>.</summary>
    public ITokenConstraint CreateConstraint(TokenVocabulary vocabulary, IEnumerable<int> endTokenIds) =>
        new GrammarConstraint(vocabulary, endTokenIds, InitialStack());

    internal FrameStack InitialStack()
    {
        FrameStack? stack = Suffix.Length > 0 ? new FrameStack(Literal(Suffix), null) : null;
        stack = new FrameStack(new ValueFrame(Root, 0), stack);
        return Prefix.Length > 0 ? new FrameStack(Literal(Prefix), stack) : stack;
    }

    private static LiteralFrame Literal(string text) => new([Encoding.UTF8.GetBytes(text)], 0, false, allowSpecialTokens: true);
}

/// <summary>
/// The state of one constrained sequence: every way its bytes so far can be parsed (usually one). The allowed set is a
/// walk of the token trie that advances the parse byte by byte and drops a whole subtree as soon as a byte is rejected;
/// inside a string, the precomputed plain-text tokens are allowed wholesale and only the others are walked. A token is
/// allowed only if the output can still be completed within the tokens left (one byte per token in the worst case),
/// so even a model that writes at random ends with output that parses and validates (when max_tokens leaves room for
/// the shortest such output at all).
/// </summary>
internal sealed class GrammarConstraint : ITokenConstraint
{
    private const int MaxStates = 64;

    private readonly TokenVocabulary vocabulary;
    private readonly int[] endTokens;
    private List<FrameStack?> states;

    public GrammarConstraint(TokenVocabulary vocabulary, IEnumerable<int> endTokenIds, FrameStack initial)
    {
        this.vocabulary = vocabulary;
        endTokens = endTokenIds.Where(id => id >= 0 && id < vocabulary.Width).Distinct().ToArray();
        states = [initial];
    }

    public bool IsComplete => states.Any(FrameStack.CanFinish);

    public void FillAllowed(Span<bool> allowed, int remainingTokens)
    {
        // Within the budget the output is sure to end valid. When even the worst case (one byte per token) cannot fit —
        // a forced tool call asked for with a max_tokens below the call's length in bytes — write what the grammar
        // allows anyway: multi-byte tokens may still finish it, and otherwise max_tokens cuts it ("length"), as OpenAI
        // cuts a structured output. Ending at once instead gave an empty reply that claimed a normal stop.
        if (!FillWithin(allowed, remainingTokens - 1) && !FillWithin(allowed, GrammarNode.Unbounded - 1))
            foreach (var id in endTokens) allowed[id] = true;   // no way forward at all: end rather than write something invalid
    }

    private bool FillWithin(Span<bool> allowed, int budget)
    {
        allowed.Clear();
        var any = false;
        if (IsComplete)
            foreach (var id in endTokens) allowed[id] = any = true;
        var live = states.Where(s => s is not null).ToList();
        if (live.Count == 0) return any;
        if (live.Count == 1 && live[0]!.Head.IsPlainStringContent)
        {
            if (live[0]!.Cost <= budget)
                foreach (var id in vocabulary.PlainStringTokens) allowed[id] = any = true;
            any |= Walk(vocabulary.NonPlain, TokenTrie.Root, live, budget, allowed);
        }
        else
        {
            any |= Walk(vocabulary.All, TokenTrie.Root, live, budget, allowed);
        }
        if (live.Any(s => s!.Head is LiteralFrame { AllowsSpecialTokens: true }))
            foreach (var id in vocabulary.SpecialTokens)
                if (Advance(live, vocabulary.Bytes[id]) is { Count: > 0 } after && MinCost(after) <= budget)
                    allowed[id] = any = true;
        return any;
    }

    public void Accept(int token)
    {
        if (endTokens.Contains(token))
        {
            states = [null];
            return;
        }
        var bytes = token >= 0 && token < vocabulary.Width ? vocabulary.Bytes[token] : [];
        var next = bytes.Length == 0 ? [] : Advance(states, bytes);
        if (next.Count == 0)
            throw new InvalidOperationException($"token {token} is not allowed by the output's grammar here");
        states = next;
    }

    private static bool Walk(TokenTrie trie, int node, List<FrameStack?> current, int budget, Span<bool> allowed)
    {
        var any = false;
        for (var child = trie.FirstChild(node); child >= 0; child = trie.NextSibling(child))
        {
            var next = Step(current, trie.Label(child));
            if (next.Count == 0) continue;
            var ending = trie.TokensAt(child);
            if (ending.Length > 0 && MinCost(next) <= budget)
            {
                foreach (var id in ending) allowed[id] = true;
                any = true;
            }
            any |= Walk(trie, child, next, budget, allowed);
        }
        return any;
    }

    private static List<FrameStack?> Advance(List<FrameStack?> current, byte[] bytes)
    {
        foreach (var b in bytes)
        {
            current = Step(current, b);
            if (current.Count == 0) break;
        }
        return current;
    }

    private static List<FrameStack?> Step(List<FrameStack?> current, byte b)
    {
        var next = new List<FrameStack?>(current.Count);
        foreach (var stack in current)
        {
            FrameStack.Feed(stack, b, next);
            if (next.Count >= MaxStates) break;
        }
        return next;
    }

    private static int MinCost(List<FrameStack?> states)
    {
        var min = int.MaxValue;
        foreach (var s in states) min = Math.Min(min, s?.Cost ?? 0);
        return min;
    }
}
