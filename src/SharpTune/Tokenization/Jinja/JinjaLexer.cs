using System.Text;

namespace SharpTune.Tokenization.Jinja;

internal enum SegmentKind { Text, Output, Statement }

/// <summary>A stretch of template: literal text, or the inside of {{ }} / {% %} with its line number.</summary>
internal sealed record TemplateSegment(SegmentKind Kind, string Content, int Line);

internal enum TokenKind { Name, String, Number, Operator, End }

internal sealed record ExprToken(TokenKind Kind, string Text, object? Value = null);

/// <summary>
/// Splits a template into text and tags with Jinja's whitespace control, using the settings transformers renders chat
/// templates with: trim_blocks (drop the newline after a block tag) and lstrip_blocks (drop indentation before one).
/// </summary>
internal static class JinjaLexer
{
    public static List<TemplateSegment> Segment(string template)
    {
        // As jinja2's lexer reads a source: every line break becomes \n, and one final line break is dropped
        // (keep_trailing_newline is off; a template file's last newline is not output).
        template = template.Replace("\r\n", "\n").Replace('\r', '\n');
        if (template.EndsWith('\n')) template = template[..^1];
        var segments = new List<TemplateSegment>();
        var text = new StringBuilder();
        int i = 0, line = 1;
        bool trimNextLeading = false, trimNextNewline = false;
        while (i < template.Length)
        {
            int open = NextTagStart(template, i);
            var literal = open < 0 ? template[i..] : template[i..open];
            if (trimNextLeading) literal = literal.TrimStart();
            else if (trimNextNewline) literal = literal.StartsWith("\r\n") ? literal[2..] : literal.StartsWith('\n') ? literal[1..] : literal;
            trimNextLeading = trimNextNewline = false;
            if (open < 0) { text.Append(literal); break; }

            line += CountLines(template, i, open);
            char kind = template[open + 1];
            bool stripBefore = open + 2 < template.Length && template[open + 2] == '-';
            bool keepIndent = open + 2 < template.Length && template[open + 2] == '+';
            if (stripBefore) literal = literal.TrimEnd();
            else if (kind != '{' && !keepIndent && TagStartsLine(template, open)) literal = literal.TrimEnd(' ', '\t');
            text.Append(literal);

            int bodyStart = open + 2 + (stripBefore || keepIndent ? 1 : 0);
            string closer = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
            int close = kind == '#' ? template.IndexOf(closer, bodyStart, StringComparison.Ordinal) : FindCloser(template, bodyStart, closer);
            if (close < 0) throw new JinjaException($"line {line}: tag '{{{kind}' is never closed with '{closer}'");
            bool stripAfter = close > bodyStart && template[close - 1] == '-';
            var body = template[bodyStart..(stripAfter ? close - 1 : close)].Trim();

            if (kind != '#')
            {
                if (text.Length > 0) { segments.Add(new(SegmentKind.Text, text.ToString(), line)); text.Clear(); }
                segments.Add(new(kind == '{' ? SegmentKind.Output : SegmentKind.Statement, body, line));
            }
            line += CountLines(template, open, close);
            i = close + 2;
            if (stripAfter) trimNextLeading = true;
            else if (kind != '{') trimNextNewline = true;
        }
        if (text.Length > 0) segments.Add(new(SegmentKind.Text, text.ToString(), line));
        return segments;
    }

