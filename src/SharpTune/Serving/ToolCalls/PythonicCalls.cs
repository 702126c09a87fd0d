using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.RegularExpressions;
using SharpTune.IO;

namespace SharpTune.Serving.ToolCalls;

/// <summary>
/// Reads a reply written as a Python list of calls, <c>[get_weather(city="Paris", days=[1, 2]), get_time()]</c>, as vLLM's
/// <c>pythonic</c> tool parser reads it: the reply must match its <c>TOOL_CALL_REGEX</c> from the first character, then
/// parse as Python whose first statement is a list of calls; each call's keyword arguments are Python literals
/// (<c>get_parameter_value</c>: strings, numbers, True/False/None and JSON's true/false/null, lists, tuples and sets as
/// lists, dicts with constant keys, +/- before a number, f-strings without placeholders), written with
/// <c>json.dumps(arguments, ensure_ascii=False)</c> (<see cref="PythonJson.DumpsValue"/>). Positional arguments are
/// ignored, <c>**{…}</c> is an argument named "null" (json.dumps' spelling of the key None), a dotted callee keeps its
/// dots. Anything else is no call and the reply stays text.
/// </summary>
/// <remarks>
/// This is not a Python parser: where vLLM accepts more Python than the literals above it is read as text here — a
/// further statement after the list (<c>[f()]\nx</c>), a positional argument that is an expression other than a literal
/// or a name (<c>f(x + 1, a=2)</c>), a <c>\N{…}</c> escape. A surrogate escape (<c>"\ud83d"</c>) is text too, where vLLM
/// returns arguments no client can decode.
/// </remarks>
internal static partial class PythonicCalls
{
    // vLLM's TOOL_CALL_REGEX, matched (regex.match) from the first character. Non-backtracking: whether it matches does not
    // depend on the engine, and the nested '.*' cannot take exponential time (vLLM bounds it with a 1 s timeout instead).
    // The regex module's \w also takes spacing and enclosing marks, letter numbers and the zero-width (non-)joiner.
    private static readonly Regex CallListPattern = new(
        @"\A\[([a-zA-Z]+\w*\(([a-zA-Z]+\w*=.*,\s*)*([a-zA-Z]+\w*=.*\s)?\),\s*)*([a-zA-Z]+\w*\(([a-zA-Z]+\w*=.*,\s*)*([a-zA-Z]+\w*=.*\s*)?\)\s*)+\]"
            .Replace(@"\w", @"[\w\p{Mc}\p{Nl}\p{Me}\u200C\u200D]", StringComparison.Ordinal),
        RegexOptions.Singleline | RegexOptions.NonBacktracking | RegexOptions.CultureInvariant);

    /// <summary>The calls, or null when <paramref name="text"/> is not a Python list of calls as vLLM reads one.</summary>
    public static IReadOnlyList<ParsedToolCall>? Read(string text)
    {
        // Python source may not hold a NUL anywhere; its tokenizer reads \r\n and \r as \n.
        if (!CallListPattern.IsMatch(text) || text.Contains('\0')) return null;
        try { return new Reader(text.Replace("\r\n", "\n").Replace('\r', '\n')).CallList(); }
        catch (NotPythonException) { return null; }
    }

    /// <summary>The text is no Python vLLM would read as calls (a syntax error, or an argument that is no literal).</summary>
    private sealed class NotPythonException : Exception;

