using System.Text.RegularExpressions;

namespace SharpTune.Evaluation;

/// <summary>
/// sacreBLEU's default BLEU tokenizer "13a" (mteval-v13a.pl as ported in sacreBLEU's <c>tokenizer_13a.py</c> and
/// <c>tokenizer_re.py</c>): the same replacements and the same four regular expressions, applied in the same order.
/// </summary>
public static partial class Tokenizer13a
{
    // Punctuation and symbols from the ASCII ranges {-~, [-`, space-&, (-+, :-@ and '/' become separate tokens.
    [GeneratedRegex(@"([{-~\[-` -&(-+:-@/])")]
    private static partial Regex Symbols();

    // Period and comma are split off unless preceded by a digit...
    [GeneratedRegex(@"([^0-9])([.,])")]
    private static partial Regex PeriodCommaAfterNonDigit();

    // ...or unless followed by a digit.
    [GeneratedRegex(@"([.,])([^0-9])")]
    private static partial Regex PeriodCommaBeforeNonDigit();

    // A dash preceded by a digit is split off.
    [GeneratedRegex(@"([0-9])(-)")]
    private static partial Regex DashAfterDigit();

    /// <summary>Tokenizes one segment; tokens are separated by single spaces, with no leading/trailing space.</summary>
    public static string Tokenize(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        line = line.Replace("<skipped>", "")
                   .Replace("-\n", "")
                   .Replace("\n", " ");
        if (line.Contains('&'))
        {
            line = line.Replace("&quot;", "\"")
                       .Replace("&amp;", "&")
                       .Replace("&lt;", "<")
                       .Replace("&gt;", ">");
        }

        line = $" {line} ";
        line = Symbols().Replace(line, " $1 ");
        line = PeriodCommaAfterNonDigit().Replace(line, "$1 $2 ");
        line = PeriodCommaBeforeNonDigit().Replace(line, " $1 $2");
        line = DashAfterDigit().Replace(line, "$1 $2 ");
        return string.Join(' ', PythonText.SplitWhitespace(line));
    }
}
