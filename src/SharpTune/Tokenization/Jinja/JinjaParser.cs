namespace SharpTune.Tokenization.Jinja;

/// <summary>Recursive-descent parser for the Jinja subset chat templates use, with Jinja's operator precedence.</summary>
internal sealed class JinjaParser
{
    private readonly List<TemplateSegment> _segments;
    private int _segment;

    private List<ExprToken> _tokens = [];
    private int _pos;
    private int _line;

    private JinjaParser(List<TemplateSegment> segments) => _segments = segments;

    public static List<Node> Parse(string template)
    {
        var parser = new JinjaParser(JinjaLexer.Segment(template));
        var body = parser.ParseBody(out var stop);
        if (stop is not null) throw new JinjaException($"line {parser._line}: unexpected '{{% {stop} %}}'");
        return body;
    }

    /// <summary>Parses nodes until a statement whose keyword ends the enclosing block; returns that keyword.</summary>
    private List<Node> ParseBody(out string? stoppedAt, params string[] stops)
    {
        var nodes = new List<Node>();
        stoppedAt = null;
        while (_segment < _segments.Count)
        {
            var seg = _segments[_segment++];
            _line = seg.Line;
            switch (seg.Kind)
            {
                case SegmentKind.Text: nodes.Add(new TextNode(seg.Content)); break;
                case SegmentKind.Output:
                    Begin(seg);
                    nodes.Add(new OutputNode(ParseExpression(), seg.Line));
                    ExpectEnd();
                    break;
                default:
                    Begin(seg);
                    var keyword = ExpectName();
                    if (stops.Contains(keyword)) { stoppedAt = keyword; return nodes; }
                    if (ParseStatement(keyword, seg.Line) is { } node) nodes.Add(node);
                    break;
            }
        }
        if (stops.Length > 0) throw new JinjaException($"template ends before '{{% {stops[^1]} %}}'");
        return nodes;
    }

    private Node? ParseStatement(string keyword, int line)
    {
        switch (keyword)
        {
            case "if": return ParseIf(line);
            case "for": return ParseFor(line);
            case "set":
            {
                var name = ExpectName();
                string? attribute = null;
                if (TryOp(".")) attribute = ExpectName();
                if (attribute is null && Peek.Kind == TokenKind.End)
                {
                    var body = ParseBody(out _, "endset");
                    ExpectEnd();
                    return new SetBlockNode(name, body, line);
                }
                if (!TryOp("=")) throw Error("expected '=' or the end of '{% set name %}'");
                var value = ParseExpression();
                ExpectEnd();
                return new SetNode(name, attribute, value, line);
            }
            case "macro": return ParseMacro(line);
            case "call": return ParseCallBlock(line);
            case "break": ExpectEnd(); return new BreakNode(line);
            case "continue": ExpectEnd(); return new ContinueNode(line);
            case "generation" or "endgeneration": ExpectEnd(); return null; // transformers' assistant-mask markers
            default: throw Error($"unsupported statement '{{% {keyword} %}}'");
        }
    }

    private Node ParseIf(int line)
    {
        var branches = new List<(Expr, List<Node>)>();
        var condition = ParseExpression();
        ExpectEnd();
        while (true)
        {
            var body = ParseBody(out var stop, "elif", "else", "endif");
            branches.Add((condition, body));
            if (stop == "elif") { condition = ParseExpression(); ExpectEnd(); continue; }
            if (stop == "else")
            {
                ExpectEnd();
                var elseBody = ParseBody(out _, "endif");
                ExpectEnd();
                return new IfNode(branches, elseBody, line);
            }
            ExpectEnd();
            return new IfNode(branches, null, line);
        }
    }

    private Node ParseMacro(int line)
    {
        var name = ExpectName();
        if (!TryOp("(")) throw Error("expected '(' after the macro's name");
        var parameters = ParseParameters("the macro's");
        ExpectEnd();
        var body = ParseBody(out _, "endmacro");
        if (Peek.Kind == TokenKind.Name && Peek.Text == name) Next();   // {% endmacro name %}
        ExpectEnd();
        return new MacroNode(name, parameters, body, line);
    }

    /// <summary>Parameters after their '(' up to and including ')': names, each with an optional default.</summary>
    private List<(string, Expr?)> ParseParameters(string owner)
    {
        var parameters = new List<(string, Expr?)>();
        while (!TryOp(")"))
        {
            if (parameters.Count > 0 && !TryOp(",")) throw Error($"expected ',' or ')' in {owner} parameters");
            var parameter = ExpectName();
            parameters.Add((parameter, TryOp("=") ? ParseExpression() : null));
        }
        return parameters;
    }

