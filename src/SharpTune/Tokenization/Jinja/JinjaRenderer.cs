using System.Text;

namespace SharpTune.Tokenization.Jinja;

/// <summary>Renders parsed template nodes: Jinja scoping (a for loop's body has its own scope, so templates use
/// namespace() to carry values out), loop variables, break/continue.</summary>
internal sealed class JinjaRenderer
{
    private readonly List<Dictionary<string, object?>> _scopes;
    private readonly StringBuilder _out = new();

    // Output provenance: which tracked loop item (e.g. which message) was being iterated when each stretch was written.
    private readonly IReadOnlyDictionary<object, int>? _tracked;
    private readonly List<OwnedRange> _owned = [];
    private int _owner = -1;

    private sealed class BreakSignal : Exception;
    private sealed class ContinueSignal : Exception;

    public JinjaRenderer(Dictionary<string, object?> globals, IReadOnlyDictionary<object, int>? tracked = null)
    {
        _scopes = [globals];
        _tracked = tracked;
    }

    /// <summary>Stretches of the output written while a tracked item was the innermost tracked loop item.</summary>
    public IReadOnlyList<OwnedRange> OwnedRanges => _owned;

    public string Render(List<Node> nodes)
    {
        try { RenderNodes(nodes); }
        catch (BreakSignal) { throw new JinjaException("'break' outside a loop"); }
        catch (ContinueSignal) { throw new JinjaException("'continue' outside a loop"); }
        return _out.ToString();
    }

    private void RenderNodes(List<Node> nodes)
    {
        foreach (var node in nodes) RenderNode(node);
    }

    private void RenderNode(Node node)
    {
        try
        {
            switch (node)
            {
                case TextNode t: Write(t.Text); break;
                case OutputNode o: Write(JinjaValues.ToText(Eval(o.Value))); break;
                case IfNode i:
                    foreach (var (condition, body) in i.Branches)
                        if (JinjaValues.IsTrue(Eval(condition))) { RenderNodes(body); return; }
                    if (i.Else is not null) RenderNodes(i.Else);
                    break;
                case ForNode f: RenderFor(f); break;
                case SetNode s:
                    var value = Eval(s.Value);
                    if (s.Attribute is null) _scopes[^1][s.Name] = value;
                    else if (Lookup(s.Name) is Dictionary<string, object?> ns) ns[s.Attribute] = value;
                    else throw new JinjaException($"cannot set '{s.Name}.{s.Attribute}': '{s.Name}' is not a namespace");
                    break;
                case SetBlockNode b: _scopes[^1][b.Name] = Capture(b.Body); break;
                case MacroNode m: _scopes[^1][m.Name] = Macro(m); break;
                case CallBlockNode c: Write(JinjaValues.ToText(Call(c.Call, Caller(c)))); break;
                case BreakNode: throw new BreakSignal();
                case ContinueNode: throw new ContinueSignal();
            }
        }
        catch (JinjaException e) when (node.Line > 0 && !e.Message.StartsWith("line ", StringComparison.Ordinal))
        {
            throw new JinjaException($"line {node.Line}: {e.Message}");
        }
    }

    /// <summary>
    /// Renders <paramref name="body"/> into a string instead of the output (a macro's call, a block set). What it wrote is
    /// taken back out, provenance included: the caller writes the string where it uses it.
    /// </summary>
    private string Capture(List<Node> body)
    {
        var (start, owned) = (_out.Length, _owned.Count);
        try { RenderNodes(body); }
        finally
        {
            _owned.RemoveRange(owned, _owned.Count - owned);
            if (_owned.Count > 0 && _owned[^1].End > start) _owned[^1] = _owned[^1] with { End = start };
        }
        var text = _out.ToString(start, _out.Length - start);
        _out.Length = start;
        return text;
    }

    /// <summary>
    /// A macro as a callable: arguments by position or name, defaults evaluated at the call, missing ones undefined; the
    /// body sees them in a scope of its own over the template's variables.
    /// </summary>
    private JinjaFunction Macro(MacroNode macro) => (args, kwargs) =>
    {
        using var _ = PushScope();
        if (kwargs.Remove(CallerName, out var caller)) _scopes[^1][CallerName] = caller;
        Bind($"macro '{macro.Name}'", macro.Parameters, args, kwargs);
        return Capture(macro.Body);
    };

