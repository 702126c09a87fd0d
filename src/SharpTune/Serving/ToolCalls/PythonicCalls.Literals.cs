using System.Globalization;
using System.Numerics;
using System.Text;

namespace SharpTune.Serving.ToolCalls;

internal static partial class PythonicCalls
{
    /// <summary>Python's number and string tokens, as its tokenizer reads them and ast.literal_eval values them.</summary>
    private sealed partial class Reader
    {
        /// <summary>A number token: int (any base, '_' between digits), float, or imaginary (no JSON value).</summary>
        private Expr Number()
        {
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
