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
internal static class PythonicCalls
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

    private sealed class Reader(string s)
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

        /// <summary>A number token: int (any base, '_' between digits), float, or imaginary (no JSON value).</summary>
        private Expr Number()
        {
            var start = i;
            if (Peek() == '0' && char.ToLowerInvariant(Peek(1)) is 'x' or 'o' or 'b')
            {
                var radix = char.ToLowerInvariant(Peek(1)) switch { 'x' => 16, 'o' => 8, _ => 2 };
                i += 2;
                var value = BigInteger.Zero;
                var digits = 0;
                while (true)
                {
                    if (Peek() == '_' && DigitValue(Peek(1), radix) >= 0) i++;
                    var d = DigitValue(Peek(), radix);
                    if (d < 0) break;
                    value = value * radix + d;
                    digits++;
                    i++;
                }
                if (digits == 0 || IsIdentifierPart(Peek())) throw Fail();
                return Integer(value);
            }
            var text = new StringBuilder();
            if (Peek() != '.') DigitPart(text);
            var isFloat = false;
            if (Peek() == '.')
            {
                isFloat = true;
                i++;
                text.Append('.');
                if (char.IsAsciiDigit(Peek())) DigitPart(text); else text.Append('0');
            }
            if (char.ToLowerInvariant(Peek()) == 'e' && (char.IsAsciiDigit(Peek(1)) || Peek(1) is '+' or '-' && char.IsAsciiDigit(Peek(2))))
            {
                isFloat = true;
                text.Append('e');
                i++;
                if (Peek() is '+' or '-') text.Append(s[i++]);
                DigitPart(text);
            }
            if (char.ToLowerInvariant(Peek()) == 'j') { i++; return Imaginary(); }
            if (IsIdentifierPart(Peek()) || Peek() == '.') throw Fail();
            var literal = text.ToString();
            if (isFloat)
                return new Expr(double.Parse("0" + literal, NumberStyles.Float, CultureInfo.InvariantCulture), Constant: true);
            if (literal.Length > 1 && literal[0] == '0' && literal.Any(d => d != '0')) throw Fail();   // leading zeros in a decimal integer
            if (literal.Length > 4300) throw Fail();   // Python's limit on decimal integer literals
            return Integer(BigInteger.Parse(literal, CultureInfo.InvariantCulture));

            Expr Imaginary() => IsIdentifierPart(Peek()) ? throw Fail() : new Expr(null, Opaque: true, Constant: true);
        }

        /// <summary>An int; one json.dumps cannot write (over 4300 decimal digits) is no JSON value.</summary>
        private static Expr Integer(BigInteger value) =>
            BigInteger.Abs(value) >= BigInteger.Pow(10, 4300) ? new Expr(null, Opaque: true, Constant: true) : new Expr(value, Constant: true);

        private void DigitPart(StringBuilder text)
        {
            if (!char.IsAsciiDigit(Peek())) throw Fail();
            while (true)
            {
                text.Append(s[i++]);
                if (Peek() == '_' && char.IsAsciiDigit(Peek(1))) i++;
                else if (!char.IsAsciiDigit(Peek())) break;
            }
        }

        private static int DigitValue(char c, int radix)
        {
            var d = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiLetter(c) ? char.ToLowerInvariant(c) - 'a' + 10 : -1;
            return d >= 0 && d < radix ? d : -1;
        }

        /// <summary>The length of a string prefix (r, u, b, f, br, rb, fr, rf in any case) directly followed by a quote, or -1.</summary>
        private int StringPrefixLength()
        {
            var n = 0;
            while (n < 2 && i + n < s.Length && "rRuUbBfF".Contains(s[i + n])) n++;
            for (; n >= 1; n--)
            {
                if (i + n >= s.Length || s[i + n] is not ('"' or '\'')) continue;
                var prefix = s.Substring(i, n).ToLowerInvariant();
                return prefix is "r" or "u" or "b" or "f" or "br" or "rb" or "fr" or "rf" ? n : -1;
            }
            return -1;
        }

        /// <summary>Adjacent string literals, joined; bytes are no JSON value, and bytes beside text are a syntax error.</summary>
        private Expr Strings()
        {
            var text = new StringBuilder();
            var (bytes, anyText, formatted) = (false, false, false);
            while (true)
            {
                var prefixLength = Math.Max(0, StringPrefixLength());
                if (prefixLength == 0 && Peek() is not ('"' or '\'')) break;
                var prefix = s.Substring(i, prefixLength).ToLowerInvariant();
                i += prefixLength;
                var isBytes = prefix.Contains('b');
                if (isBytes) bytes = true; else anyText = true;
                formatted |= prefix.Contains('f');
                StringBody(text, raw: prefix.Contains('r'), isBytes, prefix.Contains('f'));
                var after = i;
                SkipTrivia();
                if (Peek() is not ('"' or '\'') && StringPrefixLength() < 0) { i = after; break; }
            }
            if (bytes && anyText) throw Fail();
            // An f-string is a JoinedStr, not a Constant: a value, but no dict key.
            return bytes ? new Expr(null, Opaque: true, Constant: true) : new Expr(text.ToString(), Constant: !formatted);
        }

        private void StringBody(StringBuilder text, bool raw, bool isBytes, bool formatted)
        {
            var quote = s[i];
            var triple = Peek(1) == quote && Peek(2) == quote;
            i += triple ? 3 : 1;
            while (true)
            {
                if (i >= s.Length) throw Fail();   // unterminated
                var c = s[i];
                if (c == quote && (!triple || Peek(1) == quote && Peek(2) == quote)) { i += triple ? 3 : 1; return; }
                if (c == '\n' && !triple) throw Fail();
                if (isBytes && c > 0x7f) throw Fail();
                if (formatted && c is '{' or '}')
                {
                    if (Peek(1) != c) throw Fail();   // a placeholder (or a lone '}'): an expression, which we do not read
                    text.Append(c);
                    i += 2;
                    continue;
                }
                if (c != '\\') { text.Append(c); i++; continue; }
                var next = Peek(1);
                if (raw)
                {
                    // A raw string keeps the backslash and what follows it (a quote there does not end the string).
                    if (i + 1 >= s.Length) throw Fail();
                    text.Append(c).Append(next);
                    i += 2;
                    continue;
                }
                i += 2;
                switch (next)
                {
                    case '\n': break;
                    case '\\': text.Append('\\'); break;
                    case '\'': text.Append('\''); break;
                    case '"': text.Append('"'); break;
                    case 'a': text.Append('\a'); break;
                    case 'b': text.Append('\b'); break;
                    case 'f': text.Append('\f'); break;
                    case 'n': text.Append('\n'); break;
                    case 'r': text.Append('\r'); break;
                    case 't': text.Append('\t'); break;
                    case 'v': text.Append('\v'); break;
                    case >= '0' and <= '7':
                        var octal = next - '0';
                        for (var k = 0; k < 2 && Peek() is >= '0' and <= '7'; k++) octal = octal * 8 + (s[i++] - '0');
                        text.Append((char)octal);
                        break;
                    case 'x': text.Append((char)HexDigits(2)); break;
                    case 'u' when !isBytes: AppendCodePoint(text, HexDigits(4)); break;
                    case 'U' when !isBytes: AppendCodePoint(text, HexDigits(8)); break;
                    case 'N' when !isBytes: throw Fail();   // \N{name}: no Unicode name table here
                    default:
                        if (i > s.Length) throw Fail();
                        text.Append('\\').Append(next);   // an unknown escape keeps its backslash
                        break;
                }
            }
        }

        private int HexDigits(int count)
        {
            var value = 0;
            for (var k = 0; k < count; k++)
            {
                var d = DigitValue(Peek(), 16);
                if (d < 0) throw Fail();
                value = value * 16 + d;
                i++;
            }
            return value;
        }

        private static void AppendCodePoint(StringBuilder text, int codePoint)
        {
            // A surrogate escape makes a string no JSON text can carry: no call.
            if (codePoint > 0x10FFFF || codePoint is >= 0xD800 and <= 0xDFFF) throw new NotPythonException();
            text.Append(char.ConvertFromUtf32(codePoint));
        }
    }
}