    /// <summary>The name under which a <c>{% call %}</c> block's body reaches the macro it calls.</summary>
    private const string CallerName = "caller";

    /// <summary>A <c>{% call %}</c> block's body as the macro's <c>caller()</c>, with the block's own parameters.</summary>
    private JinjaFunction Caller(CallBlockNode block) => (args, kwargs) =>
    {
        using var _ = PushScope();
        Bind("caller", block.CallerParameters, args, kwargs);
        return Capture(block.Body);
    };

    /// <summary>Binds a call's arguments by position or name in the current scope; defaults are evaluated at the call, missing ones are undefined.</summary>
    private void Bind(string callee, List<(string Name, Expr? Default)> parameters, List<object?> args, Dictionary<string, object?> kwargs)
    {
        if (args.Count > parameters.Count)
            throw new JinjaException($"{callee} takes {parameters.Count} argument(s), {args.Count} given");
        foreach (var name in kwargs.Keys)
            if (!parameters.Any(p => p.Name == name))
                throw new JinjaException($"{callee} has no parameter '{name}'");
        for (var i = 0; i < parameters.Count; i++)
        {
            var (name, fallback) = parameters[i];
            _scopes[^1][name] = i < args.Count ? args[i]
                : kwargs.TryGetValue(name, out var given) ? given
                : fallback is null ? Undefined.Instance : Eval(fallback);
        }
    }

    private void Write(string text)
    {
        if (text.Length == 0) return;
        var start = _out.Length;
        _out.Append(text);
        if (_owner < 0) return;
        if (_owned.Count > 0 && _owned[^1].Item == _owner && _owned[^1].End == start) _owned[^1] = _owned[^1] with { End = _out.Length };
        else _owned.Add(new OwnedRange(_owner, start, _out.Length));
    }

    private void RenderFor(ForNode f)
    {
        var items = JinjaValues.Iterate(Eval(f.Iterable)).ToList();
        if (f.Filter is not null)
            items = items.Where(item => { using var _ = PushScope(); Bind(f.Targets, item); return JinjaValues.IsTrue(Eval(f.Filter)); }).ToList();
        if (items.Count == 0) { if (f.Else is not null) RenderNodes(f.Else); return; }
        for (int i = 0; i < items.Count; i++)
        {
            using var _ = PushScope();
            Bind(f.Targets, items[i]);
            _scopes[^1]["loop"] = new Dictionary<string, object?>
            {
                ["index"] = (long)i + 1, ["index0"] = (long)i, ["first"] = i == 0, ["last"] = i == items.Count - 1,
                ["length"] = (long)items.Count, ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance,
                ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
            };
            var outerOwner = _owner;
            if (_tracked is not null && items[i] is { } item && _tracked.TryGetValue(item, out var owner)) _owner = owner;
            try { RenderNodes(f.Body); }
            catch (BreakSignal) { break; }
            catch (ContinueSignal) { }
            finally { _owner = outerOwner; }
        }
    }

    private void Bind(List<string> targets, object? item)
    {
        if (targets.Count == 1) { _scopes[^1][targets[0]] = item; return; }
        var parts = JinjaValues.Iterate(item).ToList();
        if (parts.Count != targets.Count) throw new JinjaException($"cannot unpack {parts.Count} values into {targets.Count} names");
        for (int i = 0; i < targets.Count; i++) _scopes[^1][targets[i]] = parts[i];
    }

    private ScopeGuard PushScope()
    {
        _scopes.Add(new Dictionary<string, object?>());
        return new ScopeGuard(_scopes);
    }

    private readonly struct ScopeGuard(List<Dictionary<string, object?>> scopes) : IDisposable
    {
        public void Dispose() => scopes.RemoveAt(scopes.Count - 1);
    }

    private object? Lookup(string name)
    {
        for (int i = _scopes.Count - 1; i >= 0; i--)
            if (_scopes[i].TryGetValue(name, out var v)) return v;
        return JinjaBuiltins.Globals.TryGetValue(name, out var f) ? f : Undefined.Instance;
    }