    private static int NextTagStart(string s, int from)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
            if (s[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>lstrip_blocks applies when only spaces and tabs stand between the line's start and the tag.</summary>
    private static bool TagStartsLine(string template, int open)
    {
        int k = open;
        while (k > 0 && template[k - 1] is ' ' or '\t') k--;
        return k == 0 || template[k - 1] == '\n';
    }

    private static int FindCloser(string s, int from, string closer)
    {
        char quote = '\0';
        for (int i = from; i + 1 < s.Length; i++)
        {
            char c = s[i];
            if (quote != '\0')
            {
                if (c == '\\') i++;
                else if (c == quote) quote = '\0';
            }
            else if (c is '\'' or '"') quote = c;
            else if (c == closer[0] && s[i + 1] == closer[1]) return i;
        }
        return -1;
    }

    private static int CountLines(string s, int from, int to)
    {
        int n = 0;
        for (int i = from; i < to && i < s.Length; i++) if (s[i] == '\n') n++;
        return n;
    }

    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ".", ",", ":", "|", "+", "-", "*", "/", "%", "~", "<", ">", "="];

    public static List<ExprToken> Tokenize(string source, int line)
    {
        var tokens = new List<ExprToken>();
        int i = 0;
        while (i < source.Length)
        {
            char c = source[i];
            if (char.IsWhiteSpace(c)) { i++; continue; }
            if (char.IsLetter(c) || c == '_')
            {
                int start = i;
                while (i < source.Length && (char.IsLetterOrDigit(source[i]) || source[i] == '_')) i++;
                tokens.Add(new(TokenKind.Name, source[start..i]));
            }
            else if (char.IsDigit(c))
            {
                int start = i;
                while (i < source.Length && (char.IsDigit(source[i]) || source[i] == '_')) i++;
                bool isFloat = i + 1 < source.Length && source[i] == '.' && char.IsDigit(source[i + 1]);
                if (isFloat) { i++; while (i < source.Length && (char.IsDigit(source[i]) || source[i] == '_')) i++; }
                // An exponent makes a float too (1e3, 2.5E-2), as Jinja's float pattern reads it.
                var exponent = i < source.Length && source[i] is 'e' or 'E' ? i + 1 : -1;
                if (exponent > 0 && exponent < source.Length && source[exponent] is '+' or '-') exponent++;
                if (exponent > 0 && exponent < source.Length && char.IsDigit(source[exponent]))
                {
                    isFloat = true;
                    i = exponent;
                    while (i < source.Length && (char.IsDigit(source[i]) || source[i] == '_')) i++;
                }
                var digits = source[start..i].Replace("_", "");
                object number = isFloat // each branch boxed, so the conditional does not widen a long to double
                    ? (object)double.Parse(digits, System.Globalization.CultureInfo.InvariantCulture) : long.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
                tokens.Add(new(TokenKind.Number, digits, number));
            }
            else if (c is '\'' or '"')
            {
                var value = new StringBuilder();
                i++;
                while (true)
                {
                    if (i >= source.Length) throw new JinjaException($"line {line}: unterminated string in '{source}'");
                    char d = source[i++];
                    if (d == c) break;
                    if (d != '\\' || i >= source.Length) { value.Append(d); continue; }
                    i = Unescape(source, i, value);
                }
                tokens.Add(new(TokenKind.String, value.ToString(), value.ToString()));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(source, i, o, 0, o.Length) == 0)
                    ?? throw new JinjaException($"line {line}: unexpected character '{c}' in '{source}'");
                tokens.Add(new(TokenKind.Operator, op));
                i += op.Length;
            }
        }
        tokens.Add(new(TokenKind.End, ""));
        return tokens;
    }

    /// <summary>
    /// The escape after a backslash at <paramref name="i"/>, as Jinja decodes string literals (Python's unicode-escape):
    /// a backslash before a line break continues the line (Mistral's templates wrap long prompts so); \n \t \r \a \b
    /// \f \v, \xHH, \uHHHH, \UHHHHHHHH and octal give their character; any other keeps its backslash. Returns the
    /// position after the escape.
    /// </summary>
    private static int Unescape(string source, int i, StringBuilder value)
    {
        var e = source[i++];
        int Hex(int digits)
        {
            if (i + digits > source.Length || !int.TryParse(source.AsSpan(i, digits), System.Globalization.NumberStyles.HexNumber, null, out var code))
                throw new JinjaException($"truncated \\{e} escape in a string literal");
            i += digits;
            return code;
        }
        switch (e)
        {
            case '\n': break;
            case '\r': if (i < source.Length && source[i] == '\n') i++; break;
            case 'n': value.Append('\n'); break;
            case 't': value.Append('\t'); break;
            case 'r': value.Append('\r'); break;
            case 'a': value.Append('\a'); break;
            case 'b': value.Append('\b'); break;
            case 'f': value.Append('\f'); break;
            case 'v': value.Append('\v'); break;
            case '\\' or '\'' or '"': value.Append(e); break;
            case 'x': value.Append((char)Hex(2)); break;
            case 'u': value.Append((char)Hex(4)); break;
            case 'U': value.Append(char.ConvertFromUtf32(Hex(8))); break;
            case >= '0' and <= '7':
                var octal = e - '0';
                for (var n = 0; n < 2 && i < source.Length && source[i] is >= '0' and <= '7'; n++) octal = octal * 8 + (source[i++] - '0');
                value.Append((char)octal);
                break;
            default: value.Append('\\').Append(e); break;
        }
        return i;
    }
}