    private Node ParseCallBlock(int line)
    {
        var callerParameters = TryOp("(") ? ParseParameters("the caller's") : [];
        if (ParseExpression() is not CallExpr call) throw Error("expected a macro call after '{% call %}'");
        ExpectEnd();
        var body = ParseBody(out _, "endcall");
        ExpectEnd();
        return new CallBlockNode(call, callerParameters, body, line);
    }

    private Node ParseFor(int line)
    {
        var targets = new List<string> { ExpectName() };
        while (TryOp(",")) targets.Add(ExpectName());
        if (ExpectName() != "in") throw Error("expected 'in' in for loop");
        var iterable = ParseOr(); // not ParseExpression: a trailing 'if' filters items here
        Expr? filter = null;
        if (TryName("if")) filter = ParseOr();
        if (TryName("recursive")) throw Error("recursive loops are not supported");
        ExpectEnd();
        var body = ParseBody(out var stop, "else", "endfor");
        List<Node>? elseBody = null;
        if (stop == "else") { ExpectEnd(); elseBody = ParseBody(out _, "endfor"); }
        ExpectEnd();
        return new ForNode(targets, iterable, filter, body, elseBody, line);
    }

    // ---- expressions ----

    private void Begin(TemplateSegment seg)
    {
        _tokens = JinjaLexer.Tokenize(seg.Content, seg.Line);
        _pos = 0;
    }

    private Expr ParseExpression()
    {
        var value = ParseOr();
        if (!TryName("if")) return value;
        var condition = ParseOr();
        Expr? otherwise = TryName("else") ? ParseExpression() : null;
        return new ConditionalExpr(condition, value, otherwise);
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (TryName("or")) left = new BinaryExpr("or", left, ParseAnd());
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (TryName("and")) left = new BinaryExpr("and", left, ParseNot());
        return left;
    }

    private Expr ParseNot() => TryName("not") ? new UnaryExpr("not", ParseNot()) : ParseCompare();

    /// <summary>
    /// Comparisons chain as in Python and Jinja: <c>a &lt; b &lt; c</c> is <c>a &lt; b and b &lt; c</c> (b evaluated for
    /// each side; template expressions have no side effects that would tell).
    /// </summary>
    private Expr ParseCompare()
    {
        var left = ParseAdditive();
        Expr? chain = null;
        while (true)
        {
            Func<Expr, Expr, Expr> compare;
            if (Peek.Kind == TokenKind.Operator && Peek.Text is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                var op = Next().Text;
                compare = (a, b) => new BinaryExpr(op, a, b);
            }
            else if (TryName("in")) compare = (a, b) => new BinaryExpr("in", a, b);
            else if (Peek.Kind == TokenKind.Name && Peek.Text == "not" && PeekAt(1).Text == "in")
            {
                _pos += 2;
                compare = (a, b) => new UnaryExpr("not", new BinaryExpr("in", a, b));
            }
            else return chain ?? left;
            var right = ParseAdditive();
            var link = compare(left, right);
            chain = chain is null ? link : new BinaryExpr("and", chain, link);
            left = right;
        }
    }

    private Expr ParseAdditive()
    {
        var left = ParseConcat();
        while (Peek.Kind == TokenKind.Operator && Peek.Text is "+" or "-")
            left = new BinaryExpr(Next().Text, left, ParseConcat());
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMultiplicative();
        while (TryOp("~")) left = new BinaryExpr("~", left, ParseMultiplicative());
        return left;
    }

    private Expr ParseMultiplicative()
    {
        var left = ParsePower();
        while (Peek.Kind == TokenKind.Operator && Peek.Text is "*" or "/" or "//" or "%")
            left = new BinaryExpr(Next().Text, left, ParsePower());
        return left;
    }

    /// <summary>Jinja's <c>**</c>: tighter than * and /, looser than unary minus (so -2 ** 2 is 4, as Jinja has it).</summary>
    private Expr ParsePower()
    {
        var left = ParseUnary();
        while (TryOp("**")) left = new BinaryExpr("**", left, ParseUnary());
        return left;
    }

    private Expr ParseUnary()
    {
        if (TryOp("-")) return new UnaryExpr("-", ParseUnary());
        if (TryOp("+")) return ParseUnary();
        return ParsePostfix(ParsePrimary());
    }