    public object? Eval(Expr expr) => expr switch
    {
        LiteralExpr l => l.Value,
        NameExpr n => Lookup(n.Name),
        AttributeExpr a => JinjaBuiltins.GetAttribute(Eval(a.Target), a.Name),
        ItemExpr i => JinjaBuiltins.GetItem(Eval(i.Target), Eval(i.Key)),
        SliceExpr s => JinjaBuiltins.Slice(Eval(s.Target), Opt(s.Start), Opt(s.Stop), Opt(s.Step)),
        ListExpr l => l.Items.Select(Eval).ToList(),
        DictExpr d => DictLiteral(d),
        ConditionalExpr c => JinjaValues.IsTrue(Eval(c.Condition)) ? Eval(c.Then) : c.Else is null ? Undefined.Instance : Eval(c.Else),
        UnaryExpr { Op: "not" } u => !JinjaValues.IsTrue(Eval(u.Operand)),
        UnaryExpr u => Eval(u.Operand) switch
        {
            long l => (object)(-l),
            double d => -d,
            var v => throw new JinjaException($"cannot negate {JinjaValues.TypeName(v)}"),
        },
        BinaryExpr { Op: "and" } b => Eval(b.Left) is var left && !JinjaValues.IsTrue(left) ? left : Eval(b.Right),
        BinaryExpr { Op: "or" } b => Eval(b.Left) is var left && JinjaValues.IsTrue(left) ? left : Eval(b.Right),
        BinaryExpr b => JinjaBuiltins.Binary(b.Op, Eval(b.Left), Eval(b.Right)),
        FilterExpr f => ApplyFilter(f),
        TestExpr t => JinjaBuiltins.Test(t.Name, Eval(t.Target), Arguments(t.Args, []).Args) != t.Negated,
        CallExpr c => Call(c),
        _ => throw new JinjaException($"unsupported expression {expr.GetType().Name}"),
    };

    /// <summary>A dict literal: keyed by text like every mapping, remembering number keys where the template wrote them.</summary>
    private Dictionary<string, object?> DictLiteral(DictExpr literal)
    {
        var pairs = literal.Items.Select(p => (Key: Eval(p.Key), Value: Eval(p.Value))).ToList();
        if (pairs.All(p => p.Key is string)) return pairs.ToDictionary(p => (string)p.Key!, p => p.Value);
        var dict = new JinjaDict();
        foreach (var (key, value) in pairs) dict.Set(key, value);
        return dict;
    }

    private long? Opt(Expr? e) => e is null ? null : JinjaValues.ToLong(Eval(e));

    /// <summary>A call's arguments, with <c>*items</c> and <c>**mapping</c> spread (AI21 Jamba's <c>f(*args)</c>).</summary>
    private (List<object?> Args, Dictionary<string, object?> Kwargs) Arguments(List<Expr> argExprs, List<(string Name, Expr Value)> kwargExprs)
    {
        var args = new List<object?>();
        var kwargs = new Dictionary<string, object?>();
        foreach (var arg in argExprs)
        {
            if (arg is not SplatExpr splat) args.Add(Eval(arg));
            else if (!splat.Keywords) args.AddRange(JinjaValues.Iterate(Eval(splat.Value)));
            else if (Eval(splat.Value) is Dictionary<string, object?> named)
                foreach (var (name, value) in named) kwargs[name] = value;
            else throw new JinjaException("** needs a mapping");
        }
        foreach (var (name, value) in kwargExprs) kwargs[name] = Eval(value);
        return (args, kwargs);
    }

    private object? ApplyFilter(FilterExpr filter)
    {
        var (args, kwargs) = Arguments(filter.Args, filter.Kwargs);
        return JinjaBuiltins.Filter(filter.Name, Eval(filter.Target), args, kwargs);
    }

    private object? Call(CallExpr call, JinjaFunction? caller = null)
    {
        var (args, kwargs) = Arguments(call.Args, call.Kwargs);
        if (caller is not null) kwargs[CallerName] = caller;
        if (call.Callee is AttributeExpr method)
        {
            var target = Eval(method.Target);
            // Python finds a dict's own methods before its keys: a tool schema's "items" key does not hide .items().
            if (target is not Dictionary<string, object?> d || !d.ContainsKey(method.Name) || method.Name is "items" or "keys" or "values" or "get")
                return JinjaBuiltins.CallMethod(target, method.Name, args);
        }
        return Eval(call.Callee) switch
        {
            JinjaFunction f => f(args, kwargs),
            var other => throw new JinjaException($"{Describe(call.Callee)} is {JinjaValues.TypeName(other)}, not a function"),
        };
    }

    private static string Describe(Expr e) => e switch { NameExpr n => $"'{n.Name}'", AttributeExpr a => $"'.{a.Name}'", _ => "the callee" };
}
