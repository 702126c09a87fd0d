namespace SharpTune.Tokenization.Jinja;

internal abstract record Node(int Line);
internal sealed record TextNode(string Text) : Node(0);
internal sealed record OutputNode(Expr Value, int AtLine) : Node(AtLine);
internal sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else, int AtLine) : Node(AtLine);
internal sealed record ForNode(List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else, int AtLine) : Node(AtLine);
internal sealed record SetNode(string Name, string? Attribute, Expr Value, int AtLine) : Node(AtLine);
/// <summary><c>{% set name %}…{% endset %}</c>: the rendered body as a string.</summary>
internal sealed record SetBlockNode(string Name, List<Node> Body, int AtLine) : Node(AtLine);
/// <summary><c>{% macro name(a, b=default) %}…{% endmacro %}</c>: a function returning its rendered body.</summary>
internal sealed record MacroNode(string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body, int AtLine) : Node(AtLine);
/// <summary><c>{% call(params) macro(args) %}…{% endcall %}</c>: calls the macro with <c>caller</c> rendering the body.</summary>
internal sealed record CallBlockNode(CallExpr Call, List<(string Name, Expr? Default)> CallerParameters, List<Node> Body, int AtLine) : Node(AtLine);
internal sealed record BreakNode(int AtLine) : Node(AtLine);
internal sealed record ContinueNode(int AtLine) : Node(AtLine);

internal abstract record Expr;
internal sealed record LiteralExpr(object? Value) : Expr;
internal sealed record NameExpr(string Name) : Expr;
internal sealed record AttributeExpr(Expr Target, string Name) : Expr;
internal sealed record ItemExpr(Expr Target, Expr Key) : Expr;
internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr;
internal sealed record CallExpr(Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr;
internal sealed record FilterExpr(Expr Target, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr;
internal sealed record TestExpr(Expr Target, string Name, List<Expr> Args, bool Negated) : Expr;
internal sealed record BinaryExpr(string Op, Expr Left, Expr Right) : Expr;
internal sealed record UnaryExpr(string Op, Expr Operand) : Expr;
internal sealed record ConditionalExpr(Expr Condition, Expr Then, Expr? Else) : Expr;
internal sealed record ListExpr(List<Expr> Items) : Expr;
/// <summary>A call's <c>*items</c> (positional arguments from a list) or <c>**mapping</c> (keyword arguments).</summary>
internal sealed record SplatExpr(Expr Value, bool Keywords) : Expr;
internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items) : Expr;
