using System.Text.RegularExpressions;

namespace SharpTune.Hub;

/// <summary>
/// Python <c>fnmatch</c> semantics for allow/ignore patterns, so patterns copied from huggingface_hub calls behave
/// the same: <c>*</c> and <c>?</c> also match '/', <c>[...]</c> is a character class. Written here because
/// Microsoft.Extensions.FileSystemGlobbing uses directory-aware globbing (<c>*</c> stops at '/'), which differs.
/// A pattern ending in '/' matches everything under that folder, as in huggingface_hub.
/// </summary>
public static class FilePattern
{
    /// <summary>True when <paramref name="path"/> matches <paramref name="pattern"/>.</summary>
    public static bool IsMatch(string path, string pattern)
    {
        if (pattern.EndsWith('/')) pattern += "*";
        return ToRegex(pattern).IsMatch(path);
    }

    /// <summary>True when <paramref name="path"/> passes the allow list (null = all) and matches no ignore pattern.</summary>
    public static bool Passes(string path, IReadOnlyList<string>? allow, IReadOnlyList<string> ignore) =>
        (allow is null || allow.Any(p => IsMatch(path, p))) && !ignore.Any(p => IsMatch(path, p));

    private static Regex ToRegex(string pattern)
    {
        var regex = new System.Text.StringBuilder("^");
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            switch (c)
            {
                case '*': regex.Append(".*"); break;
                case '?': regex.Append('.'); break;
                case '[':
                    var close = pattern.IndexOf(']', i + 1);
                    if (close < 0) { regex.Append(@"\["); break; }
                    var body = pattern[(i + 1)..close];
                    if (body.StartsWith('!')) body = "^" + body[1..];
                    regex.Append('[').Append(body.Replace(@"\", @"\\")).Append(']');
                    i = close;
                    break;
                default: regex.Append(Regex.Escape(c.ToString())); break;
            }
        }
        return new Regex(regex.Append('$').ToString(), RegexOptions.Singleline | RegexOptions.CultureInvariant);
    }
}