    /// <summary>
    /// A parsed expression: its value, and what vLLM's get_parameter_value makes of it. <see cref="Opaque"/> is valid Python
    /// with no JSON value (a name, bytes, a complex number, …): fine as an ignored positional argument, text as a keyword's.
    /// <see cref="Constant"/> marks an ast.Constant, the only node a dict key may be.
    /// </summary>
    private readonly record struct Expr(object? Value, bool Opaque = false, bool Constant = false);

    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
        "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or",
        "pass", "raise", "return", "try", "while", "with", "yield",
    };

    private sealed partial class Reader(string s)
    {
        private int i;

        /// <summary>Brackets open at the position; Python's tokenizer refuses more than 200.</summary>
        private int depth;

        /// <summary>
        /// Expressions being read, one inside the other. Beyond a few hundred Python gives up too (vLLM's recursive
        /// conversion hits the recursion limit near a thousand signs in <c>----1</c>); stopping at 400 keeps the stack safe.
        /// </summary>
        private int nesting;

        private static NotPythonException Fail() => new();

        private char Peek(int ahead = 0) => i + ahead < s.Length ? s[i + ahead] : '\0';

        private void Expect(char c)
        {
            SkipTrivia();
            if (Peek() != c) throw Fail();
            i++;
        }

        /// <summary>Whitespace, comments, newlines and line continuations: all insignificant inside brackets.</summary>
        private void SkipTrivia()
        {
            while (i < s.Length)
            {
                var c = s[i];
                if (c is ' ' or '\t' or '\f' or '\n') i++;
                else if (c == '#') { while (i < s.Length && s[i] != '\n') i++; }
                else if (c == '\\' && Peek(1) == '\n') i += 2;
                else break;
            }
        }

        public IReadOnlyList<ParsedToolCall> CallList()
        {
            Expect('[');
            var calls = new List<ParsedToolCall>();
            InBracket(() =>
            {
                while (true)
                {
                    SkipTrivia();
                    if (Peek() == ']' && calls.Count > 0) { i++; break; }
                    calls.Add(Call());
                    SkipTrivia();
                    if (Peek() == ',') { i++; continue; }
                    Expect(']');
                    break;
                }
                return 0;
            });
            EndOfModule();
            return calls;
        }

        /// <summary>After the list: the rest of its line (a ';', a comment), then only blank or comment lines.</summary>
        private void EndOfModule()
        {
            while (Peek() is ' ' or '\t' or '\f') i++;
            if (Peek() == ';') { i++; while (Peek() is ' ' or '\t' or '\f') i++; }
            while (i < s.Length)
            {
                var c = s[i];
                if (c is ' ' or '\t' or '\f' or '\n') i++;
                else if (c == '#') { while (i < s.Length && s[i] != '\n') i++; }
                else throw Fail();
            }
        }

        private ParsedToolCall Call()
        {
            var name = new StringBuilder(Identifier() ?? throw Fail());
            if (Keywords.Contains(name.ToString())) throw Fail();
            SkipTrivia();
            while (Peek() == '.')
            {
                i++;
                SkipTrivia();
                var part = Identifier();
                if (part is null || Keywords.Contains(part)) throw Fail();
                name.Append('.').Append(part);
                SkipTrivia();
            }
            Expect('(');
            var arguments = new List<KeyValuePair<object?, object?>>();
            var opaque = InBracket(() => Arguments(arguments));
            if (opaque) throw Fail();
            return new ParsedToolCall(name.ToString(), PythonJson.DumpsValue(arguments, ensureAscii: false));
        }

        /// <summary>A call's arguments after '(' up to ')': the keyword ones into <paramref name="arguments"/>; true when one has no JSON value.</summary>
        private bool Arguments(List<KeyValuePair<object?, object?>> arguments)
        {
            var (keywordSeen, doubleStarSeen, opaque) = (false, false, false);
            while (true)
            {
                SkipTrivia();
                if (Peek() == ')') { i++; break; }
                if (Peek() == '*' && Peek(1) == '*')
                {
                    i += 2;
                    var value = Expression();
                    opaque |= value.Opaque;
                    Put(arguments, null, value.Value);
                    doubleStarSeen = true;
                }
                else if (Peek() == '*')
                {
                    i++;
                    if (doubleStarSeen) throw Fail();
                    IgnoredExpression();
                }
                else if (KeywordName() is { } keyword)
                {
                    var value = Expression();
                    opaque |= value.Opaque;
                    Put(arguments, keyword, value.Value);
                    keywordSeen = true;
                }
                else
                {
                    if (keywordSeen || doubleStarSeen) throw Fail();   // positional argument follows keyword argument
                    IgnoredExpression();
                }
                SkipTrivia();
                if (Peek() == ',') { i++; continue; }
                Expect(')');
                break;
            }
            return opaque;
        }

        /// <summary>
        /// A positional argument, which vLLM ignores, so any expression Python parses will do; read here: operands (literals,
        /// names, with attribute, call and subscript trailers) joined by unary, binary and comparison operators.
        /// </summary>
        private void IgnoredExpression()
        {
            while (true)
            {
                SkipTrivia();
                while (true)
                {
                    if (Peek() == '~') i++;
                    else if (!Word("not")) break;
                    SkipTrivia();
                }
                Expression();
                while (true)
                {
                    SkipTrivia();
                    if (Peek() == '.' && !char.IsAsciiDigit(Peek(1))) { i++; SkipTrivia(); if (Identifier() is null) throw Fail(); }
                    else if (Peek() is '(' or '[')
                    {
                        var close = Peek() == '(' ? ')' : ']';
                        i++;
                        InBracket(() =>
                        {
                            while (true)
                            {
                                SkipTrivia();
                                if (Peek() == close) { i++; break; }
                                while (Peek() == '*') i++;
                                KeywordName();
                                IgnoredExpression();
                                SkipTrivia();
                                if (Peek() is ',' or ':') { i++; continue; }
                                Expect(close);
                                break;
                            }
                            return 0;
                        });
                    }
                    else break;
                }
                SkipTrivia();
                var op = new[] { "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "@", "&", "|", "^", "<", ">" }
                    .FirstOrDefault(o => string.CompareOrdinal(s, i, o, 0, o.Length) == 0);
                if (op is not null) { i += op.Length; continue; }
                if (Word("and") || Word("or") || Word("in") || Word("is")) continue;   // "is not": "not" then reads as a prefix
                if (!Word("not")) return;
                SkipTrivia();
                if (!Word("in")) throw Fail();

            }
        }

        /// <summary>Consumes <paramref name="word"/> when it stands at the position as a whole word.</summary>
        private bool Word(string word)
        {
            if (string.CompareOrdinal(s, i, word, 0, word.Length) != 0 || i + word.Length < s.Length && IsIdentifierPart(s[i + word.Length])) return false;
            i += word.Length;
            return true;
        }

        /// <summary>`name =` (not `==`) opening a keyword argument, or null (the position is left where it was).</summary>
        private string? KeywordName()
        {
            var start = i;
            var name = Identifier();
            if (name is not null)
            {
                SkipTrivia();
                if (Peek() == '=' && Peek(1) != '=')
                {
                    if (Keywords.Contains(name) || name == "__debug__") throw Fail();
                    i++;
                    return name;
                }
            }
            i = start;
            return null;
        }

        /// <summary>A Python identifier (NFKC-normalised, as Python reads it) at the position, or null.</summary>
        private string? Identifier()
        {
            if (i >= s.Length || !IsIdentifierStart(s[i]) || StringPrefixLength() >= 0) return null;
            var start = i;
            while (i < s.Length && IsIdentifierPart(s[i])) i++;
            return s[start..i].Normalize(NormalizationForm.FormKC);
        }

        private static bool IsIdentifierStart(char c) => c == '_' || char.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter
            or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter
            or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber;

        private static bool IsIdentifierPart(char c) => IsIdentifierStart(c) || char.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark
            or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation;

        /// <summary>An argument's expression: a literal vLLM converts, or one it cannot (<see cref="Expr.Opaque"/>).</summary>
        private Expr Expression()
        {
            if (++nesting > 400) throw Fail();
            try { return ExpressionBody(); }
            finally { nesting--; }
        }

        /// <summary>Reads what follows an opening bracket up to its close: Python's tokenizer allows 200 open at once.</summary>
        private T InBracket<T>(Func<T> body)
        {
            if (++depth > 200) throw Fail();
            try { return body(); }
            finally { depth--; }
        }

        private Expr ExpressionBody()
        {
            SkipTrivia();
            var c = Peek();
            if (c is '-' or '+')
            {
                i++;
                var operand = Expression();
                if (operand.Opaque) return operand;
                return operand.Value switch
                {
                    BigInteger n => new Expr(c == '-' ? -n : n),
                    double d => new Expr(c == '-' ? -d : d),
                    _ => new Expr(null, Opaque: true),   // -True, -"a": no number
                };
            }
            if (c == '[') { i++; return InBracket(() => Sequence(']')); }
            if (c == '(') { i++; return InBracket(Parenthesized); }
            if (c == '{') { i++; return InBracket(DictOrSet); }
            if (c == '.' && Peek(1) == '.' && Peek(2) == '.') { i += 3; return new Expr(null, Opaque: true, Constant: true); }
            if (char.IsAsciiDigit(c) || c == '.' && char.IsAsciiDigit(Peek(1))) return Number();
            if (c is '"' or '\'' || StringPrefixLength() >= 0) return Strings();
            var name = Identifier() ?? throw Fail();
            return name switch
            {
                "True" => new Expr(true, Constant: true),
                "False" => new Expr(false, Constant: true),
                "None" => new Expr(null, Constant: true),
                "true" => new Expr(true),
                "false" => new Expr(false),
                "null" => new Expr(null),
                _ when Keywords.Contains(name) => throw Fail(),
                _ => new Expr(null, Opaque: true),   // a variable: valid Python, no literal
            };
        }

        /// <summary>After '(': a tuple (a list to vLLM), or one value in parentheses (that value; a Constant stays one).</summary>
        private Expr Parenthesized()
        {
            SkipTrivia();
            if (Peek() == ')') { i++; return new Expr(new List<object?>()); }
            var first = Expression();
            SkipTrivia();
            if (Peek() == ')') { i++; return first; }
            Expect(',');
            return Sequence(')', first);
        }

        /// <summary>The items of a list or tuple up to <paramref name="close"/> (vLLM gives both as a list).</summary>
        private Expr Sequence(char close, Expr? first = null)
        {
            var items = new List<object?>();
            var opaque = false;
            if (first is { } head) { items.Add(head.Value); opaque = head.Opaque; }
            while (true)
            {
                SkipTrivia();
                if (Peek() == close) { i++; break; }
                var item = Expression();
                items.Add(item.Value);
                opaque |= item.Opaque;
                SkipTrivia();
                if (Peek() == ',') { i++; continue; }
                Expect(close);
                break;
            }
            return new Expr(opaque ? null : items, opaque);
        }

        /// <summary>After '{': a dict (keys must be constants json.dumps can write) or a set (read as a list, in source order).</summary>
        private Expr DictOrSet()
        {
            SkipTrivia();
            if (Peek() == '}') { i++; return new Expr(new List<KeyValuePair<object?, object?>>()); }
            if (Peek() == '*') throw Fail();   // {**d}: a key that is no constant (and unpacking we do not read)
            var first = Expression();
            SkipTrivia();
            if (Peek() != ':')
            {
                if (Peek() == ',') { i++; return Sequence('}', first); }
                Expect('}');
                return new Expr(first.Opaque ? null : new List<object?> { first.Value }, first.Opaque);
            }
            var pairs = new List<KeyValuePair<object?, object?>>();
            var opaque = false;
            var key = first;
            while (true)
            {
                Expect(':');
                var value = Expression();
                opaque |= key.Opaque || !key.Constant || value.Opaque;
                if (!opaque) Put(pairs, key.Value, value.Value);
                SkipTrivia();
                if (Peek() == ',') { i++; SkipTrivia(); }
                else { Expect('}'); break; }
                if (Peek() == '}') { i++; break; }
                if (Peek() == '*') throw Fail();
                key = Expression();
            }
            return new Expr(opaque ? null : pairs, opaque);
        }

        /// <summary>A Python dict's assignment: an equal key (1 == 1.0 == True) keeps its place and first spelling, takes the new value.</summary>
        private static void Put(List<KeyValuePair<object?, object?>> pairs, object? key, object? value)
        {
            for (var j = 0; j < pairs.Count; j++)
                if (KeysEqual(pairs[j].Key, key)) { pairs[j] = new(pairs[j].Key, value); return; }
            pairs.Add(new(key, value));
        }

        private static bool KeysEqual(object? a, object? b)
        {
            if (a is null || b is null) return a is null && b is null;
            if (a is string x) return b is string y && x == y;
            if (b is string) return false;
            return (Numeric(a), Numeric(b)) switch
            {
                (BigInteger p, BigInteger q) => p == q,
                (double p, double q) => p == q,
                (BigInteger p, double q) => IntegerEqualsFloat(p, q),
                (double p, BigInteger q) => IntegerEqualsFloat(q, p),
                _ => false,
            };

            static bool IntegerEqualsFloat(BigInteger n, double d) => double.IsFinite(d) && Math.Floor(d) == d && new BigInteger(d) == n;
        }

        private static object Numeric(object value) => value is bool b ? (b ? BigInteger.One : BigInteger.Zero) : value;
    }
}