    private Expr ParsePrimary()
    {
        var token = Next();
        switch (token.Kind)
        {
            case TokenKind.String:
                var text = (string)token.Value!;
                while (Peek.Kind == TokenKind.String) text += (string)Next().Value!; // adjacent literals concatenate
                return new LiteralExpr(text);
            case TokenKind.Number: return new LiteralExpr(token.Value);
            case TokenKind.Name:
                return token.Text switch
                {
                    "true" or "True" => new LiteralExpr(true),
                    "false" or "False" => new LiteralExpr(false),
                    "none" or "None" => new LiteralExpr(null),
                    _ => new NameExpr(token.Text),
                };
            case TokenKind.Operator when token.Text == "(":
            {
                var inner = ParseExpression();
                if (TryOp(","))
                {
                    var items = new List<Expr> { inner };
                    while (!TryOp(")")) { items.Add(ParseExpression()); if (!TryOp(",")) { ExpectOp(")"); break; } }
                    return new ListExpr(items);
                }
                ExpectOp(")");
                return inner;
            }
            case TokenKind.Operator when token.Text == "[":
            {
                var items = new List<Expr>();
                while (!TryOp("]")) { items.Add(ParseExpression()); if (!TryOp(",")) { ExpectOp("]"); break; } }
                return new ListExpr(items);
            }
            case TokenKind.Operator when token.Text == "{":
            {
                var items = new List<(Expr, Expr)>();
                while (!TryOp("}"))
                {
                    var key = ParseExpression();
                    ExpectOp(":");
                    items.Add((key, ParseExpression()));
                    if (!TryOp(",")) { ExpectOp("}"); break; }
                }
                return new DictExpr(items);
            }
            default: throw Error($"unexpected '{token.Text}'");
        }
    }

    private Expr ParsePostfix(Expr target)
    {
        while (true)
        {
            if (TryOp("."))   // x.0 is x[0], as Jinja reads a number after the dot
                target = Peek.Kind == TokenKind.Number && Peek.Value is long ? new ItemExpr(target, new LiteralExpr(Next().Value)) : new AttributeExpr(target, ExpectName());
            else if (TryOp("[")) target = ParseSubscript(target);
            else if (TryOp("("))
            {
                var (args, kwargs) = ParseArguments();
                target = new CallExpr(target, args, kwargs);
            }
            else if (TryOp("|"))
            {
                var name = ExpectName();
                var (args, kwargs) = TryOp("(") ? ParseArguments() : ([], []);
                target = new FilterExpr(target, name, args, kwargs);
            }
            else if (TryName("is"))
            {
                bool negated = TryName("not");
                var name = ExpectName();
                var args = new List<Expr>();
                if (TryOp("(")) args = ParseArguments().Args;
                else if (Peek.Kind is TokenKind.String or TokenKind.Number) args.Add(ParsePrimary());
                target = new TestExpr(target, name, args, negated);
            }
            else return target;
        }
    }

    private Expr ParseSubscript(Expr target)
    {
        Expr? start = Peek.Text == ":" ? null : ParseExpression();
        if (TryOp("]")) return new ItemExpr(target, start!);
        ExpectOp(":");
        Expr? stop = Peek.Text is ":" or "]" ? null : ParseExpression();
        Expr? step = null;
        if (TryOp(":") && Peek.Text != "]") step = ParseExpression();
        ExpectOp("]");
        return new SliceExpr(target, start, stop, step);
    }

    private (List<Expr> Args, List<(string, Expr)> Kwargs) ParseArguments()
    {
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!TryOp(")"))
        {
            if (Peek.Kind == TokenKind.Name && PeekAt(1).Text == "=" )
            {
                var name = Next().Text;
                _pos++;
                kwargs.Add((name, ParseExpression()));
            }
            else if (TryOp("**")) args.Add(new SplatExpr(ParseExpression(), Keywords: true));
            else if (TryOp("*")) args.Add(new SplatExpr(ParseExpression(), Keywords: false));
            else args.Add(ParseExpression());
            if (!TryOp(",")) { ExpectOp(")"); break; }
        }
        return (args, kwargs);
    }

    // ---- token helpers ----

    private ExprToken Peek => _tokens[_pos];
    private ExprToken PeekAt(int ahead) => _tokens[Math.Min(_pos + ahead, _tokens.Count - 1)];
    private ExprToken Next() => _tokens[_pos < _tokens.Count - 1 ? _pos++ : _pos];

    private bool TryOp(string op)
    {
        if (Peek.Kind != TokenKind.Operator || Peek.Text != op) return false;
        _pos++;
        return true;
    }

    private bool TryName(string name)
    {
        if (Peek.Kind != TokenKind.Name || Peek.Text != name) return false;
        _pos++;
        return true;
    }

    private void ExpectOp(string op)
    {
        if (!TryOp(op)) throw Error($"expected '{op}' but found '{Peek.Text}'");
    }

    private string ExpectName() =>
        Peek.Kind == TokenKind.Name ? Next().Text : throw Error($"expected a name but found '{Peek.Text}'");

    private void ExpectEnd()
    {
        if (Peek.Kind != TokenKind.End) throw Error($"unexpected '{Peek.Text}'");
    }

    private JinjaException Error(string message) => new($"line {_line}: {message}");
}
